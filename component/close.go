package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/cblink/cblink/internal/xstream"
)

// Close ends the link at once but cleanly: handlers' contexts are
// cancelled, every request still queued or running is answered with
// service-unavailable (type wait), </stream:stream> is sent, and Close
// waits up to Config.CloseTimeout for the server's closing tag (a server
// that stopped reading cannot hold it longer), closes the connection and
// waits for the session's goroutines, handlers included, up to
// CloseTimeout after the close began (see Session). It is idempotent and
// safe from any goroutine; once the link has ended it only waits. It
// returns nil.
//
// Close waits for every handler, so a handler that calls Close on its own
// session waits for itself until CloseTimeout (and is logged as a handler
// that ignored its context). From a handler, call Shutdown with the
// handler's ctx instead, or Close on another goroutine (go s.Close()).
func (s *Session) Close() error {
	s.fail(ErrClosed, endGraceful, nil)
	<-s.done
	return nil
}

// Shutdown ends the link gracefully, as net/http's Server.Shutdown does:
// it stops taking new requests (they are answered with
// service-unavailable, and new messages and presences are dropped), lets
// the queued and running ones finish with their normal context, and then
// closes as Close does. When ctx ends first, the handlers' contexts are
// cancelled and what is left is answered with service-unavailable;
// Shutdown then returns ctx's error once the link is closed. Replies to
// the session's own IQ requests keep being delivered while it drains, so
// handlers may still use SendIQ.
//
// Called with a handler's ctx, or a context derived from it (on any
// goroutine), Shutdown does not wait for that handler's request, nor for
// requests of the same sender waiting behind it (OrderPerSender; they are
// answered service-unavailable): a handler may stop its own session with
// s.Shutdown(ctx). With any other ctx, a handler's own Shutdown waits for
// itself until ctx ends.
func (s *Session) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return ErrNilContext
	}
	var err error
	if s.pool != nil {
		if j, ok := ctx.Value(jobKey{}).(*job); ok && j.pool == s.pool {
			s.pool.exempt(j)
		}
		err = s.pool.drain(ctx, s.quit)
	}
	s.fail(ErrClosed, endGraceful, nil)
	<-s.done
	return err
}

// StopAccepting makes the session refuse new requests from now on, as
// Shutdown does first (they are answered service-unavailable, type wait;
// new messages and presences are dropped), without waiting for anything:
// the requests already taken go on. A supervisor calls it to stop taking
// requests before it says so (a state, a readiness check), then Shutdown.
// It is idempotent.
func (s *Session) StopAccepting() {
	if s.pool != nil {
		s.pool.refuse()
	}
}

// Abort ends the link at once without the closing handshake (for a
// supervisor that has given up on it): nothing more is written, and it
// waits like Close.
func (s *Session) Abort() {
	s.fail(ErrClosed, endAbort, nil)
	<-s.done
}

// fail records why the link ends (the first reason wins) and starts the
// teardown; it never blocks.
func (s *Session) fail(err error, mode endMode, final []byte) {
	s.quitOnce.Do(func() {
		s.StopAccepting() // no request is admitted once the link starts to end
		s.errMu.Lock()
		s.err, s.mode, s.final = err, mode, final
		s.errMu.Unlock()
		close(s.quit)
		s.cancel()
		if err != ErrClosed {
			s.log.Warn("component link down", slog.Any("err", err))
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

// teardown takes the link down after fail and waits for every goroutine,
// all within Config.CloseTimeout (but for a handler that ignores its
// context, which is logged and left behind).
func (s *Session) teardown() {
	s.errMu.Lock()
	mode, final := s.mode, s.final
	s.errMu.Unlock()
	s.failPending(s.downErr())
	closeCtx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()

	// Answer once every request that has no reply yet, while the stream
	// can carry one, then seal it. First wait for the reader to be between
	// stanzas and queue the replies it has batched; then answer the
	// requests waiting behind their sender's (no handler starts once the
	// link is ending: runJob checks) and those whose handlers run or
	// returned without their answer out.
	s.routeMu.Lock()
	if mode != endAbort { // the stream can still carry them: before our closing tag
		s.flushRepliesCtx(closeCtx)
	}
	s.replyMu.Lock()
	var queued, unsettled []*job
	if s.pool != nil {
		queued = s.pool.cut()
		unsettled = s.pool.unsettled()
	}
	s.repliesClosed = true
	if mode == endGraceful {
		for _, j := range queued {
			s.refuseJob(closeCtx, j)
		}
		for _, j := range unsettled {
			// A message or presence taken is its handler's (or, not yet
			// started, dropped by runJob): only requests are answered.
			if j.iq != nil && !j.answered {
				s.refuseJob(closeCtx, j)
			}
		}
	} else {
		// The server ended the stream or the connection failed: what was
		// queued cannot be answered, nor what runs: requests are counted
		// unanswered (once: answered settles them), the rest dropped.
		for _, j := range queued {
			if j.iq == nil {
				s.stats.dropped.Add(1)
			}
		}
		for _, j := range append(queued, unsettled...) {
			if j.iq != nil && !j.answered {
				j.answered = true
				s.stats.unanswered.Add(1)
			}
		}
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
	// Replies the reader batched after the flush above (requests read
	// after our closing tag), or kept when that flush ran out of time, can
	// no longer go.
	s.routeMu.Lock()
	s.stats.unanswered.Add(s.rcount)
	s.dropBatch()
	s.routeMu.Unlock()
	if n := s.stats.unanswered.Load(); n > 0 {
		s.log.Warn("requests left unanswered: the stream could no longer carry an answer",
			slog.Uint64("unanswered", n), slog.String("why", unansweredWhy(mode)))
	}
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

// unansweredWhy says why requests went unanswered on a link that ended
// in mode.
func unansweredWhy(mode endMode) string {
	if mode == endGraceful {
		return "they arrived after this side closed the stream (the server may bounce them), or the server stopped reading"
	}
	return "the server ended the stream, or the connection failed, before their answers"
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
	j.answered = true // settled either way
	if err != nil {
		// The writer failed, or the server did not read for CloseTimeout.
		s.stats.unanswered.Add(1)
		return
	}
	s.stats.out.Add(1)
	s.stats.refused.Add(1)
}

// errClosing answers requests that arrive, or are still waiting, while the
// session closes: the service may be back (on this or another link) soon.
var errClosing = ErrRetryLater

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
