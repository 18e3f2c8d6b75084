package callbridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testhelp"
)

// jsonLines parses the JSON log lines in b.
func jsonLines(t *testing.T, b *testhelp.Buffer) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// TestLogsFailedPreferredServer: when the preferred server fails and a
// backup takes over, the failure has a WARN line of its own naming the
// next server; the backup's connection steps carry no stale err; debug
// logs show the order to try and the certificate; errors use one key.
func TestLogsFailedPreferredServer(t *testing.T) {
	r := newRig(t, 10, 20)
	require.NoError(t, r.StopServer("xmpp1.example.com"))
	var buf testhelp.Buffer
	cfg := r.config()
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rb := r.start(cfg)
	rb.waitConnectedTo(t, "xmpp2.example.com", 10*time.Second)
	require.ErrorIs(t, rb.stop(t), context.Canceled)

	lines := jsonLines(t, &buf)
	var failed, order, cert, backupSteps int
	for _, m := range lines {
		assert.NotContains(t, m, "error", "errors are logged under err: %v", m)
		switch m["msg"] {
		case "xmpp server failed":
			if m["server"] == "xmpp1.example.com" {
				failed++
				assert.Equal(t, "WARN", m["level"])
				assert.Equal(t, "xmpp2.example.com", m["next"])
				assert.Equal(t, string(KindNetwork), m["kind"])
				assert.NotEmpty(t, m["err"])
			}
		case "xmpp servers in the order to try":
			order++
			servers, _ := m["servers"].([]any)
			require.Len(t, servers, 2, "%v", m)
			assert.True(t, strings.HasPrefix(servers[0].(string), "xmpp1.example.com:"), "%v", servers)
		case "xmpp server certificate":
			if m["server"] == "xmpp2.example.com" {
				cert++
				assert.Contains(t, m["dns_sans"], "xmpp2.example.com")
				assert.NotEmpty(t, m["sha256"])
			}
		case "xmpp link connecting", "xmpp link tls", "xmpp link authenticating", "xmpp link connected":
			if m["server"] == "xmpp2.example.com" {
				backupSteps++
				assert.NotContains(t, m, "err", "a connection step carries another server's error: %v", m)
			}
		}
	}
	assert.GreaterOrEqual(t, failed, 1, "no WARN line for the failed preferred server")
	assert.GreaterOrEqual(t, order, 1, "no debug line with the order to try")
	assert.GreaterOrEqual(t, cert, 1, "no debug line with the certificate")
	assert.GreaterOrEqual(t, backupSteps, 3, "tls, authenticating and connected on the backup: %v", lines)
}
