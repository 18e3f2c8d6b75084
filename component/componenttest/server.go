package componenttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cblink/cblink/internal/testpki"
)

// Errors returned by the Server and Conn.
var (
	// ErrServerClosed is returned once Close was called.
	ErrServerClosed = errors.New("componenttest: server closed")
	// ErrConnClosed is returned by calls on a connection that has ended.
	ErrConnClosed = errors.New("componenttest: connection closed")
	// ErrNotEstablished is returned when a stanza is sent on a connection
	// whose handshake has not succeeded.
	ErrNotEstablished = errors.New("componenttest: handshake not completed")
	// ErrBadStanza is returned when a raw stanza given by the test cannot be
	// used (not one element, no id for SendIQ, id already pending).
	ErrBadStanza = errors.New("componenttest: bad stanza")
	// ErrIQError is returned by Ping when the component answered with an
	// IQ of type error.
	ErrIQError = errors.New("componenttest: IQ error reply")
	// ErrRunning is returned by Start when the server is already listening.
	ErrRunning = errors.New("componenttest: server already listening")
)

// Outcome is where a connection's handshake stands.
type Outcome int

// Handshake outcomes.
const (
	// HandshakePending: the connection has not finished the handshake.
	HandshakePending Outcome = iota
	// HandshakeOK: <handshake/> was sent.
	HandshakeOK
	// HandshakeFailed: the connection ended before success (stream error
	// sent, peer gone, fault injected); ConnInfo.Condition tells which.
	HandshakeFailed
)

func (o Outcome) String() string {
	switch o {
	case HandshakePending:
		return "pending"
	case HandshakeOK:
		return "ok"
	case HandshakeFailed:
		return "failed"
	}
	return "outcome(?)"
}

// Stats are the server's counters since NewServer.
type Stats struct {
	Accepted     int64
	HandshakesOK int64
	// HandshakesFailed counts failed handshakes by the stream error
	// condition sent ("not-authorized", "host-unknown", "conflict", ...),
	// or by what else ended them: "closed-by-peer" (the peer sent
	// </stream:stream>), "disconnected" (the peer went away), "tls" (TLS
	// handshake failed), "fault-close", "fault-reset", "fault-blackhole".
	HandshakesFailed map[string]int64
	// StanzasIn and StanzasOut count top-level elements after the
	// handshake (keepalives excluded), over all connections.
	StanzasIn, StanzasOut int64
}

// Server is an in-process XMPP server that accepts XEP-0114 component
// connections. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	tlsConf *tls.Config // nil when Plain
	pool    *x509.CertPool
	rootPEM []byte
	logf    func(string, ...any)
	hooks   atomic.Pointer[hooks] // the test's IQ answers and inboxes

	acceptWG sync.WaitGroup // accept loops
	connWG   sync.WaitGroup // connection goroutines

	mu      sync.Mutex
	ln      net.Listener
	addr    string
	closed  bool
	secrets map[string]string
	conns   []*Conn
	live    map[*Conn]struct{}
	next    []Fault // one-shot faults for the next connection
	hasNext bool
	faults  FaultFunc
	router  func(Stanza) bool
	changed chan struct{} // closed and replaced on every state change
	stats   Stats
}

// NewServer starts a server listening on opts.Addr. Close it when done.
func NewServer(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(o Options) (*Server, error) {
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxStanzaSize <= 0 {
		o.MaxStanzaSize = DefaultMaxStanzaSize
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.MaxRawLog == 0 {
		o.MaxRawLog = DefaultMaxRawLog
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = DefaultMaxQueued
	}
	s := &Server{
		opts:    o,
		addr:    o.Addr,
		secrets: maps.Clone(o.Components),
		live:    map[*Conn]struct{}{},
		faults:  o.Faults,
		changed: make(chan struct{}),
		logf:    o.Logf,
	}
	if s.secrets == nil {
		s.secrets = map[string]string{}
	}
	s.stats.HandshakesFailed = map[string]int64{}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if !o.Plain {
		if err := s.setupTLS(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) setupTLS() error {
	o := &s.opts
	var conf *tls.Config
	if o.TLSConfig != nil {
		conf = o.TLSConfig.Clone()
	} else {
		conf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.CACert != nil {
		s.pool = x509.NewCertPool()
		s.pool.AddCert(o.CACert)
		s.rootPEM = testpki.CertPEM(o.CACert)
	}
	switch {
	case len(conf.Certificates) > 0 || conf.GetCertificate != nil:
	case o.Certificate != nil:
		conf.Certificates = []tls.Certificate{*o.Certificate}
	default:
		var ca *testpki.CA
		if o.CACert != nil && o.CAKey != nil {
			ca = &testpki.CA{Cert: o.CACert, Key: o.CAKey}
		} else {
			var err error
			ca, err = testpki.NewCA(testpki.Template{CommonName: "componenttest CA"})
			if err != nil {
				return fmt.Errorf("componenttest: %w", err)
			}
			s.pool = ca.Pool()
			s.rootPEM = ca.RootPEM()
		}
		dns := o.DNSNames
		if dns == nil {
			dns = []string{o.Domain, "localhost"}
		}
		ips := o.IPs
		if ips == nil {
			ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		leaf, err := ca.Issue(testpki.Template{CommonName: o.Domain, DNSNames: dns, IPs: ips})
		if err != nil {
			return fmt.Errorf("componenttest: %w", err)
		}
		conf.Certificates = []tls.Certificate{leaf.TLSCertificate(true)}
	}
	s.tlsConf = conf
	return nil
}

// Start listens again on the server's address after Stop (the same port as
// before). It returns ErrRunning when already listening and
// ErrServerClosed after Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.ln != nil {
		return ErrRunning
	}
	var ln net.Listener
	var err error
	// The port of a just-closed listener can take a moment to be free.
	for range 50 {
		ln, err = net.Listen("tcp", s.addr)
		if err == nil || s.addr == DefaultAddr {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("componenttest: listen: %w", err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.acceptWG.Add(1)
	go s.acceptLoop(ln)
	s.logf("componenttest: listening on %s (tls=%v)", s.addr, s.tlsConf != nil)
	return nil
}

// Stop closes the listener, so new connections are refused, and waits for
// the accept loop to exit. Established connections are left alone; add
// CloseClientConnections to simulate a crash. Start listens again.
func (s *Server) Stop() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	s.acceptWG.Wait()
}

// Close stops the server: it closes the listener and every connection and
// waits until all of the server's goroutines have exited. It is
// idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.notifyLocked()
	s.mu.Unlock()
	s.Stop()
	s.CloseClientConnections()
	s.connWG.Wait()
}

// CloseClientConnections closes every live connection abruptly (no stream
// error, no closing tag), like a crashed server, and returns once the
// server has forgotten them: a component that reconnects at once is not
// refused as a duplicate of its own dead link.
func (s *Server) CloseClientConnections() {
	s.mu.Lock()
	live := slices.Collect(maps.Keys(s.live))
	s.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
	for _, c := range live {
		<-c.done
	}
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.acceptWG.Done()
	for {
		nc, err := ln.Accept()
		acceptedAt := time.Now()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if s.adopt(nc, acceptedAt) == nil {
			return
		}
	}
}

// adopt serves nc as an accepted connection; it returns nil (and closes
// nc) when the server is closed.
func (s *Server) adopt(nc net.Conn, acceptedAt time.Time) *Conn {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return nil
	}
	idx := len(s.conns)
	faults := s.next
	if s.hasNext {
		s.next, s.hasNext = nil, false
	} else if s.faults != nil {
		f := s.faults
		s.mu.Unlock()
		faults = f(idx) // user code: never under the lock
		s.mu.Lock()
	}
	c := newConn(s, nc, idx, faults)
	c.timing.accepted = acceptedAt
	s.conns = append(s.conns, c)
	s.live[c] = struct{}{}
	s.stats.Accepted++
	s.connWG.Add(1)
	s.notifyLocked()
	s.mu.Unlock()
	go c.serve()
	return c
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Addr returns the address the server listens on, "127.0.0.1:port".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Domain returns the XMPP domain the server serves.
func (s *Server) Domain() string { return s.opts.Domain }

// CertPool returns a pool holding the CA that signed the server's
// certificate, for the client's RootCAs; nil in Plain mode or when the
// test supplied its own certificate without CACert.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// RootPEM returns that CA certificate in PEM form, as a CA bundle file
// holds it; nil when CertPool is nil.
func (s *Server) RootPEM() []byte { return s.rootPEM }

// ClientTLSConfig returns a client configuration that trusts CertPool and
// expects the Domain as server name; nil in Plain mode.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.tlsConf == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.pool, ServerName: s.opts.Domain, MinVersion: tls.VersionTLS12}
}

// AddComponent registers a component, like `prosodyctl`'s Component
// section or CMS's `xmpp callbridge add`: name is the full component
// address ("cb1.example.com"), secret its shared secret. It replaces the
// secret of a registered name and applies to handshakes that start later.
func (s *Server) AddComponent(name, secret string) {
	s.mu.Lock()
	s.secrets[name] = secret
	s.mu.Unlock()
}

// RemoveComponent unregisters a component address. Established links stay
// up; new ones get host-unknown.
func (s *Server) RemoveComponent(name string) {
	s.mu.Lock()
	delete(s.secrets, name)
	s.mu.Unlock()
}

// Components returns the registered component addresses, sorted.
func (s *Server) Components() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.secrets))
}

func (s *Server) secret(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.secrets[name]
	return v, ok
}

// SetFault makes the next accepted connection (only that one) suffer the
// given faults, in place of what Options.Faults says. SetFault() with no
// argument makes the next connection fault-free.
func (s *Server) SetFault(faults ...Fault) {
	s.mu.Lock()
	s.next, s.hasNext = slices.Clone(faults), true
	s.mu.Unlock()
}

// SetFaultFunc replaces Options.Faults for connections accepted from now
// on; nil removes it.
func (s *Server) SetFaultFunc(f FaultFunc) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// Conns returns every connection accepted so far, live or ended, in accept
// order (Conns()[i].Index() == i).
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns)
}

// LiveConns returns the connections that have not ended, in accept order.
func (s *Server) LiveConns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Conn
	for _, c := range s.conns {
		if _, ok := s.live[c]; ok {
			out = append(out, c)
		}
	}
	return out
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.HandshakesFailed = maps.Clone(s.stats.HandshakesFailed)
	for _, c := range s.conns {
		st.StanzasIn += c.stanzasIn.Load()
		st.StanzasOut += c.stanzasOut.Load()
	}
	return st
}

// wait blocks until cond (called under s.mu) returns a conn, ctx ends or
// the server is closed.
func (s *Server) wait(ctx context.Context, cond func() *Conn) (*Conn, error) {
	for {
		s.mu.Lock()
		if c := cond(); c != nil {
			s.mu.Unlock()
			return c, nil
		}
		closed, ch := s.closed, s.changed
		s.mu.Unlock()
		if closed {
			return nil, ErrServerClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// WaitConn waits until a component with the given address has completed
// the handshake on a connection that is still live, and returns the most
// recent such connection.
func (s *Server) WaitConn(ctx context.Context, name string) (*Conn, error) {
	return s.wait(ctx, func() *Conn {
		for i := len(s.conns) - 1; i >= 0; i-- {
			c := s.conns[i]
			if _, live := s.live[c]; live && c.outcome == HandshakeOK && c.name == name {
				return c
			}
		}
		return nil
	})
}

// LiveConn returns the most recent live connection on which a component
// with the given address completed the handshake, or nil when there is
// none; unlike WaitConn it does not wait.
func (s *Server) LiveConn(name string) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.conns) - 1; i >= 0; i-- {
		c := s.conns[i]
		if _, live := s.live[c]; live && c.outcome == HandshakeOK && c.name == name {
			return c
		}
	}
	return nil
}

// SetRouter sets a function offered every stanza a component sends that
// the server does not consume itself (replies to SendIQ and Ping, IQs to
// the server domain) before it is queued for Conn.Next; returning true
// consumes it. It runs on the connection's read goroutine, so it must not
// block; nil removes it. wstest uses it to deliver the components'
// stanzas to its web users.
func (s *Server) SetRouter(f func(Stanza) bool) {
	s.mu.Lock()
	s.router = f
	s.mu.Unlock()
}

func (s *Server) currentRouter() func(Stanza) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.router
}

// WaitAccepted waits until the connection with the given accept index
// (0-based over the server's life) exists and returns it, whatever state it
// is in.
func (s *Server) WaitAccepted(ctx context.Context, index int) (*Conn, error) {
	return s.wait(ctx, func() *Conn {
		if index < len(s.conns) {
			return s.conns[index]
		}
		return nil
	})
}
