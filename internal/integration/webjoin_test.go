//go:build integration

package integration

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/pagetest"
)

// TestIntegrationJoinPage is the web user's whole hop on real servers:
// Prosody with mod_websocket and an anonymous guest host, the real
// examples/callbridge binary with -calls linked to it over direct TLS, and
// the binary's join page in headless Chromium, pointed at Prosody with its
// query parameters. The page shows the same typed answers as against the
// lab: accepted, forbidden, item-not-found, bad-request, and Prosody's own
// remote-server-timeout once the bridge is gone. It logs click-to-answer
// and the in-page join round trip (median, p90).
func TestIntegrationJoinPage(t *testing.T) {
	pagetest.ChromiumPath(t)
	p := startProsody(t, prosodyOptions{WebSocket: true})
	bin := callbridgeBinary(t)

	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	require.NoError(t, os.WriteFile(calls, []byte("100 4321 Weekly sync\n200 - Open room\n"), 0o600))
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte(defaultSecret+"\n"), 0o600))
	webPort, err := freePort("127.0.0.1", false)
	require.NoError(t, err)
	webAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(webPort)))

	out := &logBuffer{}
	cmd := exec.Command(bin, "-name", componentName, "-domain", domain, "-server", p.TLSAddr(), "-server-name", p.FQDN,
		"-ca", p.PKI.CAFile, "-secret-file", secret, "-calls", calls, "-web", webAddr, "-log-format", "json")
	bridge, err := startChild("callbridge", cmd, out, calls)
	require.NoError(t, err)
	t.Cleanup(func() {
		bridge.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("callbridge output:\n%s", out.String())
		}
	})
	require.NoError(t, waitAccepting(bridge, 10*time.Second, webAddr))
	waitLog(t, bridge, out, `"msg":"xmpp link connected"`)

	q := url.Values{"ws": {p.WebSocketURL()}, "domain": {guestDomain}, "bridge": {componentAddr}}
	pg := pagetest.Open(t, "http://"+webAddr+"/?"+q.Encode())
	assert.Equal(t, p.WebSocketURL(), pagetest.Eval[string](pg, `document.getElementById('ws').value`), "the query parameter wins")

	for _, tc := range []struct {
		name, call, passcode, outcome string
	}{
		{"accepted", "100", "4321", "accepted"},
		{"forbidden", "100", "0000", "forbidden"},
		{"item-not-found", "300", "", "item-not-found"},
		{"bad-request", "", "", "bad-request"},
	} {
		a := pg.Join(tc.call, tc.passcode, "Ann "+tc.name)
		assert.Equal(t, tc.outcome, a.Outcome, "%s: %s", tc.name, a.Text)
	}
	login := pagetest.Eval[string](pg, `document.getElementById('login').textContent`)
	assert.Contains(t, login, "@"+guestDomain+"/", "logged in anonymously on the guest host")

	t.Logf("against Prosody (%s): %s", login, pg.Timings("200", componentAddr))

	// The bridge goes away (SIGTERM: it closes its stream): Prosody answers
	// for it.
	bridge.stop(5 * time.Second)
	a := pg.Join("100", "4321", "Too late")
	assert.Equal(t, "remote-server-timeout", a.Outcome, a.Text)
	assert.Contains(t, a.Text, "component unavailable")
}

// waitLog waits until the child's output contains s.
func waitLog(t *testing.T, c *child, out *logBuffer, s string) {
	t.Helper()
	end := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), s) {
		if c.exited() {
			t.Fatalf("%s exited before logging %s:\n%s", c.name, s, out.String())
		}
		if time.Now().After(end) {
			t.Fatalf("%s did not log %s within 15s:\n%s", c.name, s, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
