package wstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/cblink/cblink/component/componenttest"
)

// Path is where the endpoint accepts WebSocket connections, as Prosody's
// mod_websocket does.
const Path = "/xmpp-websocket"

// Defaults of Options.
const (
	DefaultAddr          = "127.0.0.1:0"
	DefaultMaxFrameSize  = 64 << 10
	DefaultMaxSessions   = 64
	DefaultMaxPendingIQs = 16
	DefaultMaxQueued     = 64
	DefaultIQTimeout     = 10 * time.Second
	DefaultWriteTimeout  = 5 * time.Second
	DefaultLoginTimeout  = 10 * time.Second
	DefaultIdleTimeout   = 5 * time.Minute
)

// Options configure a Server. The zero value serves componenttest's
// default domain with no components.
type Options struct {
	// Domain is the XMPP domain the users log in to; default
	// componenttest.DefaultDomain.
	Domain string
	// Servers are the componenttest servers whose components the users
	// reach: a stanza to a component address goes to the first server (in
	// this order) holding a live link of that component. New installs its
	// router on each (Server.SetRouter) and Close removes it.
	Servers []*componenttest.Server
	// Addr is the listen address; default 127.0.0.1:0.
	Addr string
	// MaxFrameSize bounds a frame from a user in bytes; a larger one
	// closes the session (WebSocket status 1009). Default 64 KiB.
	MaxFrameSize int64
	// MaxSessions bounds the sessions at once; past it the upgrade is
	// refused with HTTP 503. Default 64.
	MaxSessions int
	// MaxPendingIQs bounds the IQs one session may have waiting for a
	// component; past it an IQ is answered resource-constraint at once.
	// Default 16.
	MaxPendingIQs int
	// MaxQueued bounds the frames queued to one session; a session whose
	// queue overflows (a client that does not read) is closed. Default 64.
	MaxQueued int
	// IQTimeout bounds the wait for a component's answer; then the user
	// gets remote-server-timeout. Default 10s.
	IQTimeout time.Duration
	// WriteTimeout bounds each frame written to a user. Default 5s.
	WriteTimeout time.Duration
	// LoginTimeout bounds the time from the upgrade to a bound resource,
	// and IdleTimeout the silence of a bound user (RFC 7395 clients send
	// whitespace keepalives): past either the session is closed, so that
	// silent connections cannot hold MaxSessions. Defaults 10s and 5m.
	LoginTimeout, IdleTimeout time.Duration
	// Logf receives diagnostics; nil discards them.
	Logf func(format string, args ...any)
}

// Server is a running endpoint. Its methods are safe for concurrent use.
type Server struct {
	opts      Options
	url       string
	addr      string
	hs        *http.Server
	ctx       context.Context // ends every session
	cancel    context.CancelFunc
	serveDone chan struct{}
	sessWG    sync.WaitGroup // session goroutines (the HTTP handlers)
	connWG    sync.WaitGroup // net/http's connection goroutines, until closed or hijacked
	closeOnce sync.Once
	conns     atomic.Int64 // TCP connections open
	seq       atomic.Uint64

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
	byJID    map[string]*session // bound sessions by full JID
}

// setDefault sets *v to d when it is zero or negative.
func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// New starts an endpoint listening on opts.Addr. Close it when done.
func New(opts Options) (*Server, error) {
	if opts.Domain == "" {
		opts.Domain = componenttest.DefaultDomain
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	setDefault(&opts.MaxFrameSize, DefaultMaxFrameSize)
	setDefault(&opts.MaxSessions, DefaultMaxSessions)
	setDefault(&opts.MaxPendingIQs, DefaultMaxPendingIQs)
	setDefault(&opts.MaxQueued, DefaultMaxQueued)
	setDefault(&opts.IQTimeout, DefaultIQTimeout)
	setDefault(&opts.LoginTimeout, DefaultLoginTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	opts.Servers = slices.Clone(opts.Servers)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("wstest: listen: %w", err)
	}
	s := &Server{
		opts:      opts,
		addr:      ln.Addr().String(),
		serveDone: make(chan struct{}),
		sessions:  map[*session]struct{}{},
		byJID:     map[string]*session{},
	}
	s.url = "ws://" + s.addr + Path
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.serveWS)
	// IdleTimeout: keep-alive connections that never upgrade are closed.
	s.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, ConnState: s.connState}
	for _, srv := range opts.Servers {
		srv.SetRouter(s.fromComponent)
	}
	go func() {
		defer close(s.serveDone)
		_ = s.hs.Serve(countingListener{ln, &s.conns})
	}()
	return s, nil
}

// URL returns the endpoint's WebSocket URL, ws://127.0.0.1:port/xmpp-websocket.
func (s *Server) URL() string { return s.url }

// Addr returns the address the endpoint listens on.
func (s *Server) Addr() string { return s.addr }

// Domain returns the XMPP domain of the users.
func (s *Server) Domain() string { return s.opts.Domain }

// Sessions returns the number of WebSocket sessions in progress.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Conns returns the number of TCP connections the endpoint holds open.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// Close stops the endpoint: it closes the listener, ends every session
// (abruptly, like a crash), removes its router from the servers, and
// returns once every goroutine and connection it started is gone. It is
// idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		_ = s.hs.Close()
		<-s.serveDone
		s.connWG.Wait()
		s.sessWG.Wait()
		for _, srv := range s.opts.Servers {
			srv.SetRouter(nil)
		}
	})
}

// connState tracks net/http's goroutine of each connection: it exits
// right after reporting StateClosed; a hijacked one became a session,
// which sessWG tracks.
func (s *Server) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.connWG.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.connWG.Done()
	}
}

// offersXMPP reports whether the request asks for the xmpp sub-protocol.
func offersXMPP(r *http.Request) bool {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			if strings.TrimSpace(p) == "xmpp" {
				return true
			}
		}
	}
	return false
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !offersXMPP(r) {
		http.Error(w, "XMPP over WebSocket needs the xmpp sub-protocol (RFC 7395)", http.StatusNotImplemented)
		return
	}
	s.mu.Lock()
	if s.closed || len(s.sessions) >= s.opts.MaxSessions {
		s.mu.Unlock()
		http.Error(w, "too many sessions", http.StatusServiceUnavailable)
		return
	}
	ss := &session{s: s, n: s.seq.Add(1)}
	s.sessions[ss] = struct{}{}
	s.sessWG.Add(1)
	s.mu.Unlock()
	defer s.sessWG.Done()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()
	// Any origin: a loopback test server for pages served from other
	// ports (Prosody does not check Origin either).
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{"xmpp"},
		InsecureSkipVerify: true,
	})
	if err != nil {
		s.opts.Logf("wstest: accept: %v", err)
		return
	}
	c.SetReadLimit(s.opts.MaxFrameSize)
	ss.run(c)
}

// bind registers a session under its full JID.
func (s *Server) bind(ss *session, jid string) {
	s.mu.Lock()
	s.byJID[jid] = ss
	s.mu.Unlock()
}

func (s *Server) unbind(ss *session) {
	s.mu.Lock()
	if s.byJID[ss.jid] == ss {
		delete(s.byJID, ss.jid)
	}
	s.mu.Unlock()
}

// lookup returns the session with the given full JID, or the one session
// of a bare JID; nil when there is none.
func (s *Server) lookup(to string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.byJID[to]; ok {
		return ss
	}
	if strings.IndexByte(to, '/') >= 0 {
		return nil
	}
	var found *session
	for jid, ss := range s.byJID {
		if strings.HasPrefix(jid, to+"/") {
			if found != nil {
				return nil
			}
			found = ss
		}
	}
	return found
}

// component returns the live link of a component address and whether the
// address is registered on any of the servers.
func (s *Server) component(addr string) (*componenttest.Conn, bool) {
	registered := false
	for _, srv := range s.opts.Servers {
		if c := srv.LiveConn(addr); c != nil {
			return c, true
		}
		if !registered && slices.Contains(srv.Components(), addr) {
			registered = true
		}
	}
	return nil, registered
}

// fromComponent is the servers' router: a stanza a component sends to a
// user of this endpoint is queued to that user's session.
func (s *Server) fromComponent(st componenttest.Stanza) bool {
	ss := s.lookup(st.To)
	if ss == nil {
		return false
	}
	el, err := parseFrame(st.Raw)
	if err != nil || el.Keepalive {
		return false
	}
	b, ok := rewrite(nil, &el, nsClient)
	if !ok {
		return false
	}
	ss.enqueue(b)
	return true
}

// countingListener counts the connections it accepted that are not
// closed yet.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.n.Add(1)
	return &countedConn{Conn: c, n: l.n}, nil
}

type countedConn struct {
	net.Conn
	n    *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return c.Conn.Close()
}
