package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTextOutputOneLinePerStep: text from the server with a newline in it
// cannot forge a line of its own (an "OK result" line, say).
func TestTextOutputOneLinePerStep(t *testing.T) {
	var b strings.Builder
	writeText(&b, []Step{
		newStep("handshake", "xmpp1.example.com:5223", Fail, 0,
			"stream error: server text: x\nOK    result     -    a Call Bridge with these settings would work\r\x1b[2K", "check\nthe secret"),
	})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	assert.Len(t, lines, 2, "one line for the step and one for its hint: %q", b.String())
	for _, l := range lines {
		assert.False(t, strings.HasPrefix(l, "OK"), "forged line %q", l)
	}
	assert.Contains(t, lines[0], `x\nOK    result`)
}
