//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

// TestIntegrationBridgeFrozenServer runs a Bridge against two Prosody
// servers found by SRV while the preferred one is frozen (SIGSTOP: the
// kernel accepts TCP, nothing answers TLS), as a hung server or a stalled
// cluster node would be. A cold start reaches the healthy server after
// Config.ParallelAfter, not after the handshake timeout; then, with that
// server frozen too, Close still returns within about CloseTimeout.
func TestIntegrationBridgeFrozenServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	c := startTwoServers(t, false)
	c.p1.Freeze()
	t.Cleanup(c.p1.Thaw) // runs before the servers' own cleanup stops them

	logs := &logBuffer{}
	cfg := c.bridgeConfig(defaultSecret, logs)
	cfg.HandshakeTimeout = 15 * time.Second
	cfg.PingInterval = -1 // the frozen server's silence must not be what ends anything
	b, err := callbridge.New(cfg)
	require.NoError(t, err)
	joins := make(chan *component.JoinRequest, 8)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		joins <- req
		return &component.JoinResult{Session: "sess-" + req.ID}, nil
	})
	events := collectEvents(t, b)
	defer func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	}()
	begin := time.Now()
	run := runBridge(t, b)

	ev := events.waitFor(t, failoverBound, "link to xmpp2", connectedTo(c.p2.FQDN))
	took := ev.Status.ConnectedSince.Sub(begin)
	t.Logf("cold start, %s frozen: linked to %s in %v (ParallelAfter 2s default, HandshakeTimeout %v)",
		c.p1.FQDN, c.p2.FQDN, took.Round(time.Millisecond), cfg.HandshakeTimeout)
	assert.Less(t, took, cfg.HandshakeTimeout, "the frozen server held the connection for the whole handshake timeout")
	user := dialC2S(ctx, t, c.p2, defaultUser, defaultPassword)
	joinVia(ctx, t, user, joins, "join-1")
	user.Close()

	// Now the server in use hangs too: Close must not wait for it.
	c.p2.Freeze()
	t.Cleanup(c.p2.Thaw)
	start := time.Now()
	require.NoError(t, b.Close())
	closed := time.Since(start)
	t.Logf("Close with %s frozen: %v (component CloseTimeout 2s)", c.p2.FQDN, closed.Round(time.Millisecond))
	assert.Less(t, closed, 5*time.Second)
	err, ok := run.wait(time.Second)
	require.True(t, ok, "Run returns before Close does")
	assert.ErrorIs(t, err, callbridge.ErrClosed)
}
