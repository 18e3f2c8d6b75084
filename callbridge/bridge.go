package callbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
)

// Bridge keeps one XEP-0114 link from a Call Bridge to its XMPP server. Build
// it with New, register handlers, then call Run. Its methods are safe for
// concurrent use. Printing a *Bridge with fmt (any verb) or log/slog shows
// its component address and state: "callbridge.Bridge(cb1.example.com,
// connected, server xmpp1.example.com)".
type Bridge struct {
	// Every field is in *bridgeState, so that nothing prints a Bridge's
	// state by reflection (as fmt does with a value in an unexported field,
	// and with any value for a verb it does not take): it stops at this
	// pointer, which it prints as an address, and so never races with the
	// bridge's goroutines.
	*bridgeState
}

// bridgeState is a Bridge's state; see Bridge.
type bridgeState struct {
	mux   *component.Mux
	hub   *hub
	stats *statsCounters

	mu       sync.Mutex
	cfg      *resolved
	resolver Resolver
	started  bool               // Run was called: handlers are frozen
	closed   bool               // Close or Shutdown was called, or Run returned
	stopLoop context.CancelFunc // ends the connection cycle (any stop)
	stopHard context.CancelFunc // cuts drains short (Close, Run's ctx, Shutdown's ctx)
	drainErr error              // a drain a stop cut short (the final one, or an Update's or fail-back's)
	done     chan struct{}      // closed when Run returns
	updated  chan struct{}      // cap 1: a new config is waiting

	live atomic.Pointer[link]
	// bg counts goroutines Run started to close links in the background
	// (fail-back's old link, a connection race's losers); Run waits for
	// them before it returns.
	bg sync.WaitGroup

	now func() time.Time // the clock of link lifetimes, outages and attempt spacing (tests play with it)

	// downSince is when the last link was lost, zero while one is up or
	// none was; guarded by mu. For the log line of the next link up.
	downSince time.Time
}

// New validates cfg and returns a Bridge that has not connected yet. It
// reads SecretFile or SecretEnv. It does no network I/O.
func New(cfg Config) (*Bridge, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	b := &Bridge{&bridgeState{
		mux:     component.NewMux(),
		hub:     newHub(),
		stats:   newStatsCounters(),
		cfg:     r,
		done:    make(chan struct{}),
		updated: make(chan struct{}, 1),
		now:     time.Now,
	}}
	b.resolver = newResolver(r)
	return b, nil
}

func newResolver(r *resolved) Resolver {
	if r.Resolver != nil {
		return r.Resolver
	}
	return &discovery.Resolver{NameServers: r.NameServers}
}

func (b *Bridge) mustNotRun(what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		panic("callbridge: " + what + " called after Run")
	}
}

// HandleJoin registers the handler for WebRTC join requests (see
// component.JoinRequest for their shape). Register handlers before Run; they
// serve every link the bridge brings up. It panics when called after Run or
// twice, like component.Mux.
func (b *Bridge) HandleJoin(h component.JoinHandler) {
	b.mustNotRun("HandleJoin")
	if h == nil {
		panic("callbridge: nil join handler")
	}
	b.mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		res, err := h(ctx, req)
		b.stats.join(err != nil)
		return res, err
	})
}

// HandleIQ registers a handler for IQs whose payload is the element name in
// namespace ns. See component.Mux.HandleIQ.
func (b *Bridge) HandleIQ(name, ns string, h component.IQHandler) {
	b.mustNotRun("HandleIQ")
	b.mux.HandleIQ(name, ns, h)
}

// HandleMessage registers the handler for message stanzas.
func (b *Bridge) HandleMessage(h component.StanzaHandler) {
	b.mustNotRun("HandleMessage")
	b.mux.HandleMessage(h)
}

// HandlePresence registers the handler for presence stanzas.
func (b *Bridge) HandlePresence(h component.StanzaHandler) {
	b.mustNotRun("HandlePresence")
	b.mux.HandlePresence(h)
}

// Status returns a snapshot of the bridge's state.
func (b *Bridge) Status() Status { return b.hub.snapshot() }

// WaitForStateChange blocks until the state differs from from, or ctx ends
// (then it returns false); from Stopped, which is final, it returns false
// at once. It never misses a change of state, but may skip
// intermediate states; use Subscribe to see each one. A fail-back keeps
// the state Connected: it wakes a caller already waiting from Connected,
// but one that calls after the move sleeps until the next change. To
// wait for a condition on other fields (the server in use), Subscribe
// first, then check Status at each event.
func (b *Bridge) WaitForStateChange(ctx context.Context, from State) bool {
	if ctx == nil {
		return false // as a context that has ended: the caller cannot wait
	}
	return b.hub.waitChange(ctx, from)
}

// Subscribe returns a channel receiving every state change in order, and a
// function that ends the subscription (and waits for its goroutine). A
// subscriber that does not keep up never slows the bridge: past 1024
// queued events the oldest are dropped, and the next event received says
// how many (Event.Dropped). The channel is closed after the
// Stopped event, or by cancel. Close and Run never wait for subscribers:
// after the bridge stops, a subscription delivers what is still queued for
// at most a second, then drops the rest and closes its channel.
func (b *Bridge) Subscribe() (events <-chan Event, cancel func()) { return b.hub.subscribe() }

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	var live *component.Session
	if l := b.live.Load(); l != nil {
		live = l.sess
	}
	return b.stats.snapshot(live)
}

// Session returns the live link, or ErrNotConnected (ErrClosed once the
// bridge stopped). The link is published before its first stanza is
// dispatched, so a handler always finds it here (it may also use
// component.SessionFromContext). The session may end at any time after it
// is returned; its sends then fail at once.
func (b *Bridge) Session() (*component.Session, error) {
	if l := b.live.Load(); l != nil {
		return l.sess, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	return nil, ErrNotConnected
}

// Send sends a stanza on the live link; without one it fails at once with
// ErrNotConnected. An empty from is stamped with the component address.
func (b *Bridge) Send(ctx context.Context, st component.Outgoing) error {
	s, err := b.Session()
	if err != nil {
		return err
	}
	return s.Send(ctx, st)
}

// SendIQ sends an IQ request on the live link and waits for its response.
func (b *Bridge) SendIQ(ctx context.Context, iq component.IQ) (*component.Stanza, error) {
	s, err := b.Session()
	if err != nil {
		return nil, err
	}
	return s.SendIQ(ctx, iq)
}

// Update validates cfg and makes the bridge use it: a live link stops
// taking new requests, lets those queued or running finish (up to
// Config.DrainTimeout; what is left is answered with service-unavailable),
// closes cleanly, and the bridge reconnects at once with the new settings
// (a new secret, another server address, ...). Handlers and subscribers
// are kept. An invalid cfg is rejected and the current one stays in force.
// Update returns once a live link refuses new requests (the state is
// Draining, or already past it), at once when no link is up, and in any
// case within about a second; it does not wait for the drain nor the
// reconnection: Subscribe or callbridgetest.WaitState show those, and
// waiting for Connected after Update means the new link.
func (b *Bridge) Update(cfg Config) error {
	r, err := cfg.resolve()
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if r.Resolver != nil || b.cfg.Resolver != nil || !slices.Equal(r.NameServers, b.cfg.NameServers) {
		b.resolver = newResolver(r) // else keep the resolver and its cache
	}
	b.cfg = r
	b.mu.Unlock()
	select {
	case b.updated <- struct{}{}:
	default: // one is pending: the cycle takes the settings stored above
	}
	// While a link is up, the connection cycle serves it, takes the
	// signal at once and publishes Draining once the link refuses; any
	// other way out of Connected (a drop, a stop) is fine too. A
	// fail-back's move keeps Connected: wait on.
	ctx, cancel := context.WithTimeout(context.Background(), updateRefuseWait)
	defer cancel()
	for b.hub.snapshot().State == Connected && b.hub.waitChange(ctx, Connected) {
	}
	return nil
}

// updateRefuseWait bounds Update's wait for the live link to refuse new
// requests, which takes microseconds: the cycle never blocks while it
// serves a link.
const updateRefuseWait = time.Second

func (b *Bridge) current() (*resolved, Resolver) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg, b.resolver
}

// Close stops the bridge at once but cleanly: connection attempts are
// abandoned, handlers' contexts are cancelled, every join request still
// queued or running is answered with service-unavailable (type wait), and
// the stream is closed with </stream:stream>. It waits for Run to return,
// which takes at most about component.Config's CloseTimeout (2s by
// default) once the link is up, whatever the server does. It is
// idempotent. A Bridge cannot be restarted.
//
// Close waits for every handler, so a handler that calls it waits for
// itself until CloseTimeout (and is logged as a handler that ignored its
// context). From a handler, call Shutdown with the handler's ctx, or
// Close on another goroutine (go b.Close()).
func (b *Bridge) Close() error {
	if !b.stop() {
		return nil
	}
	b.hardStop()()
	<-b.done
	return nil
}

// hardStop returns the function that cuts drains short.
func (b *Bridge) hardStop() context.CancelFunc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopHard
}

// Shutdown stops the bridge gracefully, in the manner of net/http's
// Server.Shutdown: the state moves to Stopping, connection attempts are
// abandoned, the live link stops taking new requests (they are answered
// with service-unavailable) and those queued or running finish with their
// normal context; then the stream is closed as by Close. When ctx ends
// first, the rest is cut short as by Close and Shutdown returns ctx's
// error; it returns nil when everything finished in time. It waits for Run
// to return, so it is bounded by ctx plus Close's bound. Calling Close
// meanwhile cuts the drain short.
//
// Called with a handler's ctx, or a context derived from it (on any
// goroutine), Shutdown does not wait for that handler's request: a handler
// may stop its bridge with b.Shutdown(ctx). With any other ctx, a
// handler's own Shutdown waits for itself until ctx ends.
func (b *Bridge) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("callbridge: Shutdown: %w", component.ErrNilContext)
	}
	if !b.stop() {
		return nil
	}
	hard := b.hardStop()
	s, ok := component.SessionFromContext(ctx)
	own := ok && b.owns(s)
	release := context.AfterFunc(ctx, func() {
		// A handler's ctx also ends when its own link ends: that is not
		// the caller cutting the drains short (its deadline is).
		if !own || s.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			hard()
		}
	})
	defer release()
	if own {
		// A handler of ours stops the bridge: its session's drains must
		// not wait for it (Run drains that session meanwhile).
		_ = s.Shutdown(ctx)
	}
	<-b.done
	b.mu.Lock()
	cut := b.drainErr != nil
	b.mu.Unlock()
	switch {
	case !cut:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return ErrClosed // Close or the end of Run's ctx cut the drain short
	}
}

// owns reports whether s is one of the bridge's links: published and not
// yet ended (the live one, or one draining after an Update or a
// fail-back).
func (b *Bridge) owns(s *component.Session) bool { return b.stats.tracks(s) }

// stop marks the bridge closed, moves it to Stopping and ends the
// connection cycle. It returns false when Run never started (then there is
// nothing to wait for).
func (b *Bridge) stop() bool {
	b.mu.Lock()
	b.closed = true // from now on no link is published
	started, loop := b.started, b.stopLoop
	live := b.live.Load() != nil
	b.mu.Unlock()
	if !started {
		b.set(func(s *Status) { s.State = Stopped }) // never ran: final at once
		b.hub.closeAll()
		return false
	}
	// No link takes requests (none is live, or the live one drains for an
	// Update): Stopping is true at once. Otherwise the connection cycle
	// publishes it once the link refuses them.
	b.set(func(s *Status) {
		if !live || s.State == Draining {
			s.State = Stopping
		}
	})
	loop()
	return true
}

// Run connects and keeps the bridge connected until ctx ends, Close or
// Shutdown is called, or (with StopOnPermanentError) the server refuses
// the bridge for a reason retrying will not fix, which it returns as a
// *PermanentError. It returns ctx's error when ctx ended, ErrClosed after
// Close or Shutdown. The end of ctx stops the bridge as Close does.
//
// Run owns every goroutine and connection of the bridge: when it returns,
// no link, connection attempt, fail-back probe or handler is left (but a
// handler that ignores its cancelled context; see component.Session).
// Calling Run a second time returns ErrClosed.
func (b *Bridge) Run(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("callbridge: Run: %w", component.ErrNilContext)
	}
	b.mu.Lock()
	if b.started || b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.started = true
	hard, hardCancel := context.WithCancel(ctx)
	loopCtx, loopCancel := context.WithCancel(hard)
	b.stopHard, b.stopLoop = hardCancel, loopCancel
	b.mu.Unlock()
	defer close(b.done)
	defer hardCancel()
	select {
	case <-b.updated: // an Update before Run is already in b.cfg
	default:
	}

	err := b.loop(loopCtx, hard)
	b.set(func(s *Status) { s.State = Stopping }) // if the stop came outside serve
	b.bg.Wait()
	b.mu.Lock()
	closed := b.closed
	b.closed = true
	b.mu.Unlock()
	var perm *PermanentError
	switch {
	case errors.As(err, &perm):
	case closed:
		err = ErrClosed
	case ctx.Err() != nil:
		err = ctx.Err()
	}
	b.set(func(s *Status) { s.State = Stopped; s.Backoff = 0 })
	b.hub.closeAll()
	return err
}

// set updates the status and logs a state change. So that an outage
// reads one line per failed attempt ("xmpp server failed", or "xmpp
// lookup failed"), the connection steps and the waits between cycles are
// DEBUG; INFO are the link up ("xmpp link connected", with the outage's
// length when it ends one), the stop, and WARN a link lost.
func (b *Bridge) set(fn func(*Status)) {
	ev, changed := b.hub.update(fn)
	if !changed {
		return
	}
	cfg, _ := b.current()
	st := ev.Status
	var outage time.Duration
	b.mu.Lock()
	switch {
	case ev.From == Connected && st.State != Connected && st.State < Stopping:
		b.downSince = st.Since
	case st.State == Connected && ev.From != Connected && !b.downSince.IsZero():
		outage = st.Since.Sub(b.downSince)
		b.downSince = time.Time{}
	}
	b.mu.Unlock()
	msg := "xmpp link " + st.State.String()
	attrs := []any{"state", st.State.String(), "attempt", st.Attempt}
	if st.Server != "" {
		attrs = append(attrs, "server", st.Server)
	}
	if st.Addr != "" {
		attrs = append(attrs, "addr", st.Addr)
	}
	level := slog.LevelDebug
	switch {
	case st.State == Connected:
		level = slog.LevelInfo
		attrs = append(attrs, "backup", st.Backup)
		if outage > 0 {
			attrs = append(attrs, "outage", outage.Round(time.Millisecond))
		}
	case st.State == Resolving && ev.From == Connected && st.LastErr != nil:
		level, msg = slog.LevelWarn, "xmpp link lost"
	case st.State == BackingOff:
		attrs = append(attrs, "backoff", st.Backoff)
	case st.State == Idle, st.State >= Stopping:
		level = slog.LevelInfo
	}
	// The error explains this line in these states; in the connection
	// steps it would be another server's (logged as "xmpp server failed").
	// Run returns the error that stopped it: the stop lines do not repeat it.
	if st.LastErr != nil && (st.State == Resolving || st.State == BackingOff) {
		attrs = append(attrs, "err", st.LastErr.Error(), "kind", string(st.LastErrKind), "permanent", st.Permanent)
	}
	cfg.Logger.Log(context.Background(), level, msg, attrs...)
}

// failed records a failure in the status and stats.
func (b *Bridge) failed(err error) {
	k := Classify(err)
	b.stats.connectFailed(k)
	b.set(func(s *Status) { s.LastErr, s.LastErrKind = err, k })
}
