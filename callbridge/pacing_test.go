package callbridge

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component/componenttest"
)

// connectFailures sums the failed attempts of every kind.
func connectFailures(b *Bridge) uint64 {
	var n uint64
	for _, c := range b.Stats().ConnectFailures {
		n += c
	}
	return n
}

// TestRestartLoopsReconnectFast: with the default Backoff, a server that
// restarts every 5 s, 20 s or 40 s (links that served) is reconnected
// within 2 s of listening again, every time: a healthy link resets the
// pacing, and the waits of an outage stay under half its length. The
// links' lifetimes are played with a test clock; the outages are real.
func TestRestartLoopsReconnectFast(t *testing.T) {
	r := newRig(t, 10)
	cfg := r.config()
	cfg.Backoff = Backoff{} // the defaults an operator gets
	cfg.PingInterval = 20 * time.Millisecond
	var offset atomic.Int64
	rb := r.start(cfg, func(b *Bridge) {
		b.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	srv := r.servers[0]
	for _, interval := range []time.Duration{5 * time.Second, 20 * time.Second, 40 * time.Second} {
		for round := range 2 {
			rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
			if interval < DefaultBackoff().ResetAfter {
				// A ping the server answered shows it alive before the
				// link has lived ResetAfter.
				require.Eventually(t, func() bool {
					s, err := rb.Session()
					return err == nil && s.Stats().LastPingRTT > 0
				}, 10*time.Second, time.Millisecond)
			}
			offset.Add(int64(interval)) // the link has served for interval
			failed := connectFailures(rb.Bridge)
			srv.Stop()
			srv.CloseClientConnections()
			// The server is down: let the bridge fail twice (its waits
			// are now in play), then bring the server back.
			require.Eventually(t, func() bool { return connectFailures(rb.Bridge) >= failed+2 }, 10*time.Second, time.Millisecond)
			require.NoError(t, srv.Start())
			listening := time.Now()
			rb.waitConnectedTo(t, "xmpp1.example.com", 20*time.Second)
			took := time.Since(listening)
			t.Logf("restart every %v, round %d: reconnected %v after the server listened again", interval, round, took.Round(time.Millisecond))
			assert.Less(t, took, 2*time.Second)
		}
	}
}

// TestFlappingServerBackedOff: a server that accepts the bridge and drops
// it at once, again and again, is still backed off (the link never showed
// the server alive), up to Backoff.TransientMax.
func TestFlappingServerBackedOff(t *testing.T) {
	r := newRig(t, 10)
	r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
		return []componenttest.Fault{{Phase: componenttest.PhaseHandshake, Action: componenttest.ActionClose}}
	})
	cfg := r.config()
	cfg.Backoff = Backoff{Base: 20 * time.Millisecond, TransientMax: 160 * time.Millisecond, Max: time.Second, ResetAfter: time.Minute, NoJitter: true}
	rb := r.start(cfg)
	waits := rb.backoffWaits(t, 5)
	// The first drop is retried at once; then 2, 3, 4, 5 failures.
	assert.Equal(t, []time.Duration{40, 80, 160, 160, 160}, scale(waits[:5], time.Millisecond))
	assert.GreaterOrEqual(t, rb.Stats().Connects, uint64(6), "each cycle got in, then was dropped")
}
