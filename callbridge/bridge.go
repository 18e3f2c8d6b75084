package callbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/tlsverify"
)

// Bridge keeps one XEP-0114 link from a Call Bridge to its XMPP server. Build
// it with New, register handlers, then call Run. Its methods are safe for
// concurrent use.
type Bridge struct {
	mux   *component.Mux
	hub   *hub
	stats *statsCounters

	mu       sync.Mutex
	cfg      *resolved
	resolver *discovery.Resolver
	started  bool // Run was called: handlers are frozen
	closed   bool
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returns
	updated  chan struct{} // cap 1: a new config is waiting

	live atomic.Pointer[link]

	// for tests
	dial     dialFunc
	rand     *rand.Rand
	randMu   sync.Mutex
	noJitter bool
}

// link is a live session and where it goes.
type link struct {
	sess *component.Session
	ep   discovery.Endpoint
	addr netip.AddrPort
	up   time.Time
}

// New validates cfg and returns a Bridge that has not connected yet. It
// reads SecretFile or SecretEnv. It does no network I/O.
func New(cfg Config) (*Bridge, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	b := &Bridge{
		mux:     component.NewMux(),
		hub:     newHub(),
		stats:   newStatsCounters(),
		cfg:     r,
		done:    make(chan struct{}),
		updated: make(chan struct{}, 1),
		dial:    (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		rand:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	b.resolver = newResolver(r)
	return b, nil
}

func newResolver(r *resolved) *discovery.Resolver {
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
// (then it returns false). It never misses a change, but may skip
// intermediate states; use Subscribe to see each one.
func (b *Bridge) WaitForStateChange(ctx context.Context, from State) bool {
	return b.hub.waitChange(ctx, from)
}

// Subscribe returns a channel receiving every state change in order, and a
// function that ends the subscription. A subscriber that does not keep up
// never slows the bridge: past 1024 queued events the oldest are dropped.
// The channel is closed after the Stopped event, or by cancel; when the
// bridge stops, a subscriber gets a second to drain its queue before the
// rest is dropped, so Close never waits on a reader that went away.
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
// bridge stopped). The session may end at any time after it is returned;
// its sends then fail at once.
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

// Update validates cfg and makes the bridge use it: a live link is closed
// cleanly and the bridge reconnects at once with the new settings (a new
// secret, another server address, ...). Handlers and subscribers are kept.
// An invalid cfg is rejected and the current one stays in force.
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
	if !slices.Equal(r.NameServers, b.cfg.NameServers) {
		b.resolver = newResolver(r)
	}
	b.cfg = r
	b.mu.Unlock()
	select {
	case b.updated <- struct{}{}:
	default:
	}
	return nil
}

func (b *Bridge) current() (*resolved, *discovery.Resolver) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg, b.resolver
}

// Close stops Run, closing the link cleanly, and waits for it to return. It
// is idempotent. A Bridge cannot be restarted.
func (b *Bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	started, cancel := b.started, b.cancel
	b.mu.Unlock()
	if started {
		cancel()
		<-b.done
	} else {
		b.hub.closeAll()
	}
	return nil
}

// Run connects and keeps the bridge connected until ctx ends or Close is
// called, then closes the stream cleanly and returns ctx's error (ErrClosed
// after Close). With StopOnPermanentError it returns a *PermanentError as
// soon as the server refuses the bridge for a reason retrying will not fix.
// Calling Run a second time returns ErrClosed.
func (b *Bridge) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.started || b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.started = true
	ctx, cancel := context.WithCancel(ctx)
	b.cancel = cancel
	b.mu.Unlock()
	defer close(b.done)
	defer cancel()
	select {
	case <-b.updated: // an Update before Run is already in b.cfg
	default:
	}

	err := b.loop(ctx)
	b.mu.Lock()
	closed := b.closed
	b.closed = true
	b.mu.Unlock()
	if closed && ctx.Err() != nil {
		err = ErrClosed
	}
	b.set(func(s *Status) { s.State = Stopped; s.Backoff = 0 })
	b.hub.closeAll()
	return err
}

// set updates the status and logs a state change.
func (b *Bridge) set(fn func(*Status)) {
	ev, changed := b.hub.update(fn)
	if !changed {
		return
	}
	cfg, _ := b.current()
	st := ev.Status
	attrs := []any{"state", st.State.String(), "attempt", st.Attempt}
	if st.Server != "" {
		attrs = append(attrs, "server", st.Server)
	}
	if st.Addr != "" {
		attrs = append(attrs, "addr", st.Addr)
	}
	level := slog.LevelInfo
	if st.State == BackingOff {
		attrs = append(attrs, "backoff", st.Backoff)
		level = slog.LevelWarn
	}
	if st.LastErr != nil && st.State != Connected {
		attrs = append(attrs, "err", st.LastErr.Error(), "kind", string(st.LastErrKind))
		if st.Permanent {
			attrs = append(attrs, "permanent", true)
		}
	}
	cfg.Logger.Log(context.Background(), level, "xmpp link "+st.State.String(), attrs...)
}

// failed records a failure in the status and stats.
func (b *Bridge) failed(err error) {
	k := kindOf(err)
	b.stats.connectFailed(k)
	b.set(func(s *Status) {
		s.LastErr, s.LastErrKind, s.Permanent = err, k, component.IsPermanent(err)
	})
}

func (b *Bridge) loop(ctx context.Context) error {
	failures := 0
	var avoid string // endpoint just lost: tried last in the next cycle
	for {
		cfg, res := b.current()
		b.set(func(s *Status) { s.State = Resolving; s.Backoff = 0; s.Attempt = failures })
		eps, err := b.endpoints(ctx, cfg, res)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var l *link
		if err != nil {
			b.failed(err)
		} else {
			demote(eps, avoid)
			l, err = b.connectAny(ctx, cfg, eps)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		avoid = ""
		if l != nil {
			reason, lerr := b.serve(ctx, cfg, res, l)
			switch reason {
			case stopped:
				return ctx.Err()
			case reconfigured:
				failures = 0
				continue
			}
			avoid = key(l.ep)
			if time.Since(l.up) >= cfg.Backoff.ResetAfter {
				failures = 0
			} else {
				failures++
			}
			b.set(func(s *Status) {
				s.LastErr, s.LastErrKind, s.Permanent = lerr, kindOf(lerr), component.IsPermanent(lerr)
			})
			// A link that held is replaced at once; one that keeps
			// dropping right after coming up waits like a failure.
			if failures <= 1 {
				continue
			}
		} else {
			failures++
			if component.IsPermanent(err) && cfg.StopOnPermanentError {
				return &PermanentError{Err: err}
			}
		}
		wait := b.backoff(cfg, failures, component.IsPermanent(err))
		b.set(func(s *Status) { s.State = BackingOff; s.Backoff = wait; s.Attempt = failures })
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-b.updated:
			failures = 0
		case <-t.C:
		}
		t.Stop()
	}
}

func (b *Bridge) backoff(cfg *resolved, failures int, perm bool) time.Duration {
	if perm {
		// Operators fix the server while the bridge runs, as on CMS: keep
		// trying, at the slowest pace.
		return cfg.Backoff.Max
	}
	if b.noJitter {
		return cfg.Backoff.ceiling(failures)
	}
	b.randMu.Lock()
	defer b.randMu.Unlock()
	return cfg.Backoff.delay(failures, b.rand)
}

func key(ep discovery.Endpoint) string {
	return net.JoinHostPort(ep.Target, strconv.Itoa(int(ep.Port)))
}

// demote moves the endpoint with the given key to the end, keeping order.
func demote(eps []discovery.Endpoint, k string) {
	if k == "" || len(eps) < 2 {
		return
	}
	for i, ep := range eps {
		if key(ep) == k {
			copy(eps[i:], eps[i+1:])
			eps[len(eps)-1] = ep
			return
		}
	}
}

// endpoints runs discovery; the result is a fresh slice the caller may
// reorder.
func (b *Bridge) endpoints(ctx context.Context, cfg *resolved, res *discovery.Resolver) ([]discovery.Endpoint, error) {
	r, err := res.Lookup(ctx, discovery.Request{Domain: cfg.Domain, Server: cfg.Server, FallbackToDomain: cfg.FallbackToDomain})
	if err != nil {
		return nil, err
	}
	return slices.Clone(r.Endpoints), nil
}

// connectAny tries the endpoints in order and returns the first link up. A
// see-other-host redirect is followed once, right after the server that
// sent it.
func (b *Bridge) connectAny(ctx context.Context, cfg *resolved, eps []discovery.Endpoint) (*link, error) {
	var lastErr error
	redirected := false
	for i := 0; i < len(eps); i++ {
		l, err := b.connect(ctx, cfg, eps[i], false)
		if err == nil {
			return l, nil
		}
		lastErr = err
		b.failed(err)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *component.StreamError
		if !redirected && errors.As(err, &se) {
			if addr, ok := se.OtherHost(); ok {
				redirected = true
				if ep, rerr := b.redirect(ctx, cfg, addr); rerr == nil {
					eps = slices.Insert(eps, i+1, ep)
				} else {
					b.failed(rerr)
				}
			}
		}
	}
	return nil, lastErr
}

// redirect resolves a see-other-host address into an endpoint.
func (b *Bridge) redirect(ctx context.Context, cfg *resolved, addr string) (discovery.Endpoint, error) {
	_, res := b.current()
	r, err := res.Lookup(ctx, discovery.Request{Domain: cfg.Domain, Server: addr})
	if err != nil {
		return discovery.Endpoint{}, err
	}
	if len(r.Endpoints) == 0 {
		return discovery.Endpoint{}, discovery.ErrNoAddresses
	}
	cfg.Logger.Info("xmpp server redirected the bridge", "server", addr)
	return r.Endpoints[0], nil
}

// connect brings up one link to ep: TCP (racing its addresses), TLS with
// the certificate checks, then the component handshake. A probe (fail-back)
// does not touch the status.
func (b *Bridge) connect(ctx context.Context, cfg *resolved, ep discovery.Endpoint, probe bool) (*link, error) {
	step := func(st State, addr string) {
		if !probe {
			b.set(func(s *Status) { s.State = st; s.Server = ep.Target; s.Addr = addr })
		}
	}
	fail := func(st State, addr string, err error) error {
		return &ConnectError{Server: ep.Target, Addr: addr, Step: st, Err: err}
	}
	step(Connecting, "")
	addrs := make([]netip.AddrPort, len(ep.Addrs))
	for i, a := range ep.Addrs {
		addrs[i] = netip.AddrPortFrom(a, ep.Port)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	conn, addr, err := raceDial(dctx, b.dial, addrs, attemptDelay)
	cancel()
	if err != nil {
		return nil, fail(Connecting, "", err)
	}
	as := addr.String()

	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	step(TLS, as)
	tc, err := b.tlsConfig(cfg, ep)
	if err != nil {
		conn.Close()
		return nil, fail(TLS, as, err)
	}
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fail(TLS, as, err)
	}

	step(Authenticating, as)
	sess, err := component.NewSession(hctx, tconn, component.Config{
		Name:             cfg.Name,
		Domain:           cfg.Domain,
		Address:          cfg.address,
		Secret:           cfg.secret,
		Handler:          b.mux,
		HandshakeTimeout: cfg.HandshakeTimeout,
		KeepaliveIdle:    cfg.KeepaliveIdle,
		PingInterval:     cfg.PingInterval,
		PingTimeout:      cfg.PingTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		Workers:          cfg.Workers,
		OrderPerSender:   cfg.OrderPerSender,
		Logger:           cfg.Logger,
	})
	if err != nil {
		tconn.Close()
		return nil, fail(Authenticating, as, err)
	}
	return &link{sess: sess, ep: ep, addr: addr, up: time.Now()}, nil
}

func (b *Bridge) tlsConfig(cfg *resolved, ep discovery.Endpoint) (*tls.Config, error) {
	name := cfg.ServerName
	if name == "" {
		name = ep.Target
	}
	v := tlsverify.Config{
		Domain:                      cfg.Domain,
		ServerName:                  name,
		Roots:                       cfg.roots,
		Policy:                      cfg.TLSPolicy,
		Pins:                        cfg.Pins,
		InsecureSkipAllVerification: cfg.InsecureSkipAllVerification,
	}
	return v.TLSConfig(cfg.SNI)
}

type endReason int

const (
	dropped endReason = iota
	stopped
	reconfigured
)

// serve holds the link until it drops, ctx ends or the config changes,
// failing back to a better server meanwhile when asked to.
func (b *Bridge) serve(ctx context.Context, cfg *resolved, res *discovery.Resolver, l *link) (endReason, error) {
	b.up(l)
	var tick <-chan time.Time
	if cfg.FailBack {
		t := time.NewTicker(cfg.failBackT)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.sess.Done():
			err := l.sess.Err()
			b.down(l, err)
			return dropped, err
		case <-ctx.Done():
			b.down(l, ErrClosed)
			return stopped, nil
		case <-b.updated:
			cfg.Logger.Info("xmpp settings changed: reconnecting", "server", l.ep.Target)
			b.down(l, ErrClosed)
			return reconfigured, nil
		case <-tick:
			if better := b.failBack(ctx, cfg, res, l); better != nil {
				old := l
				l = better
				b.swap(old, l)
			}
		}
	}
}

// up publishes a new live link.
func (b *Bridge) up(l *link) {
	b.live.Store(l)
	b.stats.connected()
	b.set(func(s *Status) {
		s.State, s.Server, s.Addr = Connected, l.ep.Target, l.addr.String()
		s.ConnectedSince, s.Attempt, s.LastErr, s.LastErrKind, s.Permanent, s.Backoff = l.up, 0, nil, KindNone, false, 0
	})
}

// down retires a link: a clean close when it is still up.
func (b *Bridge) down(l *link, cause error) {
	b.live.CompareAndSwap(l, nil)
	l.sess.Close()
	b.stats.sessionEnded(l.sess.Stats(), kindOf(cause))
	b.set(func(s *Status) { s.ConnectedSince = time.Time{} })
}

// swap moves from old to a better link without a gap: the new link is
// published first, then the old one is closed cleanly.
func (b *Bridge) swap(old, l *link) {
	b.live.Store(l)
	b.stats.connected()
	b.set(func(s *Status) { s.Server, s.Addr, s.ConnectedSince = l.ep.Target, l.addr.String(), l.up })
	cfg, _ := b.current()
	cfg.Logger.Info("xmpp link failed back to a preferred server", "state", Connected.String(), "server", l.ep.Target, "addr", l.addr.String(), "from", old.ep.Target)
	old.sess.Close()
	b.stats.sessionEnded(old.sess.Stats(), KindRedirect)
}

// failBack probes the endpoints preferred over the current one and returns a
// link to the first that accepts, or nil.
func (b *Bridge) failBack(ctx context.Context, cfg *resolved, res *discovery.Resolver, cur *link) *link {
	eps, err := b.endpoints(ctx, cfg, res)
	if err != nil {
		return nil
	}
	for _, ep := range eps {
		if ep.Priority >= cur.ep.Priority || key(ep) == key(cur.ep) {
			continue
		}
		l, err := b.connect(ctx, cfg, ep, true)
		if err == nil {
			return l
		}
		cfg.Logger.Debug("fail-back probe failed", "server", ep.Target, "err", err.Error())
	}
	return nil
}
