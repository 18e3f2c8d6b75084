package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEShowsThisProgram keeps the "Use it from Go" section of the
// top-level README identical to this program, which the build checks.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "## Use it from Go")
	require.True(t, ok, "README has no \"Use it from Go\" section")
	section, _, _ = strings.Cut(section, "\n## ")

	var indented []string
	for _, line := range strings.Split(string(src), "\n") {
		if line == "" {
			indented = append(indented, "")
		} else {
			indented = append(indented, "    "+line)
		}
	}
	assert.Contains(t, section, strings.TrimRight(strings.Join(indented, "\n"), "\n"))
}
