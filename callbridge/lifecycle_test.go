package callbridge

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// connTracker is a Dialer that keeps every connection the bridge opens,
// so that a test can check, once Run has returned, that each is closed and
// that nothing reads or writes it any more: the reader and writer of every
// link, published or not, are gone (goleak checks the rest at the end of
// the package).
type connTracker struct {
	mu    sync.Mutex
	conns []*linkConn
}

type linkConn struct {
	net.Conn
	inCall atomic.Int32 // Read or Write calls in progress
	closed atomic.Bool
}

func (d *connTracker) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	tc := &linkConn{Conn: c}
	d.mu.Lock()
	d.conns = append(d.conns, tc)
	d.mu.Unlock()
	return tc, nil
}

func (c *linkConn) Read(p []byte) (int, error) {
	c.inCall.Add(1)
	defer c.inCall.Add(-1)
	return c.Conn.Read(p)
}

func (c *linkConn) Write(p []byte) (int, error) {
	c.inCall.Add(1)
	defer c.inCall.Add(-1)
	return c.Conn.Write(p)
}

func (c *linkConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// assertAllDone fails for a connection left open or still in use.
func (d *connTracker) assertAllDone(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.NotEmpty(t, d.conns, "the bridge dialled")
	for i, c := range d.conns {
		assert.True(t, c.closed.Load(), "connection %d (to %s) left open", i, c.RemoteAddr())
		assert.Zero(t, c.inCall.Load(), "connection %d (to %s) still read or written", i, c.RemoteAddr())
	}
}

// gateHandler is a slog handler that blocks the goroutine logging msg
// (once armed) until released.
type gateHandler struct {
	slog.Handler
	msg     string
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

// The gate passes DEBUG: callbridge passes a link's "component link up" at DEBUG.
func newGateHandler(msg string) *gateHandler {
	return &gateHandler{Handler: slog.NewTextHandler(syncWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug}), msg: msg, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == g.msg && g.armed.Load() {
		g.once.Do(func() {
			close(g.reached)
			<-g.release
		})
	}
	return g.Handler.Handle(ctx, r)
}

func (g *gateHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &gateProxy{g: g, h: g.Handler.WithAttrs(as)}
}

func (g *gateHandler) WithGroup(name string) slog.Handler {
	return &gateProxy{g: g, h: g.Handler.WithGroup(name)}
}

// gateProxy keeps the gate for derived loggers.
type gateProxy struct {
	g *gateHandler
	h slog.Handler
}

func (p *gateProxy) Enabled(ctx context.Context, l slog.Level) bool { return p.h.Enabled(ctx, l) }
func (p *gateProxy) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == p.g.msg && p.g.armed.Load() {
		p.g.once.Do(func() {
			close(p.g.reached)
			<-p.g.release
		})
	}
	return p.h.Handle(ctx, r)
}
func (p *gateProxy) WithAttrs(as []slog.Attr) slog.Handler {
	return &gateProxy{g: p.g, h: p.h.WithAttrs(as)}
}
func (p *gateProxy) WithGroup(name string) slog.Handler {
	return &gateProxy{g: p.g, h: p.h.WithGroup(name)}
}

// runBridge runs b in the background; the returned function waits for Run.
func runBridge(t *testing.T, b *Bridge, ctx context.Context) func() error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	var once sync.Once
	var err error
	wait := func() error {
		once.Do(func() {
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { b.Close(); wait() })
	return wait
}

// runConnected runs b until it is connected to the rig's first server and
// returns the wait for Run and the server's side of the link.
func runConnected(t *testing.T, r *rig, b *Bridge) (wait func() error, conn *componenttest.Conn) {
	t.Helper()
	wait = runBridge(t, b, context.Background())
	awaitStatus(t, b, 10*time.Second, "connected", connectedTo(r.names[0]))
	conn, err := r.servers[0].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)
	return wait, conn
}

// awaitStatus waits until ok holds, checked now and at every event: a
// fail-back keeps the state Connected, so waiting for a state change from
// the one read could sleep through it.
func awaitStatus(t *testing.T, b *Bridge, within time.Duration, what string, ok func(Status) bool) Status {
	t.Helper()
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	events, cancel := b.Subscribe()
	defer cancel()
	for {
		st := b.Status()
		if ok(st) {
			return st
		}
		select {
		case _, open := <-events:
			if !open && st.State == Stopped {
				t.Fatalf("%s not reached: the bridge stopped (last error: %v)", what, st.LastErr)
			}
		case <-timeout.C:
			t.Fatalf("%s not reached within %v; now %s on %q (last error: %v)", what, within, st.State, st.Server, st.LastErr)
		}
	}
}

func connectedTo(name string) func(Status) bool {
	return func(st Status) bool { return st.State == Connected && st.Server == name }
}

// joinIQ is a join request as the server routes it from a web user.
func joinIQ(id, call string) []byte {
	return component.MarshalJoinIQ(&component.JoinRequest{
		From: jid.MustParse("guest@example.com/web"), ID: id, Call: call, Passcode: "1234",
	}, jid.MustParse(testAddr))
}

// sendJoins sends joins on conn in the background and returns their
// replies (or errors), one per request, keyed by id.
func sendJoins(conn *componenttest.Conn, ids ...string) <-chan [2]string {
	out := make(chan [2]string, len(ids))
	for _, id := range ids {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			reply, err := conn.SendIQ(ctx, joinIQ(id, "7"))
			if err != nil {
				out <- [2]string{id, "error: " + err.Error()}
				return
			}
			out <- [2]string{id, string(reply)}
		}()
	}
	return out
}

func collect(t *testing.T, ch <-chan [2]string, n int) map[string]string {
	t.Helper()
	got := map[string]string{}
	for range n {
		select {
		case r := <-ch:
			got[r[0]] = r[1]
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d replies: %v", len(got), n, got)
		}
	}
	return got
}

// TestRunClosesLinkAuthenticatedAsItStops: when Run's ctx ends while the
// link is coming up (here while it logs "component link up" through a
// slow logger), Run must still close that link before it returns.
func TestRunClosesLinkAuthenticatedAsItStops(t *testing.T) {
	r := newRig(t, 10)
	cfg := r.config()
	gate := newGateHandler("component link up")
	gate.armed.Store(true)
	cfg.Logger = slog.New(gate)
	conns := &connTracker{}
	cfg.Dialer = conns
	b, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runBridge(t, b, ctx)
	select {
	case <-gate.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the link never came up")
	}
	cancel()
	close(gate.release)
	assert.ErrorIs(t, wait(), context.Canceled)
	conns.assertAllDone(t)
	for _, c := range r.servers[0].Conns() {
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		assert.NoError(t, c.WaitClosed(wctx), "the link's connection is closed")
		wcancel()
	}
}

// TestHandlersSeeLinkPublished: the first handler on a new link already
// sees the bridge Connected and can send through it.
func TestHandlersSeeLinkPublished(t *testing.T) {
	for round := range 3 {
		r := newRig(t, 10)
		// The join arrives right behind <handshake/>, and the link's "up"
		// log line is slow: it returns only once the handler has run.
		r.servers[0].SetFault(componenttest.Fault{Phase: componenttest.PhaseHandshake, Action: componenttest.ActionSend, Bytes: joinIQ("early", "1")})
		cfg := r.config()
		gate := newGateHandler("component link up")
		gate.armed.Store(true)
		cfg.Logger = slog.New(gate)
		b, err := New(cfg)
		require.NoError(t, err)
		type seen struct {
			state   State
			sameSes bool
			sendErr error
		}
		seenc := make(chan seen, 1)
		b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
			st := b.Status()
			s, err := b.Session()
			own, _ := component.SessionFromContext(ctx)
			serr := b.Send(ctx, component.Message{To: req.From, Payload: component.RawXML("<body>welcome</body>")})
			seenc <- seen{state: st.State, sameSes: err == nil && s == own, sendErr: serr}
			close(gate.release)
			return &component.JoinResult{Session: "s"}, nil
		})
		wait := runBridge(t, b, context.Background())
		var got seen
		select {
		case got = <-seenc:
		case <-time.After(10 * time.Second):
			t.Fatal("join handler never ran")
		}
		assert.Equal(t, Connected, got.state, "round %d: state seen by the first handler", round)
		assert.True(t, got.sameSes, "round %d: Session() is the handler's session", round)
		assert.NoError(t, got.sendErr, "round %d: a welcome message sent through the bridge", round)
		conn, err := r.servers[0].WaitConn(context.Background(), testAddr)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := conn.Next(ctx)
		cancel()
		require.NoError(t, err)
		assert.Contains(t, string(st.Raw), "welcome")
		require.NoError(t, b.Close())
		assert.ErrorIs(t, wait(), ErrClosed)
	}
}

// TestCloseWithStalledSubscribers: subscribers that stopped reading never
// hold Close, however many there are.
func TestCloseWithStalledSubscribers(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	for range 3 {
		_, cancel := b.Subscribe() // never read
		defer cancel()
	}
	wait := runBridge(t, b, context.Background())
	awaitStatus(t, b, 10*time.Second, "connected", connectedTo("xmpp1.example.com"))
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for subscribers that do not read")
	}
	assert.ErrorIs(t, wait(), ErrClosed)
}

// TestHandlerMayStopBridge: a join handler stops its bridge with Shutdown
// and its ctx (not waiting for itself), with go b.Close(), or with a
// synchronous Close, which waits for the handler until CloseTimeout.
func TestHandlerMayStopBridge(t *testing.T) {
	for _, how := range []string{"Shutdown", "go Close", "Close"} {
		t.Run(how, func(t *testing.T) {
			r := newRig(t, 10)
			cfg := r.config()
			cfg.CloseTimeout = time.Hour // only the synchronous Close waits for the handler
			if how == "Close" {
				cfg.CloseTimeout = 100 * time.Millisecond
			}
			b, err := New(cfg)
			require.NoError(t, err)
			returned := make(chan error, 1)
			b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
				switch how {
				case "Shutdown":
					returned <- b.Shutdown(ctx)
				case "go Close":
					go b.Close()
					returned <- nil
				case "Close":
					returned <- b.Close()
				}
				return nil, nil
			})
			wait, conn := runConnected(t, r, b)
			replies := sendJoins(conn, "j1")
			select {
			case err := <-returned:
				assert.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("%s from a handler did not return", how)
			}
			assert.ErrorIs(t, wait(), ErrClosed)
			assert.Equal(t, Stopped, b.Status().State)
			got := collect(t, replies, 1)
			if how == "go Close" {
				// The handler's result races the close: either is one answer.
				assert.Regexp(t, `type='result'|service-unavailable`, got["j1"])
			} else {
				assert.Contains(t, got["j1"], "service-unavailable", "the request is answered: the stream closed under it")
			}
		})
	}
}

// queuedJoins connects a bridge with one worker whose join handler blocks
// on gate (or until its ctx ends), sends n joins and waits until all are
// read (one running, the rest queued).
type queuedJoins struct {
	r       *rig
	b       *Bridge
	wait    func() error
	conn    *componenttest.Conn
	replies <-chan [2]string
	gate    chan struct{}
	ids     []string
}

func startQueuedJoins(t *testing.T, r *rig, cfg Config, n int) *queuedJoins {
	t.Helper()
	cfg.Workers, cfg.OrderPerSender = 1, true // one sender: the rest wait behind the first
	b, err := New(cfg)
	require.NoError(t, err)
	q := &queuedJoins{r: r, b: b, gate: make(chan struct{})}
	inHandler := make(chan struct{}, n)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		inHandler <- struct{}{}
		select {
		case <-q.gate:
			return &component.JoinResult{Session: "s-" + req.ID}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	q.wait = runBridge(t, b, context.Background())
	st := awaitStatus(t, b, 10*time.Second, "connected", func(st Status) bool { return st.State == Connected })
	for i, s := range r.names {
		if s == st.Server {
			q.conn, err = r.servers[i].WaitConn(context.Background(), testAddr)
			require.NoError(t, err)
		}
	}
	for i := range n {
		q.ids = append(q.ids, fmt.Sprint("j", i))
	}
	q.replies = sendJoins(q.conn, q.ids...)
	<-inHandler
	// One running, the rest queued behind it.
	require.Eventually(t, func() bool {
		s, err := b.Session()
		if err != nil {
			return false
		}
		st := s.Stats()
		return st.Running == 1 && st.Queued == n-1
	}, 10*time.Second, time.Millisecond)
	return q
}

// assertDrained checks that every join got its real result and that the
// old link then closed cleanly.
func (q *queuedJoins) assertDrained(t *testing.T) {
	t.Helper()
	got := collect(t, q.replies, len(q.ids))
	for _, id := range q.ids {
		assert.Contains(t, got[id], "s-"+id, "%s drained with its result", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, q.conn.WaitClosed(ctx))
	assert.True(t, q.conn.ClosedByPeer(), "</stream:stream> after the drain")
}

// TestCloseAnswersQueuedJoins: Close answers every join still queued or
// running, each exactly once (service-unavailable), before closing.
func TestCloseAnswersQueuedJoins(t *testing.T) {
	r := newRig(t, 10)
	q := startQueuedJoins(t, r, r.config(), 5)
	require.NoError(t, q.b.Close())
	got := collect(t, q.replies, 5)
	others := 0
	for _, id := range q.ids {
		assert.Contains(t, got[id], "type='error'", id)
		if !strings.Contains(got[id], "service-unavailable") {
			others++ // the one running may answer first with its own error
		}
	}
	assert.LessOrEqual(t, others, 1, "the queued joins are answered service-unavailable: %v", got)
	assert.ErrorIs(t, q.wait(), ErrClosed)
	assert.EqualValues(t, 5-others, q.b.Stats().RequestsRefused)
}

// TestShutdownDrainsJoins: Shutdown lets queued joins finish with their
// normal context, shows Stopping meanwhile, then stops.
func TestShutdownDrainsJoins(t *testing.T) {
	r := newRig(t, 10)
	q := startQueuedJoins(t, r, r.config(), 5)
	shut := make(chan error, 1)
	go func() { shut <- q.b.Shutdown(context.Background()) }()
	awaitStatus(t, q.b, 10*time.Second, "stopping", func(st Status) bool { return st.State == Stopping })
	close(q.gate)
	got := collect(t, q.replies, 5)
	for _, id := range q.ids {
		assert.Contains(t, got[id], "s-"+id, "%s drained with its result", id)
	}
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	assert.ErrorIs(t, q.wait(), ErrClosed)
	assert.True(t, q.conn.ClosedByPeer(), "</stream:stream> after the drain")
}

// TestShutdownDeadline: when Shutdown's ctx ends, what is left is answered
// and Shutdown reports the deadline.
func TestShutdownDeadline(t *testing.T) {
	r := newRig(t, 10)
	q := startQueuedJoins(t, r, r.config(), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, q.b.Shutdown(ctx), context.DeadlineExceeded)
	got := collect(t, q.replies, 3)
	for _, id := range q.ids {
		assert.Contains(t, got[id], "type='error'", id)
	}
}

// TestUpdateDrainsJoins: Update lets the old link finish its queued joins
// before it closes and the bridge reconnects.
func TestUpdateDrainsJoins(t *testing.T) {
	r := newRig(t, 10)
	cfg := r.config()
	seen := newGateHandler("xmpp settings changed: reconnecting")
	close(seen.release) // only tell when the update is handled
	seen.armed.Store(true)
	cfg.Logger = slog.New(seen)
	q := startQueuedJoins(t, r, cfg, 6)
	require.NoError(t, q.b.Update(cfg))
	<-seen.reached
	// The old link drains: it stays up until the joins are done.
	close(q.gate)
	q.assertDrained(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	awaitStatus(t, q.b, 10*time.Second, "reconnected", func(st Status) bool {
		c, err := r.servers[0].WaitConn(ctx, testAddr)
		return st.State == Connected && err == nil && c != q.conn
	})
}

// TestFailBackDrainsJoins: the link left by a fail-back finishes its
// queued joins; the move is counted as a fail-back, and published as an
// event (Connected to Connected, on the new server).
func TestFailBackDrainsJoins(t *testing.T) {
	r := newRig(t, 10, 20)
	r.servers[0].Stop()
	cfg := r.config()
	cfg.FailBack = true
	cfg.FailBackInterval = 20 * time.Millisecond
	q := startQueuedJoins(t, r, cfg, 4)
	require.Equal(t, "xmpp2.example.com", q.b.Status().Server)
	events, cancel := q.b.Subscribe()
	defer cancel()
	require.NoError(t, r.servers[0].Start())
	awaitStatus(t, q.b, 10*time.Second, "failed back", connectedTo("xmpp1.example.com"))
	select {
	case ev := <-events:
		assert.Equal(t, Connected, ev.From)
		assert.Equal(t, Connected, ev.To)
		assert.Equal(t, "xmpp1.example.com", ev.Status.Server)
	case <-time.After(10 * time.Second):
		t.Fatal("no event for the fail-back")
	}
	close(q.gate)
	q.assertDrained(t)
	require.Eventually(t, func() bool { return q.b.Stats().Disconnects[KindFailBack] == 1 }, 10*time.Second, time.Millisecond)
}

// TestCloseWithServerNotReading: Bridge.Close returns in about
// CloseTimeout even when the server stopped reading with the write queue
// full.
func TestCloseWithServerNotReading(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	wait, conn := runConnected(t, r, b)
	conn.Blackhole()
	big := component.RawXML("<body>" + strings.Repeat("x", 16<<10) + "</body>")
	full := false
	for range 64 << 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := b.Send(ctx, component.Message{Payload: big})
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			full = true
			break
		}
	}
	require.True(t, full, "the write queue never filled")
	start := time.Now()
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
		t.Logf("Close with a server that stopped reading took %v (CloseTimeout 2s)", time.Since(start))
	case <-time.After(15 * time.Second):
		t.Fatal("Close waited for a server that does not read")
	}
	assert.ErrorIs(t, wait(), ErrClosed)
}

// TestDropNoticedDuringFailBackProbe: a fail-back probe stuck on a frozen
// preferred server does not delay noticing that the live link dropped.
func TestDropNoticedDuringFailBackProbe(t *testing.T) {
	r := newRig(t, 10, 20)
	// xmpp1's process is frozen: the kernel accepts, TLS never answers.
	r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
		return []componenttest.Fault{{Phase: componenttest.PhaseAccept, Action: componenttest.ActionBlackhole}}
	})
	cfg := r.config()
	cfg.FailBack = true
	cfg.FailBackInterval = 10 * time.Millisecond
	cfg.HandshakeTimeout = 30 * time.Second
	cfg.ParallelAfter = 50 * time.Millisecond
	b, err := New(cfg)
	require.NoError(t, err)
	runBridge(t, b, context.Background())
	awaitStatus(t, b, 10*time.Second, "connected to xmpp2", connectedTo("xmpp2.example.com"))
	// Connection 0 was the first attempt; 1 is a fail-back probe, stuck.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = r.servers[0].WaitAccepted(ctx, 1)
	require.NoError(t, err)
	conn, err := r.servers[1].WaitConn(ctx, testAddr)
	require.NoError(t, err)
	start := time.Now()
	conn.Reset()
	awaitStatus(t, b, 10*time.Second, "the drop noticed", func(st Status) bool { return st.State != Connected })
	t.Logf("drop noticed after %v while a probe was stuck (handshake timeout 30s)", time.Since(start))
}

// TestSecondFailoverDoesNotWait: failure accounting is per endpoint: a
// second failover within Backoff.ResetAfter goes straight to a server that
// has not failed.
func TestSecondFailoverDoesNotWait(t *testing.T) {
	r := newRig(t, 10, 20, 30)
	cfg := r.config()
	cfg.Backoff = Backoff{Base: time.Minute, Max: time.Minute, ResetAfter: time.Hour, NoJitter: true}
	b, err := New(cfg)
	require.NoError(t, err)
	events, cancelSub := b.Subscribe()
	defer cancelSub()
	runBridge(t, b, context.Background())
	awaitStatus(t, b, 10*time.Second, "connected to xmpp1", connectedTo("xmpp1.example.com"))
	for i, next := range []string{"xmpp2.example.com", "xmpp3.example.com"} {
		r.servers[i].Stop()
		r.servers[i].CloseClientConnections()
		awaitStatus(t, b, 10*time.Second, "failover to "+next, connectedTo(next))
	}
	cancelSub()
	for ev := range events {
		assert.NotEqual(t, BackingOff, ev.To, "no wait before a server that has not failed: %v", ev)
	}
}

// TestFrozenServerRacedPast: a preferred server that accepts TCP but never
// answers TLS costs ParallelAfter, not the handshake timeout.
func TestFrozenServerRacedPast(t *testing.T) {
	r := newRig(t, 10, 20)
	r.servers[0].SetFault(componenttest.Fault{Phase: componenttest.PhaseAccept, Action: componenttest.ActionBlackhole})
	cfg := r.config()
	cfg.HandshakeTimeout = time.Minute
	cfg.ParallelAfter = 100 * time.Millisecond
	b, err := New(cfg)
	require.NoError(t, err)
	start := time.Now()
	runBridge(t, b, context.Background())
	awaitStatus(t, b, 20*time.Second, "connected to xmpp2", connectedTo("xmpp2.example.com"))
	t.Logf("connected past a frozen server in %v (handshake timeout 1m)", time.Since(start))
	assert.Zero(t, b.Stats().ConnectFailures[KindTimeout], "the frozen attempt was abandoned, not failed")
}

// TestRaceLoserClosed: when a slow server is raced by the next one, the
// slow attempt is abandoned and its connection closed once the other
// authenticates; the winner serves.
func TestRaceLoserClosed(t *testing.T) {
	r := newRig(t, 10, 20)
	// xmpp1 is slow to answer the handshake, but does answer.
	r.servers[0].SetFault(componenttest.Fault{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionStall, Duration: 300 * time.Millisecond})
	cfg := r.config()
	cfg.ParallelAfter = 50 * time.Millisecond
	b, err := New(cfg)
	require.NoError(t, err)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	runBridge(t, b, context.Background())
	awaitStatus(t, b, 10*time.Second, "connected to xmpp2", connectedTo("xmpp2.example.com"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loser, err := r.servers[0].WaitAccepted(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, loser.WaitClosed(ctx), "the abandoned attempt's connection is closed")
	assert.Equal(t, "xmpp2.example.com", b.Status().Server)
	assert.Contains(t, join(t, r.servers[1], "3", "1234"), "s-3")
}

// TestSubscriberMayCloseBridge: a subscriber that reacts to an event by
// calling Close is not held by its own subscription; one that stopped
// reading is let go within a second of the stop.
func TestSubscriberMayCloseBridge(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	events, cancelSub := b.Subscribe()
	defer cancelSub()
	idleCh, cancelIdle := b.Subscribe() // never read, never cancelled before the end
	defer cancelIdle()
	var idle *subscription
	b.hub.mu.Lock()
	for s := range b.hub.subs {
		if (<-chan Event)(s.ch) == idleCh {
			idle = s
		}
	}
	b.hub.mu.Unlock()
	require.NotNil(t, idle)
	runBridge(t, b, context.Background())
	var took time.Duration
	for ev := range events {
		if ev.To == Connected {
			start := time.Now()
			require.NoError(t, b.Close()) // from the subscriber's own goroutine
			took = time.Since(start)
		}
	}
	t.Logf("Close from a subscriber took %v", took)
	assert.Less(t, took, closeGrace, "Close waited for the subscription of its own caller")
	select {
	case <-idle.done: // its goroutine ended: the channel is closed
	case <-time.After(10 * time.Second):
		t.Fatal("a subscription that is not read did not end after the grace")
	}
}

// TestHandlerShutdownDuringShutdown: a handler that calls Shutdown while
// an outside Shutdown waits for it lets both return.
func TestHandlerShutdownDuringShutdown(t *testing.T) {
	r := newRig(t, 10)
	b, err := New(r.config())
	require.NoError(t, err)
	inHandler, proceed := make(chan struct{}), make(chan struct{})
	handlerRet := make(chan error, 1)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if req.ID != "j1" {
			return &component.JoinResult{Session: "s-" + req.ID}, nil
		}
		close(inHandler)
		<-proceed
		handlerRet <- b.Shutdown(ctx)
		return nil, nil
	})
	wait, conn := runConnected(t, r, b)
	replies := sendJoins(conn, "j1")
	<-inHandler
	outside := make(chan error, 1)
	go func() { outside <- b.Shutdown(context.Background()) }()
	awaitDrain(t, conn) // the outside Shutdown waits for the handler
	close(proceed)
	for _, c := range []chan error{outside, handlerRet} {
		select {
		case err := <-c:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("a Shutdown hangs")
		}
	}
	assert.ErrorIs(t, wait(), ErrClosed)
	got := collect(t, replies, 1)
	assert.Contains(t, got["j1"], "type='error'")
}

// awaitDrain waits until the link on conn refuses new joins with
// service-unavailable: its drain has begun.
func awaitDrain(t *testing.T, conn *componenttest.Conn) {
	t.Helper()
	for i := 0; ; i++ {
		id := fmt.Sprint("probe", i)
		got := collect(t, sendJoins(conn, id), 1)
		if strings.Contains(got[id], "service-unavailable") {
			return
		}
		require.Less(t, i, 10000, "the link never began to drain")
	}
}
