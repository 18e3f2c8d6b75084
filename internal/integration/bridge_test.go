//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

// failoverBound is the generous limit on failover and fail-back: these
// tests check that they happen, the benchmarks in callbridge measure speed.
const failoverBound = 10 * time.Second

// twoServers is the usual cluster: xmpp1 (SRV priority 10) and xmpp2
// (priority 20), each a separate Prosody serving example.com with the
// component cb1.example.com and the c2s user alice, behind dnsmasq.
type twoServers struct {
	pki    *testPKI
	p1, p2 *prosody
	dns    *dnsmasq
}

// startTwoServers starts the cluster; debug2 logs every stanza on xmpp2.
func startTwoServers(t *testing.T, debug2 bool) *twoServers {
	t.Helper()
	pki := newPKI(t)
	p1 := startProsody(t, prosodyOptions{FQDN: "xmpp1." + domain, PKI: pki})
	p2 := startProsody(t, prosodyOptions{FQDN: "xmpp2." + domain, PKI: pki, Debug: debug2})
	dns := startDNS(t, dnsZone{
		SRV: []srvRecord{
			{Target: p1.FQDN, Port: p1.TLSPort, Priority: 10, Weight: 0},
			{Target: p2.FQDN, Port: p2.TLSPort, Priority: 20, Weight: 0},
		},
		Hosts: []hostRecord{
			{Name: p1.FQDN, Addrs: []netip.Addr{p1.IP}},
			{Name: p2.FQDN, Addrs: []netip.Addr{p2.IP}},
		},
	})
	return &twoServers{pki: pki, p1: p1, p2: p2, dns: dns}
}

// bridgeConfig is a Call Bridge with an empty server address (SRV through
// the cluster's dnsmasq), the test CA, and waits short enough for a test.
func (c *twoServers) bridgeConfig(secret string, logs *logBuffer) callbridge.Config {
	return callbridge.Config{
		Name:        componentName,
		Domain:      domain,
		Secret:      component.NewSecret(secret),
		RootCAs:     c.pki.Pool,
		NameServers: []string{c.dns.Addr},
		Backoff: callbridge.Backoff{
			Base: 50 * time.Millisecond, Max: 500 * time.Millisecond,
			Multiplier: 2, ResetAfter: time.Minute,
		},
		DialTimeout: 2 * time.Second,
		Tuning:      component.Tuning{HandshakeTimeout: 3 * time.Second, PingInterval: 200 * time.Millisecond, PingTimeout: 500 * time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// bridgeRun is a Bridge.Run in progress on its own goroutine.
type bridgeRun struct {
	done chan struct{} // closed when Run returned
	err  error         // Run's error, set before done is closed
}

// runBridge starts b.Run on its own goroutine; a cleanup closes the bridge
// and waits for Run, should the test end early.
func runBridge(t *testing.T, b *callbridge.Bridge) *bridgeRun {
	t.Helper()
	r := &bridgeRun{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = b.Run(context.Background())
	}()
	t.Cleanup(func() {
		_ = b.Close()
		if _, ok := r.wait(10 * time.Second); !ok {
			t.Error("Run did not return after Close")
		}
	})
	return r
}

// wait waits up to timeout for Run to return and gives its error; ok is
// false when it did not return in time.
func (r *bridgeRun) wait(timeout time.Duration) (err error, ok bool) {
	select {
	case <-r.done:
		return r.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// eventLog collects a bridge's events on its own goroutine, as a
// subscriber must: Bridge.Close waits until subscribers have taken every
// event up to Stopped.
type eventLog struct {
	mu     sync.Mutex
	seen   []callbridge.Event
	ended  bool          // the channel was closed
	wake   chan struct{} // signalled on each event and at the end
	next   int           // index of the first event waitFor has not looked at
	closed chan struct{} // closed when the collecting goroutine returns
}

// collectEvents subscribes to b and collects its events until the
// subscription ends (after Stopped); a cleanup unsubscribes and waits.
func collectEvents(t *testing.T, b *callbridge.Bridge) *eventLog {
	ch, cancel := b.Subscribe()
	l := &eventLog{wake: make(chan struct{}, 1), closed: make(chan struct{})}
	go func() {
		defer close(l.closed)
		for ev := range ch {
			l.mu.Lock()
			l.seen = append(l.seen, ev)
			l.mu.Unlock()
			l.signal()
		}
		l.mu.Lock()
		l.ended = true
		l.mu.Unlock()
		l.signal()
	}()
	t.Cleanup(func() {
		cancel()
		<-l.closed
	})
	return l
}

func (l *eventLog) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// waitFor returns the first event not looked at yet that satisfies ok; it
// fails the test after timeout or when the subscription ends first.
func (l *eventLog) waitFor(t *testing.T, timeout time.Duration, what string, ok func(callbridge.Event) bool) callbridge.Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		for l.next < len(l.seen) {
			ev := l.seen[l.next]
			l.next++
			if ok(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		ended := l.ended
		l.mu.Unlock()
		if ended {
			t.Fatalf("events ended before %s; seen: %v", what, l.trail())
		}
		select {
		case <-l.wake:
		case <-timer.C:
			t.Fatalf("no %s within %v; seen: %v", what, timeout, l.trail())
		}
	}
}

// trail renders the events seen as "From->To" with the server for the
// states that name one (Connecting, Connected).
func (l *eventLog) trail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.seen))
	for i, ev := range l.seen {
		server := ""
		if ev.To == callbridge.Connecting || ev.To == callbridge.Connected {
			server = ev.Status.Server
		}
		out[i] = transition(ev.From, ev.To, server)
	}
	return out
}

// transition renders one event of a trail.
func transition(from, to callbridge.State, server string) string {
	s := fmt.Sprintf("%v->%v", from, to)
	if server != "" {
		s += "@" + server
	}
	return s
}

func connectedTo(server string) func(callbridge.Event) bool {
	return func(ev callbridge.Event) bool {
		return ev.To == callbridge.Connected && ev.Status.Server == server
	}
}

// joinVia sends a join request from user to the component and returns the
// result; it checks that the bridge's handler saw the request as sent,
// from that user.
func joinVia(ctx context.Context, t *testing.T, user *c2sClient, joins <-chan *component.JoinRequest, id string) {
	t.Helper()
	req := component.JoinRequest{ID: id, Call: "space-42", Passcode: "1234", DisplayName: "Alice"}
	res, err := user.Join(ctx, jid.MustParse(componentAddr), &req)
	require.NoError(t, err, "join %s from %s", id, user.JID)
	assert.Equal(t, "sess-"+id, res.Session)
	select {
	case got := <-joins:
		assert.Equal(t, id, got.ID)
		assert.Equal(t, user.JID.String(), got.From.String(), "the request came through the user's server")
	default:
		t.Fatalf("join %s: the bridge's handler did not run before the reply", id)
	}
}

// joinRefusedNoLink checks that user's server has no link for the
// component: Prosody itself answers for it, with remote-server-timeout
// ("Component unavailable", plus its own <not-connected/>).
func joinRefusedNoLink(ctx context.Context, t *testing.T, user *c2sClient, id string) {
	t.Helper()
	req := component.JoinRequest{ID: id, Call: "space-42", Passcode: "1234"}
	res, err := user.Join(ctx, jid.MustParse(componentAddr), &req)
	assert.Nil(t, res)
	var se stanza.Error
	require.ErrorAs(t, err, &se, "a server without the link must refuse join %s", id)
	assert.Equal(t, stanza.RemoteServerTimeout, se.Condition)
}

// TestIntegrationBridgeFailover runs a callbridge.Bridge against two real
// Prosody servers found by SRV: it connects to the preferred one and serves
// join requests from its users; when that server stops it moves to the
// other and serves that server's users; when the preferred server is back
// it fails back (FailBack), opening the new link before closing the old one
// cleanly. The events seen through Subscribe follow that story.
func TestIntegrationBridgeFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	c := startTwoServers(t, true)
	p1, p2 := c.p1, c.p2

	logs := &logBuffer{}
	cfg := c.bridgeConfig(defaultSecret, logs)
	cfg.FailBack = true
	cfg.FailBackInterval = 200 * time.Millisecond
	b, err := callbridge.New(cfg)
	require.NoError(t, err)
	joins := make(chan *component.JoinRequest, 8)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		joins <- req
		return &component.JoinResult{Session: "sess-" + req.ID}, nil
	})
	events := collectEvents(t, b)
	begin := time.Now()
	run := runBridge(t, b)
	defer func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	}()

	// 1. Up on the preferred server; its users reach the bridge.
	ev := events.waitFor(t, failoverBound, "link to xmpp1", connectedTo(p1.FQDN))
	t.Logf("connected to %s (%s) in %v", ev.Status.Server, ev.Status.Addr, ev.Status.ConnectedSince.Sub(begin).Round(time.Millisecond))
	assert.Equal(t, p1.TLSAddr(), ev.Status.Addr)
	user1 := dialC2S(ctx, t, p1, defaultUser, defaultPassword)
	user2 := dialC2S(ctx, t, p2, defaultUser, defaultPassword)
	joinVia(ctx, t, user1, joins, "join-1")
	joinRefusedNoLink(ctx, t, user2, "join-early") // no link on xmpp2 yet

	// 2. The preferred server stops: failover to xmpp2.
	stopped := time.Now()
	p1.Stop()
	ev = events.waitFor(t, failoverBound, "failover to xmpp2", connectedTo(p2.FQDN))
	failover := ev.Status.ConnectedSince.Sub(stopped)
	t.Logf("failover: %s stopped -> linked to %s in %v (Prosody's own shutdown included)", p1.FQDN, p2.FQDN, failover.Round(time.Millisecond))
	assert.Less(t, failover, failoverBound)
	st := b.Status()
	assert.Equal(t, callbridge.Connected, st.State)
	assert.Equal(t, p2.FQDN, st.Server)
	assert.Equal(t, p2.TLSAddr(), st.Addr)
	joinVia(ctx, t, user2, joins, "join-2")

	// 3. The preferred server is back: fail-back, no gap.
	p1.Start()
	restarted := time.Now()
	ev = events.waitFor(t, failoverBound, "fail-back to xmpp1", connectedTo(p1.FQDN))
	assert.Equal(t, callbridge.Connected, ev.From, "fail-back moves between two live links")
	failback := ev.Status.ConnectedSince.Sub(restarted)
	t.Logf("fail-back: %s accepting again -> linked to it in %v (FailBackInterval %v)", p1.FQDN, failback.Round(time.Millisecond), cfg.FailBackInterval)
	assert.Less(t, failback, failoverBound)
	assert.Equal(t, p1.FQDN, b.Status().Server)
	user3 := dialC2S(ctx, t, p1, defaultUser, defaultPassword)
	joinVia(ctx, t, user3, joins, "join-3")

	// The old link on xmpp2 was closed cleanly: the bridge counts it as
	// retired by the fail-back, Prosody saw our </stream:stream> (not a
	// dropped connection), and it no longer routes to the component.
	require.Eventually(t, func() bool { return b.Stats().Disconnects[callbridge.KindFailBack] == 1 },
		5*time.Second, 10*time.Millisecond, "the link to xmpp2 was not retired")
	require.Eventually(t, func() bool { return componentClosedCleanly(p2.Log()) },
		5*time.Second, 10*time.Millisecond, "xmpp2 did not see the component's </stream:stream>")
	joinRefusedNoLink(ctx, t, user2, "join-late")

	// 4. Stop the bridge and check the whole story.
	require.NoError(t, b.Close())
	err, ok := run.wait(10 * time.Second)
	require.True(t, ok, "Run did not return after Close")
	require.ErrorIs(t, err, callbridge.ErrClosed)
	events.waitFor(t, 5*time.Second, "Stopped", func(ev callbridge.Event) bool { return ev.To == callbridge.Stopped })
	type S = callbridge.State
	const (
		idle, res, conn, tls = callbridge.Idle, callbridge.Resolving, callbridge.Connecting, callbridge.TLS
		auth, up, stopping   = callbridge.Authenticating, callbridge.Connected, callbridge.Stopping
		stop                 = callbridge.Stopped
	)
	tr := func(from, to S, server string) string { return transition(from, to, server) }
	assert.Equal(t, []string{
		tr(idle, res, ""), tr(res, conn, p1.FQDN), tr(conn, tls, ""), tr(tls, auth, ""), tr(auth, up, p1.FQDN),
		// xmpp1 stops: the lost server is tried last, so xmpp2 comes first.
		tr(up, res, ""), tr(res, conn, p2.FQDN), tr(conn, tls, ""), tr(tls, auth, ""), tr(auth, up, p2.FQDN),
		// Fail-back probes do not show; the move between live links does.
		tr(up, up, p1.FQDN),
		tr(up, stopping, ""), tr(stopping, stop, ""),
	}, events.trail())

	stats := b.Stats()
	t.Logf("stats: %+v", stats)
	assert.Equal(t, uint64(3), stats.Connects, "xmpp1, xmpp2, xmpp1 again")
	assert.Equal(t, uint64(3), stats.JoinsHandled)
	// Three links ended: xmpp1's when it stopped, xmpp2's at fail-back,
	// xmpp1's again at Close.
	assert.Equal(t, uint64(1), stats.Disconnects[callbridge.KindFailBack], "the fail-back")
	assert.Equal(t, uint64(1), stats.Disconnects[callbridge.KindClosed], "Close")
	var ended uint64
	for _, n := range stats.Disconnects {
		ended += n
	}
	assert.Equal(t, uint64(3), ended, "%v", stats.Disconnects)
	assert.Positive(t, stats.LastKeepaliveRTT, "pings to the server ran")
	assert.NotContains(t, logs.String(), defaultSecret, "the secret must never be logged")
}

// componentClosedCleanly reports whether Prosody's debug log shows a
// component session receiving the stream's closing tag. Prosody names
// component sessions "jcp<id>" (c2s ones "c2s<id>"); a dropped TCP
// connection logs no such line.
func componentClosedCleanly(log string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "jcp") && strings.Contains(line, "Received </stream:stream>") {
			return true
		}
	}
	return false
}

// TestIntegrationBridgeWrongSecret runs a Bridge whose secret Prosody
// refuses: it reports a permanent authentication error and keeps retrying
// (CMS's behaviour, so that an operator can fix the server while it runs);
// with StopOnPermanentError, Run returns a *callbridge.PermanentError after
// the first refusal. The secret never shows in the bridge's log.
func TestIntegrationBridgeWrongSecret(t *testing.T) {
	const wrongSecret = "bridge-Wr0ng-s3cret-77"
	c := startTwoServers(t, false)

	t.Run("keeps retrying", func(t *testing.T) {
		logs := &logBuffer{}
		cfg := c.bridgeConfig(wrongSecret, logs)
		cfg.Backoff.Max = 200 * time.Millisecond // the pace of retries after a permanent error
		b, err := callbridge.New(cfg)
		require.NoError(t, err)
		events := collectEvents(t, b)
		run := runBridge(t, b)

		// Each failed cycle waits Backoff.Max, without jitter growth: the
		// error is permanent, and the bridge tries again regardless.
		for i := range 2 {
			ev := events.waitFor(t, 10*time.Second, fmt.Sprintf("back-off %d", i+1), func(ev callbridge.Event) bool {
				return ev.To == callbridge.BackingOff
			})
			assert.Equal(t, cfg.Backoff.Max, ev.Status.Backoff, "back-off %d", i+1)
			assert.True(t, ev.Status.Permanent, "back-off %d", i+1)
			assert.Equal(t, callbridge.KindAuth, ev.Status.LastErrKind, "back-off %d", i+1)
			assert.Equal(t, i+1, ev.Status.Attempt, "back-off %d", i+1)
		}
		// Both servers refuse each cycle; two cycles make four refusals.
		require.Eventually(t, func() bool {
			return b.Stats().ConnectFailures[callbridge.KindAuth] >= 4
		}, 10*time.Second, 10*time.Millisecond, "the bridge stopped retrying; status %+v", b.Status())
		st := b.Status()
		t.Logf("status: state %v, attempt %d, kind %s, permanent %v: %v", st.State, st.Attempt, st.LastErrKind, st.Permanent, st.LastErr)
		assert.Equal(t, callbridge.KindAuth, st.LastErrKind)
		assert.True(t, st.Permanent, "a wrong secret needs an operator")
		assert.GreaterOrEqual(t, st.Attempt, 1, "failed cycles are counted")
		assert.NotEqual(t, callbridge.Connected, st.State)
		require.ErrorIs(t, st.LastErr, stream.NotAuthorized)
		var ce *callbridge.ConnectError
		require.ErrorAs(t, st.LastErr, &ce)
		assert.Equal(t, callbridge.Authenticating, ce.Step)
		assert.Contains(t, []string{c.p1.FQDN, c.p2.FQDN}, ce.Server)
		assert.NotContains(t, st.LastError(), wrongSecret)
		assert.Zero(t, b.Stats().Connects)

		require.NoError(t, b.Close())
		err, ok := run.wait(10 * time.Second)
		require.True(t, ok, "Run did not return after Close")
		require.ErrorIs(t, err, callbridge.ErrClosed, "retrying until closed")
		out := logs.String()
		assert.Contains(t, out, "kind=auth", "the refusals are logged")
		assert.NotContains(t, out, wrongSecret, "the secret must never be logged")
	})

	t.Run("StopOnPermanentError", func(t *testing.T) {
		logs := &logBuffer{}
		cfg := c.bridgeConfig(wrongSecret, logs)
		cfg.StopOnPermanentError = true
		b, err := callbridge.New(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = b.Run(ctx)
		var pe *callbridge.PermanentError
		require.ErrorAs(t, err, &pe)
		require.ErrorIs(t, err, stream.NotAuthorized)
		assert.False(t, errors.Is(err, context.DeadlineExceeded), "Run gave up by itself")
		t.Logf("Run: %v", err)
		assert.NotContains(t, err.Error(), wrongSecret)
		// Gave up within the first cycle: no server was asked twice.
		n := b.Stats().ConnectFailures[callbridge.KindAuth]
		assert.Contains(t, []uint64{1, 2}, n, "refusals before giving up")
		assert.Equal(t, callbridge.Stopped, b.Status().State)
		assert.NotContains(t, logs.String(), wrongSecret, "the secret must never be logged")
		require.NoError(t, b.Close())
	})
}
