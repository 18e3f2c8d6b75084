package callbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/tlsverify"
)

// link is an authenticated session and where it goes.
type link struct {
	sess *component.Session
	ep   discovery.Endpoint
	addr netip.AddrPort
	up   time.Time
	// backup: ep is not among the preferred endpoints (the lowest
	// priority of the lookup that found it).
	backup bool
}

// isBackup reports whether ep is not among the preferred endpoints of
// eps: those of the lowest priority.
func isBackup(ep discovery.Endpoint, eps []discovery.Endpoint) bool {
	for _, o := range eps {
		if o.Priority < ep.Priority {
			return true
		}
	}
	return false
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
func (b *Bridge) endpoints(ctx context.Context, cfg *resolved, res Resolver) ([]discovery.Endpoint, error) {
	r, err := lookup(ctx, res, discovery.Request{Domain: cfg.Domain, Server: cfg.Server, FallbackToDomain: cfg.FallbackToDomain})
	if err != nil {
		return nil, err
	}
	if cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		for _, te := range r.Trace {
			cfg.Logger.Debug("dns", "query", te.String())
		}
		order := make([]string, len(r.Endpoints))
		for i, ep := range r.Endpoints {
			order[i] = fmt.Sprintf("%s:%d %v (priority %d, weight %d)", ep.Target, ep.Port, ep.Addrs, ep.Priority, ep.Weight)
		}
		cfg.Logger.Debug("xmpp servers in the order to try", "servers", order)
	}
	return slices.Clone(r.Endpoints), nil
}

// lookup asks res for the endpoints of req. A result without endpoints,
// or with an endpoint without addresses, but no error is a
// *ContractError: discovery.Resolver reports those with an error.
func lookup(ctx context.Context, res Resolver, req discovery.Request) (*discovery.Result, error) {
	r, err := res.Lookup(ctx, req)
	switch {
	case err != nil:
		return nil, err
	case r == nil:
		return nil, &ContractError{Field: "Resolver", What: "returned a nil result and no error"}
	case len(r.Endpoints) == 0:
		return nil, &ContractError{Field: "Resolver", What: "returned no servers and no error"}
	}
	for _, ep := range r.Endpoints {
		if len(ep.Addrs) == 0 {
			return nil, &ContractError{Field: "Resolver", What: fmt.Sprintf("returned server %q without an address and no error", ep.Target)}
		}
	}
	return r, nil
}

// attempt is the outcome of one connection attempt.
type attempt struct {
	ep       discovery.Endpoint
	l        *link
	err      error
	redirect *discovery.Endpoint // where a see-other-host error points
}

// connectAny tries the endpoints in order and returns the first link that
// authenticates, not yet started. Each attempt first waits what the pacer
// says (attempts on one endpoint start Backoff.spacing apart), and each
// failure is reported to it. An attempt that makes no progress (TCP,
// TLS, handshake) for Config.ParallelAfter does not hold up the others:
// the next endpoint starts beside it, RFC 8305 style across servers, and
// the first to authenticate wins; the others are cancelled, and one that
// authenticated anyway is closed cleanly in the background. A failure
// starts the next endpoint at once. A see-other-host redirect is followed
// once, right after the server that sent it. Every attempt has returned
// when connectAny does.
func (b *Bridge) connectAny(ctx context.Context, cfg *resolved, eps []discovery.Endpoint, pace *pacer) (*link, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attempt, len(eps)+1)
	progress := make(chan struct{}, 1)
	signal := func() {
		select {
		case progress <- struct{}{}:
		default:
		}
	}
	next, running := 0, 0
	start := func() {
		ep := eps[next]
		next++
		running++
		wait := pace.start(ep, b.now())
		go func() {
			l, err := b.connect(actx, cfg, ep, false, wait, signal)
			a := attempt{ep: ep, l: l, err: err}
			if err != nil && actx.Err() == nil {
				a.redirect = b.redirect(actx, cfg, err)
			}
			results <- a
		}()
	}
	var stallC <-chan time.Time
	var stall *time.Timer
	if cfg.ParallelAfter > 0 {
		stall = time.NewTimer(cfg.ParallelAfter)
		defer stall.Stop()
		stallC = stall.C
	}
	resetStall := func() {
		if stall != nil {
			stall.Reset(cfg.ParallelAfter)
		}
	}

	start()
	var (
		won        *link
		lastErr    error
		redirected bool
	)
	for running > 0 {
		select {
		case <-stallC:
			if won == nil && next < len(eps) {
				start()
			}
			resetStall()
		case <-progress:
			resetStall()
		case a := <-results:
			running--
			switch {
			case a.err == nil && won == nil:
				won = a.l
				cancel() // the others stop; they are drained below
			case a.err == nil:
				b.discard(a.l) // lost the race but authenticated
			case won != nil || ctx.Err() != nil:
				// Cancelled because another attempt won or the bridge is
				// stopping: not a failure of this endpoint.
			default:
				a.err = pace.attemptFailed(a.ep, a.err)
				lastErr = a.err
				b.failed(a.err)
				if a.redirect != nil && !redirected {
					redirected = true
					eps = slices.Insert(eps, next, *a.redirect)
				}
				b.logServerFailed(cfg, a, eps[next:])
				if next < len(eps) {
					start()
					resetStall()
				}
			}
		}
	}
	if won != nil {
		return won, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, lastErr
}

// logServerFailed writes one line for a server that failed (ERROR when
// the failure is one only an operator can fix, else WARN), naming
// the server tried next (rest[0]) when there is one, so that a preferred
// server that fails while a backup takes over is not hidden in the
// backup's lines.
func (b *Bridge) logServerFailed(cfg *resolved, a attempt, rest []discovery.Endpoint) {
	k := Classify(a.err)
	attrs := []any{"server", a.ep.Target, "port", a.ep.Port, "err", a.err.Error(), "kind", string(k), "permanent", k.Permanent()}
	if len(rest) > 0 {
		attrs = append(attrs, "next", rest[0].Target)
	}
	level := slog.LevelWarn
	if k.Permanent() {
		level = slog.LevelError
	}
	cfg.Logger.Log(context.Background(), level, "xmpp server failed", attrs...)
}

// logLookupFailed writes the one line of a cycle whose lookup failed (no
// server to try): ERROR when only an operator can fix it (no SRV
// records, a bad address), else WARN.
func (b *Bridge) logLookupFailed(cfg *resolved, err error) {
	k := Classify(err)
	level := slog.LevelWarn
	if k.Permanent() {
		level = slog.LevelError
	}
	cfg.Logger.Log(context.Background(), level, "xmpp lookup failed", "domain", cfg.Domain, "err", err.Error(), "kind", string(k), "permanent", k.Permanent())
}

// discard closes, in the background, a link that was never published.
func (b *Bridge) discard(l *link) {
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		l.sess.Close()
	}()
}

// redirect resolves the address of a see-other-host error into an
// endpoint; nil for any other error or when it does not resolve.
func (b *Bridge) redirect(ctx context.Context, cfg *resolved, err error) *discovery.Endpoint {
	var se *component.StreamError
	if !errors.As(err, &se) {
		return nil
	}
	addr, ok := se.OtherHost()
	if !ok {
		return nil
	}
	_, res := b.current()
	r, err := lookup(ctx, res, discovery.Request{Domain: cfg.Domain, Server: addr})
	if err != nil {
		b.failed(&RedirectError{Addr: addr, Err: err})
		return nil
	}
	cfg.Logger.Info("xmpp server redirected the bridge", "server", addr)
	return &r.Endpoints[0]
}

// connect brings up one link to ep: TCP (racing its addresses), TLS with
// the certificate checks, then the component handshake. The session is
// authenticated but not started: the caller publishes it first. A probe
// (fail-back) does not touch the status. wait delays the TCP connect
// (state Connecting), as the pacer asks. progress is called after each
// step that completes.
func (b *Bridge) connect(ctx context.Context, cfg *resolved, ep discovery.Endpoint, probe bool, wait time.Duration, progress func()) (*link, error) {
	step := func(st State, addr string) {
		if !probe && ctx.Err() == nil {
			b.set(func(s *Status) { s.State = st; s.Server = ep.Target; s.Addr = addr })
		}
	}
	step(Connecting, "")
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, &ConnectError{Server: ep.Target, Step: Connecting, Err: ctx.Err()}
		}
	}
	stepStart := time.Now()
	fail := func(st State, addr string, err error) error {
		return &ConnectError{Server: ep.Target, Addr: addr, Step: st, Elapsed: time.Since(stepStart), Err: err}
	}
	addrs := make([]netip.AddrPort, len(ep.Addrs))
	for i, a := range ep.Addrs {
		addrs[i] = netip.AddrPortFrom(a, ep.Port)
	}
	// The TLS configuration is built before the connect, so that the
	// ClientHello is not delayed by it; a problem with it is still the
	// TLS step's.
	tc, tcErr := b.tlsConfig(cfg, ep)
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	conn, addr, err := raceDial(dctx, cfg.dialer().DialContext, addrs, attemptDelay)
	cancel()
	if err != nil {
		return nil, fail(Connecting, "", err)
	}
	progress()
	as := addr.String()

	// TLS and the component handshake share one deadline, the handshake
	// timeout, counted from the connection being up.
	hctx, cancel := context.WithTimeout(ctx, cfg.Tuning.WithDefaults().HandshakeTimeout)
	defer cancel()
	step(TLS, as)
	stepStart = time.Now()
	if tcErr != nil {
		conn.Close()
		return nil, fail(TLS, as, tcErr)
	}
	tconn, err := startTLS(hctx, conn, tc)
	if err != nil {
		return nil, fail(TLS, as, tlsverify.ExplainHandshakeError(err))
	}
	progress()
	if certs := tconn.ConnectionState().PeerCertificates; len(certs) > 0 && cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		sum := tlsverify.Summarize(certs[0])
		cfg.Logger.Debug("xmpp server certificate", "server", ep.Target, "addr", as,
			"subject", sum.Subject, "issuer", sum.Issuer, "dns_sans", sum.DNSNames, "ip_sans", sum.IPAddresses,
			"not_after", sum.NotAfter.UTC().Format(time.RFC3339), "sha256", sum.SHA256)
	}

	step(Authenticating, as)
	stepStart = time.Now()
	sess, err := component.Handshake(hctx, tconn, cfg.linkConfig(b.mux))
	if err != nil {
		tconn.Close()
		return nil, fail(Authenticating, as, err)
	}
	return &link{sess: sess, ep: ep, addr: addr, up: b.now()}, nil
}

// startTLS runs the TLS client handshake on conn, already connected, and
// returns within ctx's deadline (crypto/tls closes conn when ctx ends). On
// failure conn is closed.
func startTLS(ctx context.Context, conn net.Conn, tc *tls.Config) (*tls.Conn, error) {
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tconn, nil
}

// linkConfig is the component.Config of every link of the bridge.
func (cfg *resolved) linkConfig(mux *component.Mux) component.Config {
	return component.Config{
		Name:    cfg.Name,
		Domain:  cfg.Domain,
		Address: cfg.address,
		Secret:  cfg.secret,
		Handler: mux,
		Tuning:  cfg.Tuning, // unchanged: component applies the defaults
		Logger:  slog.New(linkLogHandler{cfg.Logger.Handler()}),
	}
}

// linkLogHandler passes a link's log lines to the bridge's logger, but
// for those the bridge writes a line of its own about (the link up, down,
// a failed handshake: "xmpp link connected", "xmpp link lost", "xmpp
// server failed"), which it passes at DEBUG: one line per event.
type linkLogHandler struct{ h slog.Handler }

var bridgeSaysItToo = map[string]bool{"component link up": true, "component link down": true, "component handshake failed": true}

func (l linkLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l linkLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && bridgeSaysItToo[r.Message] {
		if !l.h.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return l.h.Handle(ctx, r)
}

func (l linkLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return linkLogHandler{l.h.WithAttrs(attrs)}
}

func (l linkLogHandler) WithGroup(name string) slog.Handler {
	return linkLogHandler{l.h.WithGroup(name)}
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
