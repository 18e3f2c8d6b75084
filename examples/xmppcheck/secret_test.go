package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge/callbridgetest"
)

// TestSecretFromPipe: the secret is read once, so that a pipe works as
// it does for the bridge: -secret-file /dev/stdin (printf … | xmppcheck)
// and /dev/fd/N (bash's <(printf …)). It is in no output, the HTML
// report's included.
func TestSecretFromPipe(t *testing.T) {
	l, ca := startLab(t, callbridgetest.Options{Servers: twoServers()[:1]})
	args := []string{"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca}
	for _, tc := range []struct {
		name, file string
		prepare    func(t *testing.T, cmd *exec.Cmd)
	}{
		{"stdin", "/dev/stdin", func(t *testing.T, cmd *exec.Cmd) { cmd.Stdin = strings.NewReader(testSecret) }},
		{"fd 3", "/dev/fd/3", func(t *testing.T, cmd *exec.Cmd) {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			t.Cleanup(func() { r.Close() })
			_, err = w.WriteString(testSecret + "\n")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			cmd.ExtraFiles = []*os.File{r} // fd 3
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			html := filepath.Join(t.TempDir(), "report.html")
			cmd := exec.Command(bin, append(args, "-secret-file", tc.file, "-html", html)...)
			tc.prepare(t, cmd)
			r := runCheckCmd(t, cmd, nil)
			assert.Equal(t, 0, r.code, r.stdout)
			assert.Contains(t, r.stdout, "secret from file "+tc.file+" (redacted)")
			assert.Regexp(t, `(?m)^OK +handshake `, r.stdout)
			page, err := os.ReadFile(html)
			require.NoError(t, err)
			assert.NotContains(t, string(page), testSecret, "a secret was written to the report")
		})
	}
}
