package component

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/internal/xstream"
)

// Session is one authenticated component link. It is safe for concurrent
// use.
//
// # Ownership
//
// A Session owns its connection and every goroutine it starts: the reader,
// the writer, the housekeeping loop (keepalives, pings, teardown) and the
// handlers' goroutines. Handshake starts the writer and the housekeeping
// loop, Start the reader; a handler's goroutine starts with its stanza and
// ends with its handler. Close, Shutdown and Abort stop all of them and
// return only once they have exited; when the link ends by itself, Done
// is closed once they have. The one exception is a handler that ignores
// its cancelled context: nothing can stop it, so the teardown stops
// waiting for it after Config.CloseTimeout (its request has been answered
// by then) and logs it; its goroutine ends when it returns.
//
// A handler stops its own session with Shutdown and its ctx (or a context
// derived from it): Shutdown then does not wait for that handler. Close
// and Abort, which take no context, wait for every handler, the caller
// included, until CloseTimeout: from a handler, call them on another
// goroutine (go s.Close()).
//
// # Requests are answered exactly once
//
// Every IQ get or set the session reads gets exactly one reply while the
// stream can still carry one: the handler's result or error, resource-
// constraint when the queue is full, or service-unavailable (type wait)
// when the session is closing. Close answers the requests still queued or
// running with service-unavailable before its closing tag; Shutdown first
// lets them finish. Once the server has ended the stream, or the
// connection is gone, nothing more can be sent.
//
// # Printing
//
// Printing a *Session with fmt (any verb) or log/slog shows its component
// address and state: "component.Session(cb1.example.com, up)".
type Session struct {
	// Every field is in *sessionState, so that nothing prints a Session's
	// state by reflection (as fmt does with a value in an unexported field,
	// and with any value for a verb it does not take): it stops at this
	// pointer, which it prints as an address, and so never races with the
	// session's goroutines nor reaches its Config.
	*sessionState
}

// sessionState is a Session's state; see Session.
type sessionState struct {
	cfg  settings
	conn net.Conn
	rd   deadlineReader
	dec  *xstream.Decoder
	w    *xstream.Writer
	log  *slog.Logger
	mux  *Mux
	pool *pool // nil without a Mux

	// ctx is given to handlers; it is cancelled as soon as the link starts
	// to end (after the drain of Shutdown).
	ctx    context.Context
	cancel context.CancelFunc

	quit     chan struct{} // closed by fail
	quitOnce sync.Once
	// errMu guards why and how the link ends (err, mode, final), set once
	// by fail and read by the teardown and Err.
	errMu sync.Mutex
	err   error
	mode  endMode
	final []byte // written before the closing tag (a local stream error)

	startOnce  sync.Once
	readerDone chan struct{}
	done       chan struct{}

	// routeMu is held by the reader while it routes a stanza or flushes
	// its reply batch, and by the teardown while it answers what is
	// unanswered and seals the stream: every request the reader routed
	// before the seal is answered before </stream:stream>.
	routeMu sync.Mutex
	// replyMu orders handler replies against the teardown: a handler
	// queues its reply under the read lock; the teardown takes the write
	// lock to answer, once, every request still unanswered and then seal
	// the stream. It guards repliesClosed and every job's answered.
	replyMu       sync.RWMutex
	repliesClosed bool

	// pmu guards the IQ requests of this side waiting for their replies.
	pmu      sync.Mutex
	pending  map[string]*pendingIQ
	pendErr  error // set when pending requests were failed at the end
	idPrefix string
	idSeq    atomic.Uint64

	// Replies the reader writes itself (pings, errors) are batched here and
	// queued in one Append when the reader is about to read again, so a
	// burst of requests read at once is answered in one write.
	rbatch          []byte
	rcount          uint64 // replies in rbatch
	rshed, rrefused uint64 // of which resource-constraint, service-unavailable
	rpings          uint64 // of which answers to the server's pings

	stats counters
}

type counters struct {
	in, out, keepalivesIn, keepalivesOut, pingsAnswered atomic.Uint64
	pingsSent, handlerErrors, handlerPanics, dropped    atomic.Uint64
	shed, refused, unanswered                           atomic.Uint64
	lastRTT                                             atomic.Int64
}

// Stats is a snapshot of a session's counters.
type Stats struct {
	StanzasIn     uint64 // stanzas read (keepalives excluded)
	StanzasOut    uint64 // stanzas queued for writing
	KeepalivesIn  uint64 // whitespace keepalives read
	KeepalivesOut uint64 // whitespace keepalives sent
	PingsAnswered uint64 // XEP-0199 pings from the server answered
	PingsSent     uint64 // XEP-0199 pings sent (Ping and PingInterval)
	HandlerErrors uint64 // handler errors answered with a stanza error
	HandlerPanics uint64 // handler panics recovered
	Dropped       uint64 // stanzas dropped (no handler, bad address, unknown reply, no room)
	Shed          uint64 // requests answered resource-constraint: the queue was full
	Refused       uint64 // requests answered service-unavailable: the session was closing
	// Unanswered counts IQ requests read that got no answer because the
	// stream could no longer carry one: they arrived after this side's
	// closing tag (the server routed them before it read that tag), or
	// the server ended the stream or the connection failed first. The
	// server may bounce the former to their senders.
	Unanswered  uint64
	Queued      int           // stanzas waiting behind their sender's (OrderPerSender) now
	Running     int           // handlers running now
	LastPingRTT time.Duration // round trip of the last successful ping, 0 if none
	LastWrite   time.Time     // when the last write to the connection completed
}

// NewSession runs the XEP-0114 handshake on conn and starts the session:
// it is Handshake followed by Start. Use Handshake when the program must
// publish the session (store it where its handlers will look) before the
// first stanza is dispatched.
func NewSession(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	s, err := Handshake(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	s.Start()
	return s, nil
}

// Handshake runs the XEP-0114 handshake on conn, which must be connected
// to the XMPP server's component port (TLS already set up, if any). ctx
// bounds only the handshake (with Config.HandshakeTimeout); once it
// returns, ctx no longer matters: end the session with Close, Shutdown or
// Abort.
//
// On success the session owns conn and can send (keepalives and pings run
// too), but it reads nothing, so no handler runs, until Start. On failure
// conn is closed and the error says why (callbridge.Classify tells whether
// a retry can help). The secret never appears in errors or logs.
func Handshake(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	if ctx == nil {
		conn.Close()
		return nil, ErrNilContext
	}
	set, err := cfg.resolve()
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Session{&sessionState{
		cfg:        set,
		conn:       conn,
		log:        set.Logger.With(slog.String("component", set.addrStr)),
		mux:        set.Handler,
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
		pending:    make(map[string]*pendingIQ),
	}}
	s.rd.conn = conn
	s.dec = xstream.NewDecoder(&s.rd, set.MaxStanzaSize, set.MaxDepth)
	enableTCPKeepalive(conn)
	if err := s.handshake(ctx); err != nil {
		conn.Close()
		s.log.Warn("component handshake failed", slog.Any("err", err))
		return nil, err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	s.idPrefix = hex.EncodeToString(rnd[:]) + "-"
	if s.mux != nil {
		s.mux.freeze()
		// Without a Mux nothing reaches a handler: no pool.
		s.pool = newPool(s.cfg.Workers, s.cfg.QueueSize, s.cfg.MaxQueuedBytes, s.cfg.OrderPerSender, s.runJob)
	}
	s.ctx, s.cancel = context.WithCancel(context.WithValue(context.Background(), sessionKey{}, s))
	s.w = xstream.NewWriter(conn, 0, set.WriteTimeout)
	s.rd.flush = s.flushBeforeRead
	if set.ReadTimeout > 0 {
		s.rd.timeout = set.ReadTimeout
		s.rd.margin = set.ReadTimeout / 16
	}
	go s.run()
	return s, nil
}

// Start starts reading and dispatching stanzas. It is idempotent, and does
// nothing once the link has ended.
func (s *Session) Start() {
	s.startOnce.Do(func() {
		go s.readLoop()
		s.log.Info("component link up")
	})
}

type sessionKey struct{}

// SessionFromContext returns the session whose handler received ctx, so
// that handlers shared by many sessions can send on the right one.
func SessionFromContext(ctx context.Context) (*Session, bool) {
	if ctx == nil {
		return nil, false
	}
	s, ok := ctx.Value(sessionKey{}).(*Session)
	return s, ok
}

// Addr returns the component address (for example cb1.example.com).
func (s *Session) Addr() jid.JID { return s.cfg.addr }

// Done is closed once the link has ended and all the session's goroutines
// have exited (see Session for the handlers that are not waited for).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the link ended: ErrClosed after Close or Abort, a
// *StreamError, ErrPeerClosed, an error wrapping ErrTimeout, or a network
// error. It returns nil while the link is up.
func (s *Session) Err() error {
	select {
	case <-s.quit:
	default:
		return nil
	}
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Wait blocks until the link has ended or ctx ends, and returns Err (or
// ctx's error).
func (s *Session) Wait(ctx context.Context) error {
	if ctx == nil {
		return ErrNilContext
	}
	select {
	case <-s.done:
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() Stats {
	var queued, running int
	if s.pool != nil {
		queued, running = s.pool.depth()
	}
	return Stats{
		Queued:        queued,
		Running:       running,
		StanzasIn:     s.stats.in.Load(),
		StanzasOut:    s.stats.out.Load(),
		KeepalivesIn:  s.stats.keepalivesIn.Load(),
		KeepalivesOut: s.stats.keepalivesOut.Load(),
		PingsAnswered: s.stats.pingsAnswered.Load(),
		PingsSent:     s.stats.pingsSent.Load(),
		HandlerErrors: s.stats.handlerErrors.Load(),
		HandlerPanics: s.stats.handlerPanics.Load(),
		Dropped:       s.stats.dropped.Load(),
		Shed:          s.stats.shed.Load(),
		Refused:       s.stats.refused.Load(),
		Unanswered:    s.stats.unanswered.Load(),
		LastPingRTT:   time.Duration(s.stats.lastRTT.Load()),
		LastWrite:     s.w.LastWrite(),
	}
}
