package component

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/closing"
	"github.com/cblink/cblink/internal/xstream"
)

// Session is one authenticated component link. It is safe for concurrent
// use.
//
// # Ownership
//
// A Session owns its connection and every goroutine it starts: the reader,
// the writer, the housekeeping loop (keepalives, pings, teardown) and the
// handler workers. Handshake starts the writer and the housekeeping loop,
// Start the reader; workers start as stanzas arrive. Close, Shutdown and
// Abort stop all of them and return only once they have exited; when the
// link ends by itself, Done is closed once they have. The one exception is
// a handler that ignores its cancelled context: nothing can stop it, so
// the teardown stops waiting for it after Config.CloseTimeout (its request
// has been answered by then), logs it, and lets its worker exit when it
// returns. A handler that calls Close, Shutdown or Abort on its own
// session is not waited for either: the call returns once everything else
// has stopped.
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
type Session struct {
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
	errMu    sync.Mutex
	err      error
	mode     endMode
	final    []byte // written before the closing tag (a local stream error)
	cutJobs  []*job // taken out of the queue by fail, answered by the teardown

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
	// the stream.
	replyMu       sync.RWMutex
	repliesClosed bool

	pmu      sync.Mutex
	pending  map[string]*pendingIQ
	pendErr  error // set when pending requests were failed at the end
	idPrefix string
	idSeq    atomic.Uint64

	// Replies the reader writes itself (pings, errors) are batched here and
	// queued in one Append when the reader is about to read again, so a
	// burst of requests read at once is answered in one write.
	rbatch []byte
	rcount uint64

	stats counters
}

// endMode says how the link is taken down.
type endMode uint8

const (
	// endGraceful: answer what is unanswered, send </stream:stream>, wait
	// for the server's, close.
	endGraceful endMode = iota
	// endReply: the server ended the stream; answer with our closing tag.
	endReply
	// endAbort: close the connection at once.
	endAbort
)

type counters struct {
	in, out, keepalivesIn, keepalivesOut, pingsAnswered atomic.Uint64
	pingsSent, handlerErrors, handlerPanics, dropped    atomic.Uint64
	shed, refused                                       atomic.Uint64
	lastRTT                                             atomic.Int64
}

// Stats is a snapshot of a session's counters.
type Stats struct {
	StanzasIn     uint64        // stanzas read (keepalives excluded)
	StanzasOut    uint64        // stanzas queued for writing
	KeepalivesIn  uint64        // whitespace keepalives read
	KeepalivesOut uint64        // whitespace keepalives sent
	PingsAnswered uint64        // XEP-0199 pings from the server answered
	PingsSent     uint64        // XEP-0199 pings sent (Ping and PingInterval)
	HandlerErrors uint64        // handler errors answered with a stanza error
	HandlerPanics uint64        // handler panics recovered
	Dropped       uint64        // stanzas dropped (no handler, bad address, unknown reply, no room)
	Shed          uint64        // requests answered resource-constraint: the queue was full
	Refused       uint64        // requests answered service-unavailable: the session was closing
	Queued        int           // stanzas waiting for a worker now
	Running       int           // handlers running now
	LastPingRTT   time.Duration // round trip of the last successful ping, 0 if none
	LastWrite     time.Time     // when the last write to the connection completed
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
	set, err := cfg.resolve()
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Session{
		cfg:        set,
		conn:       conn,
		log:        set.Logger.With(slog.String("component", set.addrStr)),
		mux:        set.Handler,
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
		pending:    make(map[string]*pendingIQ),
	}
	s.rd.conn = conn
	s.dec = xstream.NewDecoder(&s.rd, set.MaxStanzaSize, set.MaxDepth)
	enableTCPKeepalive(conn)
	if err := s.handshake(ctx); err != nil {
		conn.Close()
		s.log.Warn("component handshake failed", slog.Any("error", err))
		return nil, err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	s.idPrefix = hex.EncodeToString(rnd[:]) + "-"
	if s.mux != nil {
		s.mux.freeze()
		// Without a Mux nothing reaches a worker: no pool.
		if s.cfg.OrderPerSender {
			// One lane of one worker per slot: same sender, same worker.
			n := s.cfg.Workers
			s.pool = newPool(n, max(1, s.cfg.QueueSize/n), s.cfg.MaxQueuedBytes, 1, s.mux, s.runJob)
		} else {
			s.pool = newPool(1, s.cfg.QueueSize, s.cfg.MaxQueuedBytes, s.cfg.Workers, s.mux, s.runJob)
		}
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
		LastPingRTT:   time.Duration(s.stats.lastRTT.Load()),
		LastWrite:     s.w.LastWrite(),
	}
}

// Close ends the link at once but cleanly: handlers' contexts are
// cancelled, every request still queued or running is answered with
// service-unavailable, </stream:stream> is sent, and Close waits up to
// Config.CloseTimeout for the server's closing tag (a server that stopped
// reading cannot hold it longer), closes the connection and waits for the
// session's goroutines, handlers included (see Session for the two
// exceptions). It is idempotent and safe from any goroutine, handlers
// included; once the link has ended it only waits. It returns nil.
func (s *Session) Close() error {
	leave := closing.Enter(s.mux)
	defer leave()
	s.fail(ErrClosed, endGraceful, nil)
	<-s.done
	return nil
}

// Shutdown ends the link gracefully: it stops taking new requests (they
// are answered with service-unavailable, and new messages and presences
// are dropped), lets the queued and running ones finish with their normal
// context, and then closes as Close does. When ctx ends first, the
// handlers' contexts are cancelled and what is left is answered with
// service-unavailable; Shutdown then returns ctx's error once the link is
// closed. Replies to the session's own IQ requests keep being delivered
// while it drains, so handlers may still use SendIQ. Like Close it may be
// called from a handler.
func (s *Session) Shutdown(ctx context.Context) error {
	leave := closing.Enter(s.mux)
	defer leave()
	var err error
	if s.pool != nil {
		err = s.pool.drain(ctx, s.quit)
	}
	s.fail(ErrClosed, endGraceful, nil)
	<-s.done
	return err
}

// Abort ends the link at once without the closing handshake (for a
// supervisor that has given up on it): nothing more is written, and it
// waits like Close.
func (s *Session) Abort() {
	leave := closing.Enter(s.mux)
	defer leave()
	s.fail(ErrClosed, endAbort, nil)
	<-s.done
}

// fail records why the link ends (the first reason wins) and starts the
// teardown; it never blocks.
func (s *Session) fail(err error, mode endMode, final []byte) {
	s.quitOnce.Do(func() {
		// Take the queued work out first: no handler may start once the
		// link is ending (the teardown answers these).
		var queued []*job
		if s.pool != nil {
			queued = s.pool.cut()
		}
		s.errMu.Lock()
		s.err, s.mode, s.final, s.cutJobs = err, mode, final, queued
		s.errMu.Unlock()
		close(s.quit)
		s.cancel()
		if err != ErrClosed {
			s.log.Warn("component link down", slog.Any("error", err))
		}
	})
}

func (s *Session) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// downErr is what sends and pending requests get once the link has ended.
func (s *Session) downErr() error {
	err := s.Err()
	if err == nil || errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, err)
}

// run is the session's housekeeping goroutine: keepalives, pings,
// writer failures, and the teardown. It never waits for room in the write
// queue: keepalives and pings bypass its bound, so a ping times out on
// schedule even while a server that stopped reading holds the queue full.
func (s *Session) run() {
	defer s.teardown()
	var kaC, pingC, pingTO <-chan time.Time
	var kaTimer *time.Timer
	if d := s.cfg.KeepaliveIdle; d > 0 {
		kaTimer = time.NewTimer(d)
		defer kaTimer.Stop()
		kaC = kaTimer.C
	}
	if d := s.cfg.PingInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		pingC = t.C
	}
	var (
		pingRes   chan iqResult
		pingID    string
		pingStart time.Time
		pingReads uint64 // reads from the server when the ping was sent
		pingTimer *time.Timer
	)
	defer func() {
		if pingTimer != nil {
			pingTimer.Stop()
		}
	}()
	writerDone := s.w.Done()
	for {
		select {
		case <-s.quit:
			return
		case <-writerDone:
			writerDone = nil
			s.fail(fmt.Errorf("component: write to the server: %w", s.w.Err()), endAbort, nil)
		case <-kaC:
			idle := s.cfg.KeepaliveIdle
			if since := time.Since(s.w.LastWrite()); since < idle || s.w.Pending() > 0 {
				kaTimer.Reset(max(idle-since, idle/4))
				continue
			}
			// Counted first: the peer may see the space before this
			// goroutine runs again.
			s.stats.keepalivesOut.Add(1)
			if err := s.w.AppendControl(func(b []byte) []byte { return append(b, ' ') }); err != nil {
				s.stats.keepalivesOut.Add(^uint64(0))
			}
			kaTimer.Reset(idle)
		case <-pingC:
			if pingRes != nil {
				continue // the previous ping is still out; its timeout runs
			}
			id := s.nextID()
			p, err := s.register(id, s.cfg.serverAddr)
			if err != nil {
				continue
			}
			pingRes, pingID, pingStart, pingReads = p.ch, id, time.Now(), s.rd.reads.Load()
			err = s.w.AppendControl(func(b []byte) []byte {
				return appendStanza(b, KindIQ, "get", id, s.cfg.addrStr, s.cfg.serverAddr, pingPayload)
			})
			if err != nil {
				s.unregister(pingID)
				pingRes = nil
				continue
			}
			s.stats.out.Add(1)
			s.stats.pingsSent.Add(1)
			pingTimer = time.NewTimer(s.cfg.PingTimeout)
			pingTO = pingTimer.C
		case r := <-pingRes:
			pingRes, pingTO = nil, nil
			pingTimer.Stop()
			if r.err != nil {
				continue // the link is ending; quit follows
			}
			s.stats.lastRTT.Store(int64(time.Since(pingStart)))
		case <-pingTO:
			s.unregister(pingID)
			pingRes, pingTO = nil, nil
			if s.rd.reads.Load() != pingReads {
				// The pong has not come, but the server has sent
				// something since the ping: it is alive (its pong may
				// wait behind what it is sending). Liveness measures the
				// server, not this side's backlog.
				s.log.Debug("ping unanswered in time, but the server is sending: alive", slog.Duration("timeout", s.cfg.PingTimeout))
				continue
			}
			s.fail(fmt.Errorf("component: ping to %s unanswered after %v, nothing read meanwhile: %w", s.cfg.serverAddr, s.cfg.PingTimeout, ErrTimeout), endAbort, nil)
		}
	}
}

// teardown takes the link down after fail and waits for every goroutine,
// all within Config.CloseTimeout (but for a handler that ignores its
// context, which is logged and left behind).
func (s *Session) teardown() {
	s.errMu.Lock()
	mode, final, queued := s.mode, s.final, s.cutJobs
	s.cutJobs = nil
	s.errMu.Unlock()
	s.failPending(s.downErr())
	closeCtx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()

	// Answer once every request that has no reply yet, while the stream
	// can carry one, then seal it. First wait for the reader to be between
	// stanzas and queue the replies it has batched; then answer the
	// requests fail took out of the queue and those whose handlers are
	// still running.
	s.routeMu.Lock()
	if mode == endGraceful {
		s.flushRepliesCtx(closeCtx)
	}
	s.replyMu.Lock()
	var running []*job
	if s.pool != nil {
		running = s.pool.running()
	}
	s.repliesClosed = true
	if mode == endGraceful {
		for _, j := range queued {
			s.refuseJob(closeCtx, j)
		}
		for _, j := range running {
			if !j.answered {
				s.refuseJob(closeCtx, j)
			}
		}
	} else {
		// The server ended the stream or the connection failed: what was
		// queued cannot be answered.
		s.stats.dropped.Add(uint64(len(queued)))
	}
	if mode != endAbort {
		s.w.Seal(append(final, xstream.StreamEnd...))
	}
	s.replyMu.Unlock()
	s.routeMu.Unlock()

	s.startOnce.Do(func() { close(s.readerDone) }) // never started: nothing to read
	clean := false
	if mode == endAbort {
		s.w.Abort(s.Err())
	} else {
		clean = s.w.Close(closeCtx, nil) == nil
		if mode == endGraceful && clean {
			// Wait for the server's closing tag (the reader returns).
			select {
			case <-s.readerDone:
			case <-closeCtx.Done():
			}
		}
	}
	s.closeConn(clean)
	<-s.readerDone
	<-s.w.Done()
	if s.pool != nil {
		for _, j := range s.pool.stop(closeCtx.Done()) {
			s.log.Error("handler still running after its context was cancelled; leaving it behind",
				slog.String("payload", j.st.payloadNS+" "+j.st.payloadName),
				slog.String("from", j.from), slog.String("id", j.id), slog.Duration("waited", s.cfg.CloseTimeout))
		}
	}
	s.log.Debug("component session ended")
	close(s.done)
}

// refuseJob answers a request that will not run (or whose handler is
// still running when the stream closes) with service-unavailable.
// s.replyMu is held.
func (s *Session) refuseJob(ctx context.Context, j *job) {
	if j.iq == nil {
		s.stats.dropped.Add(1)
		return
	}
	err := s.w.Append(ctx, func(b []byte) []byte { return s.appendErrorReply(b, j, errClosing) })
	if err == nil {
		j.answered = true
		s.stats.out.Add(1)
		s.stats.refused.Add(1)
	}
}

// errClosing answers requests that arrive, or are still waiting, while the
// session closes: the service may be back (on this or another link) soon.
var errClosing = stanza.Error{Type: stanza.Wait, Condition: stanza.ServiceUnavailable}

// closeConn closes the connection. After a clean close the TLS layer sends
// its close_notify; otherwise the transport is closed directly, since
// close_notify would wait up to 5 seconds for a peer that stopped reading.
func (s *Session) closeConn(clean bool) {
	if !clean {
		if nc, ok := s.conn.(interface{ NetConn() net.Conn }); ok {
			_ = nc.NetConn().Close()
		}
	}
	_ = s.conn.Close()
}

// deadlineReader moves the read deadline forward as data is read, so that
// a silent server is noticed after ReadTimeout without a timer or a
// syscall per stanza: the deadline is refreshed at most every margin. It
// also counts reads, which prove the server alive.
type deadlineReader struct {
	conn    net.Conn
	flush   func()        // called before blocking, to send the replies batched so far
	timeout time.Duration // 0: no deadline (handshake, or disabled)
	margin  time.Duration
	last    time.Time
	reads   atomic.Uint64 // reads that returned data
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	if r.flush != nil {
		r.flush()
	}
	if r.timeout > 0 {
		if now := time.Now(); now.Sub(r.last) >= r.margin {
			_ = r.conn.SetReadDeadline(now.Add(r.timeout + r.margin))
			r.last = now
		}
	}
	n, err := r.conn.Read(p)
	if n > 0 {
		r.reads.Add(1)
	}
	return n, err
}

// flushReplies queues the reader's batched replies; s.routeMu is held.
func (s *Session) flushReplies() { s.flushRepliesCtx(s.ctx) }

// flushBeforeRead flushes the reply batch before the reader blocks.
func (s *Session) flushBeforeRead() {
	s.routeMu.Lock()
	s.flushReplies()
	s.routeMu.Unlock()
}

func (s *Session) flushRepliesCtx(ctx context.Context) {
	if len(s.rbatch) == 0 {
		return
	}
	err := s.w.Append(ctx, func(b []byte) []byte { return append(b, s.rbatch...) })
	if err == nil {
		s.stats.out.Add(s.rcount)
	} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The wait for room was cut short (the link is closing), but the
		// stream can still carry these replies: keep them for the
		// teardown, which queues them before its closing tag.
		return
	}
	s.rbatch, s.rcount = s.rbatch[:0], 0
	if cap(s.rbatch) > maxReplyBatch {
		s.rbatch = nil
	}
}

// maxReplyBatch bounds the reader's reply batch.
const maxReplyBatch = 64 << 10

// readLoop reads and routes stanzas until the link ends.
func (s *Session) readLoop() {
	defer close(s.readerDone)
	for {
		el, err := s.dec.Next()
		if err != nil {
			s.readFailed(err)
			return
		}
		if el.Keepalive {
			s.stats.keepalivesIn.Add(1)
			continue
		}
		s.routeMu.Lock()
		s.stats.in.Add(1)
		ok := s.route(&el)
		s.routeMu.Unlock()
		if !ok {
			return
		}
	}
}

func (s *Session) readFailed(err error) {
	if s.closed() {
		return // we are closing: this is the server's end tag or our conn.Close
	}
	switch {
	case errors.Is(err, xstream.ErrStreamEnd):
		s.fail(ErrPeerClosed, endReply, nil)
	case s.localStreamError(err) != nil:
		se := s.localStreamError(err)
		s.fail(se, endReply, xstream.AppendStreamError(nil, se.Err.Err, "", ""))
	case isTimeout(err) && s.rd.timeout > 0:
		s.fail(fmt.Errorf("component: nothing read from the server for %v: %w", s.rd.timeout, ErrTimeout), endAbort, nil)
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.fail(fmt.Errorf("component: the server dropped the connection: %w", err), endAbort, nil)
	default:
		s.fail(fmt.Errorf("component: read from the server: %w", err), endAbort, nil)
	}
}
