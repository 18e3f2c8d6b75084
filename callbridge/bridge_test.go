package callbridge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/tlsverify"
)

func TestConnectsToPreferredSRVTarget(t *testing.T) {
	r := newRig(t, 20, 10, 30)
	rb := r.start(r.config())
	st := rb.waitConnectedTo(t, "xmpp2.example.com", 10*time.Second)
	assert.Equal(t, r.servers[1].Addr(), st.Addr)
	assert.False(t, st.ConnectedSince.IsZero())

	reply := join(t, r.servers[1], "42", "1234")
	assert.Contains(t, reply, "type='result'")
	assert.Contains(t, reply, "s-42")
	reply = join(t, r.servers[1], "42", "bad")
	assert.Contains(t, reply, "forbidden")

	stats := rb.Stats()
	assert.Equal(t, uint64(1), stats.Connects)
	assert.Equal(t, uint64(1), stats.JoinsHandled)
	assert.Equal(t, uint64(1), stats.JoinsRefused)
	assert.GreaterOrEqual(t, stats.StanzasIn, uint64(2))

	// The state sequence of a first connection.
	var seq []State
	for _, ev := range rb.eventList() {
		seq = append(seq, ev.To)
	}
	assert.Equal(t, []State{Resolving, Connecting, TLS, Authenticating, Connected}, seq[:5])
}

func TestFailoverWithoutBackoff(t *testing.T) {
	r := newRig(t, 10, 20)
	cfg := r.config()
	// A backoff this long would fail the test: moving to the next server
	// after a drop must not wait for it.
	cfg.Backoff = Backoff{Base: time.Minute, Max: time.Minute}
	rb := r.start(cfg)
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)

	start := time.Now()
	r.servers[0].Stop()
	r.servers[0].CloseClientConnections()
	st := rb.waitConnectedTo(t, "xmpp2.example.com", 20*time.Second)
	t.Logf("failover took %v", time.Since(start))
	assert.Equal(t, r.servers[1].Addr(), st.Addr)
	assert.Contains(t, join(t, r.servers[1], "7", "1234"), "s-7")
	for _, ev := range rb.eventList() {
		assert.NotEqual(t, BackingOff, ev.To, "no backoff between servers")
	}
}

func TestAllDownBackoffGrowsAndCaps(t *testing.T) {
	r := newRig(t, 10)
	r.servers[0].Stop()
	cfg := r.config()
	cfg.Backoff = Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2, NoJitter: true}
	rb := r.start(cfg)

	waits := rb.backoffWaits(t, 6)
	assert.Equal(t, []time.Duration{10, 20, 40, 80, 80, 80}, scale(waits[:6], time.Millisecond))
	st := rb.Status()
	assert.Equal(t, KindNetwork, st.LastErrKind)
	assert.False(t, st.Permanent)

	// The server comes back: the bridge reconnects on its own.
	require.NoError(t, r.servers[0].Start())
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
	assert.Zero(t, rb.Status().Attempt)
}

func scale(ds []time.Duration, unit time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d / unit
	}
	return out
}

func TestWrongSecretIsPermanentAndRetried(t *testing.T) {
	r := newRig(t, 10)
	cfg := r.config()
	cfg.Secret = component.NewSecret("wrong-" + testSecret)
	cfg.Backoff = Backoff{Base: 10 * time.Millisecond, Max: 30 * time.Millisecond}
	rb := r.start(cfg)

	require.Eventually(t, func() bool {
		n := 0
		for _, ev := range rb.eventList() {
			if ev.To == BackingOff {
				n++
				assert.Equal(t, 30*time.Millisecond, ev.Status.Backoff, "permanent errors retry at the cap")
			}
		}
		return n >= 3
	}, 10*time.Second, 5*time.Millisecond)
	st := rb.Status()
	assert.Equal(t, KindAuth, st.LastErrKind)
	assert.True(t, st.Permanent)
	assert.ErrorIs(t, st.LastErr, stream.NotAuthorized)
	var ce *ConnectError
	require.ErrorAs(t, st.LastErr, &ce)
	assert.Equal(t, Authenticating, ce.Step)
	assert.Equal(t, "xmpp1.example.com", ce.Server)
	assert.Positive(t, rb.Stats().ConnectFailures[KindAuth])

	// The operator fixes the secret on the server: the bridge gets in.
	r.servers[0].AddComponent(testAddr, "wrong-"+testSecret)
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
}

func TestStopOnPermanentError(t *testing.T) {
	r := newRig(t, 10)
	cfg := r.config()
	cfg.Name = "cb9"
	cfg.StopOnPermanentError = true
	b, err := New(cfg)
	require.NoError(t, err)
	err = b.Run(context.Background())
	noteErr(err)
	var pe *PermanentError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, stream.HostUnknown)
	assert.Equal(t, Stopped, b.Status().State)
	assert.Equal(t, KindUnknownName, b.Status().LastErrKind)
	assert.ErrorIs(t, b.Run(context.Background()), ErrClosed)
}

func TestSeeOtherHostFollowedOnce(t *testing.T) {
	r := newRig(t, 10, 20)
	// xmpp1 redirects to xmpp2's address; xmpp2 is also reachable through
	// SRV, so make SRV's path fail by giving xmpp2 a fault on its first
	// connection only if it were tried first (it is not: priority 20).
	r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
		return []componenttest.Fault{{Phase: componenttest.PhaseHeader, Action: componenttest.ActionStreamError,
			Err: stream.Error{Err: "see-other-host", Content: r.servers[1].Addr()}}}
	})
	rb := r.start(r.config())
	st := rb.waitConnectedTo(t, "127.0.0.1", 10*time.Second)
	assert.Equal(t, r.servers[1].Addr(), st.Addr)
	var sawRedirect bool
	for _, ev := range rb.eventList() {
		if ev.Status.LastErrKind == KindRedirect {
			sawRedirect = true
		}
	}
	assert.True(t, sawRedirect)
}

func TestBlackholedServerReplaced(t *testing.T) {
	r := newRig(t, 10, 20)
	cfg := r.config()
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = 200 * time.Millisecond
	rb := r.start(cfg)
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
	conn, err := r.servers[0].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)
	start := time.Now()
	conn.Blackhole()
	rb.waitConnectedTo(t, "xmpp2.example.com", 10*time.Second)
	t.Logf("blackhole detected and replaced in %v", time.Since(start))
	assert.Positive(t, rb.Stats().Disconnects[KindTimeout])
}

func TestFailBack(t *testing.T) {
	r := newRig(t, 10, 20)
	r.servers[0].Stop()
	cfg := r.config()
	cfg.FailBack = true
	cfg.FailBackInterval = 50 * time.Millisecond
	rb := r.start(cfg)
	rb.waitConnectedTo(t, "xmpp2.example.com", 10*time.Second)
	old, err := r.servers[1].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)

	require.NoError(t, r.servers[0].Start())
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, old.WaitClosed(ctx))
	assert.True(t, old.ClosedByPeer(), "the old link is closed cleanly")
	var moved bool
	for _, ev := range rb.eventList() {
		moved = moved || (ev.From == Connected && ev.To == Connected && ev.Status.Server == "xmpp1.example.com")
	}
	assert.True(t, moved, "fail-back is published as an event")
	assert.Contains(t, join(t, r.servers[0], "9", "1234"), "s-9")
}

func TestUpdateNewSecret(t *testing.T) {
	r := newRig(t, 10)
	rb := r.start(r.config())
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
	first, err := r.servers[0].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)

	r.servers[0].AddComponent(testAddr, "new-"+testSecret)
	cfg := r.config()
	cfg.Secret = component.NewSecret("new-" + testSecret)
	require.NoError(t, rb.Update(cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, first.WaitClosed(ctx))
	require.Eventually(t, func() bool {
		c, err := r.servers[0].WaitConn(ctx, testAddr)
		return err == nil && c != first
	}, 10*time.Second, 10*time.Millisecond)
	rb.waitState(t, Connected, 10*time.Second)
	assert.Contains(t, join(t, r.servers[0], "5", "1234"), "s-5", "handlers survive the update")

	bad := cfg
	bad.Domain = ""
	assert.ErrorIs(t, rb.Update(bad), component.ErrConfig)
}

func TestCancelClosesStreamCleanly(t *testing.T) {
	r := newRig(t, 10)
	rb := r.start(r.config())
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
	conn, err := r.servers[0].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)
	assert.ErrorIs(t, rb.stop(t), context.Canceled)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, conn.WaitClosed(ctx))
	assert.True(t, conn.ClosedByPeer(), "</stream:stream> seen by the server")
	assert.Equal(t, Stopped, rb.Status().State)
	evs := rb.eventList()
	assert.Equal(t, Stopped, evs[len(evs)-1].To)
	_, err = rb.Session()
	assert.ErrorIs(t, err, ErrClosed)
}

func TestCloseAndSendWhileDown(t *testing.T) {
	r := newRig(t, 10)
	r.servers[0].Stop()
	rb := r.start(r.config())
	rb.waitState(t, BackingOff, 10*time.Second)
	err := rb.Send(context.Background(), component.Message{Type: "chat"})
	assert.ErrorIs(t, err, ErrNotConnected)
	_, err = rb.SendIQ(context.Background(), component.IQ{})
	assert.ErrorIs(t, err, ErrNotConnected)
	require.NoError(t, rb.Close())
	assert.ErrorIs(t, <-rb.errc, ErrClosed)
	rb.errc <- ErrClosed
	require.NoError(t, rb.Close(), "Close is idempotent")
}

func TestCertificateMissingFQDN(t *testing.T) {
	r := newRig(t, 10)
	cfg := r.config()
	// The certificate names xmpp1.example.com; demand another FQDN.
	cfg.ServerName = "xmpp9.example.com"
	rb := r.start(cfg)
	rb.waitState(t, BackingOff, 10*time.Second)
	st := rb.Status()
	assert.Equal(t, KindCertificate, st.LastErrKind)
	var ne *tlsverify.NameError
	require.ErrorAs(t, st.LastErr, &ne)
	assert.Contains(t, st.LastErr.Error(), "xmpp9.example.com")
}

func TestNoServiceRecord(t *testing.T) {
	r := newRig(t, 10)
	r.dns.Set("_xmpp-component._tcp.example.com.", 33)
	require.NoError(t, r.dns.AddZone("_xmpp-component._tcp.example.com. 1 IN SRV 0 0 0 ."))
	rb := r.start(r.config())
	rb.waitState(t, BackingOff, 10*time.Second)
	assert.Equal(t, KindNoService, rb.Status().LastErrKind)
}

func TestHandlersFrozenAfterRun(t *testing.T) {
	r := newRig(t, 10)
	rb := r.start(r.config())
	rb.waitState(t, Connected, 10*time.Second)
	assert.Panics(t, func() { rb.HandleMessage(func(context.Context, *component.Stanza) {}) })
}

// TestSecretNeverLogged produces a connection and a refusal of its own,
// then searches every log line and error text of the package's tests so
// far (all of them when run in the whole suite, its own when run alone)
// for the secret.
func TestSecretNeverLogged(t *testing.T) {
	r := newRig(t, 10)
	good := r.start(r.config())
	good.waitState(t, Connected, 10*time.Second)
	noteErr(good.stop(t))
	cfg := r.config()
	cfg.Secret = component.NewSecret("wrong-" + testSecret)
	rb := r.start(cfg)
	rb.waitState(t, BackingOff, 10*time.Second)
	noteErr(rb.Status().LastErr)
	rb.stop(t)

	logSink.mu.Lock()
	logs := logSink.buf.String()
	logSink.mu.Unlock()
	require.NotEmpty(t, logs)
	assert.NotContains(t, logs, testSecret)
	assert.Contains(t, logs, "state=connected")
	errSink.mu.Lock()
	defer errSink.mu.Unlock()
	require.NotEmpty(t, errSink.texts)
	for _, e := range errSink.texts {
		assert.NotContains(t, e, testSecret)
	}
	assert.True(t, strings.Contains(logs, "kind=auth") && errors.Is(rb.Status().LastErr, stream.NotAuthorized))
}

func TestJoinInFlightCancelledOnDrop(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	inHandler := make(chan struct{})
	cancelled := make(chan error, 1)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		close(inHandler)
		<-ctx.Done()
		cancelled <- ctx.Err()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	defer func() { cancel(); <-errc }()

	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	conn, err := r.servers[0].WaitConn(wctx, testAddr)
	require.NoError(t, err)
	go func() {
		_, _ = conn.SendIQ(wctx, component.MarshalJoinIQ(&component.JoinRequest{
			From: jid.MustParse("guest@example.com/web"), ID: "j1", Call: "1",
		}, jid.MustParse(testAddr)))
	}()
	<-inHandler
	conn.Reset() // the link drops while the request is being handled
	select {
	case err := <-cancelled:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled when the link dropped")
	}
}

func TestCloseDoesNotWaitForIdleSubscriber(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	events, cancelSub := b.Subscribe() // never read
	defer cancelSub()
	errc := make(chan error, 1)
	go func() { errc <- b.Run(context.Background()) }()
	require.Eventually(t, func() bool { return b.Status().State == Connected }, 10*time.Second, time.Millisecond)
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a subscriber that does not read")
	}
	assert.ErrorIs(t, <-errc, ErrClosed)
	for range events { // closed, possibly after a few events
	}
}

// countingDialer is a Dialer that counts its dials.
type countingDialer struct {
	n atomic.Int64
	d net.Dialer
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.n.Add(1)
	return c.d.DialContext(ctx, network, addr)
}

// fixedResolver answers every lookup with one endpoint.
type fixedResolver struct {
	ep discovery.Endpoint
	n  atomic.Int64
}

func (f *fixedResolver) Lookup(ctx context.Context, req discovery.Request) (*discovery.Result, error) {
	f.n.Add(1)
	return &discovery.Result{Endpoints: []discovery.Endpoint{f.ep}}, nil
}

// TestDialerAndResolverSeams: a program's own Dialer and Resolver are used
// instead of the defaults.
func TestDialerAndResolverSeams(t *testing.T) {
	r := newRig(t, 10)
	host, port, err := net.SplitHostPort(r.servers[0].Addr())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	res := &fixedResolver{ep: discovery.Endpoint{Target: "xmpp1.example.com", Port: uint16(p), Addrs: []netip.Addr{netip.MustParseAddr(host)}}}
	dialer := &countingDialer{}
	cfg := r.config()
	cfg.NameServers = []string{"192.0.2.1:53"} // unused: the Resolver answers
	cfg.Resolver, cfg.Dialer = res, dialer
	rb := r.start(cfg)
	rb.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)
	assert.Positive(t, res.n.Load())
	assert.Positive(t, dialer.n.Load())
}

// TestNilContext: Run and Shutdown given a nil context refuse it with an
// error matching component.ErrNilContext and leave the bridge as it was:
// it runs, answers and stops afterwards (before, Run panicked holding the
// bridge's lock and every later call hung).
func TestNilContext(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	b.HandleJoin(func(_ context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	var nilCtx context.Context
	err = b.Run(nilCtx)
	require.ErrorIs(t, err, component.ErrNilContext)
	assert.Equal(t, KindConfig, Classify(err))
	assert.False(t, b.WaitForStateChange(nilCtx, Idle))

	wait, _ := runConnected(t, r, b)
	assert.ErrorIs(t, b.Shutdown(nilCtx), component.ErrNilContext)
	assert.Equal(t, Connected, b.Status().State, "the bridge still runs")
	assert.Contains(t, join(t, r.servers[0], "100", ""), "s-100")
	require.NoError(t, b.Shutdown(context.Background()))
	assert.ErrorIs(t, wait(), ErrClosed)
}
