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

	"github.com/cblink/cblink/internal/xstream"
)

// Session is one authenticated component link. It is safe for concurrent
// use. It starts its goroutines in NewSession and stops all of them before
// Close or Abort returns, or, when the link ends by itself, before Done is
// closed.
type Session struct {
	cfg  settings
	conn net.Conn
	rd   deadlineReader
	dec  *xstream.Decoder
	w    *xstream.Writer
	log  *slog.Logger
	mux  *Mux

	// ctx is given to handlers; it is cancelled as soon as the link starts
	// to end.
	ctx    context.Context
	cancel context.CancelFunc

	quit     chan struct{} // closed by fail
	quitOnce sync.Once
	errMu    sync.Mutex
	err      error
	mode     endMode
	final    []byte // written before the closing tag (a local stream error)

	readerDone chan struct{}
	done       chan struct{}
	workers    sync.WaitGroup
	queues     []*workQueue

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
	// endGraceful: send </stream:stream>, wait for the server's, close.
	endGraceful endMode = iota
	// endReply: the server ended the stream; answer with our closing tag.
	endReply
	// endAbort: close the connection at once.
	endAbort
)

type counters struct {
	in, out, keepalivesIn, keepalivesOut, pingsAnswered atomic.Uint64
	pingsSent, handlerErrors, handlerPanics, dropped    atomic.Uint64
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
	Dropped       uint64        // stanzas dropped (no handler, bad address, unknown reply)
	LastPingRTT   time.Duration // round trip of the last successful ping, 0 if none
	LastWrite     time.Time     // when the last write to the connection completed
}

// NewSession runs the XEP-0114 handshake on conn, which must be connected
// to the XMPP server's component port (TLS already set up, if any). ctx
// bounds only the handshake (with Config.HandshakeTimeout); once it
// returns, ctx no longer matters: end the session with Close or Abort.
//
// On success the session owns conn and its loops are running. On failure
// conn is closed and the error says why; Classify tells whether a retry
// can help. The secret never appears in errors or logs.
func NewSession(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
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
	}
	s.ctx, s.cancel = context.WithCancel(context.WithValue(context.Background(), sessionKey{}, s))
	s.w = xstream.NewWriter(conn, 0, set.WriteTimeout)
	s.rd.flush = s.flushReplies
	if set.ReadTimeout > 0 {
		s.rd.timeout = set.ReadTimeout
		s.rd.margin = set.ReadTimeout / 16
	}
	if s.mux != nil {
		// Without a Mux nothing reaches a worker: no queues.
		s.startWorkers()
	}
	go s.readLoop()
	go s.run()
	s.log.Info("component link up")
	return s, nil
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
// have exited.
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
	return Stats{
		StanzasIn:     s.stats.in.Load(),
		StanzasOut:    s.stats.out.Load(),
		KeepalivesIn:  s.stats.keepalivesIn.Load(),
		KeepalivesOut: s.stats.keepalivesOut.Load(),
		PingsAnswered: s.stats.pingsAnswered.Load(),
		PingsSent:     s.stats.pingsSent.Load(),
		HandlerErrors: s.stats.handlerErrors.Load(),
		HandlerPanics: s.stats.handlerPanics.Load(),
		Dropped:       s.stats.dropped.Load(),
		LastPingRTT:   time.Duration(s.stats.lastRTT.Load()),
		LastWrite:     s.w.LastWrite(),
	}
}

// Close ends the link gracefully: it sends </stream:stream>, waits up to
// Config.CloseTimeout for the server's closing tag, closes the connection
// and waits for the session's goroutines, handlers included (a handler
// must therefore not call Close itself; it may call Abort from another
// goroutine or simply return). It is idempotent and safe from any
// goroutine; once the link has ended it only waits. It returns nil.
func (s *Session) Close() error {
	s.fail(ErrClosed, endGraceful, nil)
	<-s.done
	return nil
}

// Abort ends the link at once without the closing handshake (for a
// supervisor that has given up on it) and waits like Close.
func (s *Session) Abort() {
	s.fail(ErrClosed, endAbort, nil)
	<-s.done
}

// fail records why the link ends (the first reason wins) and starts the
// teardown; it never blocks.
func (s *Session) fail(err error, mode endMode, final []byte) {
	s.quitOnce.Do(func() {
		s.errMu.Lock()
		s.err, s.mode, s.final = err, mode, final
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
// writer failures, and the teardown.
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
			if since := time.Since(s.w.LastWrite()); since < idle {
				kaTimer.Reset(idle - since)
				continue
			}
			if err := s.w.Write(s.ctx, []byte(" ")); err == nil {
				s.stats.keepalivesOut.Add(1)
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
			pingRes, pingID, pingStart = p.ch, id, time.Now()
			if err := s.writeIQ(s.ctx, id, "get", s.cfg.addrStr, s.cfg.serverAddr, pingPayload); err != nil {
				s.unregister(pingID)
				pingRes = nil
				continue
			}
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
			s.fail(fmt.Errorf("component: ping to %s unanswered after %v: %w", s.cfg.serverAddr, s.cfg.PingTimeout, ErrTimeout), endAbort, nil)
		}
	}
}

// teardown takes the link down after fail and waits for every goroutine.
func (s *Session) teardown() {
	s.errMu.Lock()
	mode, final := s.mode, s.final
	s.errMu.Unlock()
	s.failPending(s.downErr())
	switch mode {
	case endAbort:
		s.w.Abort(s.Err())
	default:
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
		_ = s.w.Close(ctx, append(final, xstream.StreamEnd...))
		if mode == endGraceful {
			// Wait for the server's closing tag (the reader returns).
			select {
			case <-s.readerDone:
			case <-ctx.Done():
			}
		}
		cancel()
	}
	s.conn.Close()
	<-s.readerDone
	<-s.w.Done()
	for _, q := range s.queues {
		close(q.ch)
	}
	s.workers.Wait()
	s.log.Debug("component session ended")
	close(s.done)
}

// deadlineReader moves the read deadline forward as data is read, so that
// a silent server is noticed after ReadTimeout without a timer or a
// syscall per stanza: the deadline is refreshed at most every margin.
type deadlineReader struct {
	conn    net.Conn
	flush   func()        // called before blocking, to send the replies batched so far
	timeout time.Duration // 0: no deadline (handshake, or disabled)
	margin  time.Duration
	last    time.Time
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
	return r.conn.Read(p)
}

// flushReplies queues the reader's batched replies (reader goroutine only).
func (s *Session) flushReplies() {
	if len(s.rbatch) == 0 {
		return
	}
	err := s.w.Append(s.ctx, func(b []byte) []byte { return append(b, s.rbatch...) })
	if err == nil {
		s.stats.out.Add(s.rcount)
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
		s.stats.in.Add(1)
		if !s.route(&el) {
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
