//go:build integration

package integration

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

// TestIntegrationBridgeRestartPacing runs a Bridge with the default
// Backoff against a real Prosody that restarts under it, with the bridge
// pinging Prosody often (so each link has shown the server alive: a ping
// the server answered) and a c2s user pinging the bridge through it:
// after each restart the bridge is back within about a second of Prosody
// accepting again, however often it restarts; after a stop of 10 s it is
// back within half that. The times are logged.
func TestIntegrationBridgeRestartPacing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p := startProsody(t, prosodyOptions{})
	logs := &logBuffer{}
	b, err := callbridge.New(callbridge.Config{
		Name:       componentName,
		Domain:     domain,
		Secret:     component.NewSecret(defaultSecret),
		RootCAs:    p.PKI.Pool,
		Server:     p.TLSAddr(),
		ServerName: p.FQDN,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// Backoff: the defaults. Pings often, so that each link shows
		// the server alive long before Backoff.ResetAfter.
		Tuning: component.Tuning{PingInterval: 100 * time.Millisecond},
	})
	require.NoError(t, err)
	events := collectEvents(t, b)
	run := runBridge(t, b)
	defer func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	}()
	cb := jid.MustParse(componentAddr)
	// up waits for the next link and returns when it came up, once
	// Prosody has answered one of the bridge's pings on it (the link is
	// then healthy) and a user's ping through Prosody reached the bridge.
	up := func(what string) time.Time {
		ev := events.waitFor(t, 30*time.Second, what, func(ev callbridge.Event) bool { return ev.To == callbridge.Connected })
		require.Eventually(t, func() bool {
			s, err := b.Session()
			return err == nil && s.Stats().LastPingRTT > 0
		}, 10*time.Second, time.Millisecond, "Prosody answers the bridge's ping")
		user := dialC2S(ctx, t, p, defaultUser, defaultPassword)
		require.NoError(t, user.Ping(ctx, cb), "a ping through Prosody to the bridge and back")
		user.Close()
		return ev.Status.ConnectedSince
	}
	up("first link")
	for round := range 3 {
		p.Stop() // SIGTERM: Prosody drops the link (EOF) and exits
		p.Start()
		listening := time.Now()
		took := up("link after a restart").Sub(listening)
		t.Logf("restart %d: bridge back %v after Prosody accepted again", round+1, took.Round(time.Millisecond))
		assert.Less(t, took, 3*time.Second)
	}
	p.Stop()
	time.Sleep(10 * time.Second) // the scenario: Prosody stays down for 10 s
	p.Start()
	listening := time.Now()
	took := up("link after a 10 s stop").Sub(listening)
	t.Logf("stop, 10 s, start: bridge back %v after Prosody accepted again", took.Round(time.Millisecond))
	assert.Less(t, took, 7*time.Second, "at most half the outage (5 s), plus a connect")

	require.NoError(t, b.Close())
	err, ok := run.wait(10 * time.Second)
	require.True(t, ok)
	assert.ErrorIs(t, err, callbridge.ErrClosed)
}
