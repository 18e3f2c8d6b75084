package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/cblink/cblink/internal/xstream"
)

// deadlineReader moves the read deadline forward as data is read, so that
// a silent server is noticed after ReadTimeout without a timer or a
// syscall per stanza: the deadline is refreshed at most every margin. It
// also counts reads, which prove the server alive.
type deadlineReader struct {
	conn    net.Conn
	flush   func(full bool) // called before each read, to send the replies batched so far
	timeout time.Duration   // 0: no deadline (handshake, or disabled)
	margin  time.Duration
	last    time.Time
	full    bool          // the last read filled its buffer: more is probably waiting
	reads   atomic.Uint64 // reads that returned data
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	if r.flush != nil {
		r.flush(r.full)
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
	r.full = n == len(p)
	return n, err
}

// flushReplies queues the reader's batched replies; s.routeMu is held.
func (s *Session) flushReplies() { s.flushRepliesCtx(s.ctx) }

// flushBeforeRead sends the reply batch before the reader reads again.
// The batch is queued under routeMu, as every flush is (the teardown
// answers what the reader routed before it seals the stream). When the
// last read filled its buffer (full), the next one probably returns more
// at once: the writer's goroutine is woken, as for any Append, and writes
// what is queued when it runs, with what the reader adds meanwhile.
// Otherwise the reader is probably about to block, and it writes the
// queue itself once routeMu is released, unless a write is in progress:
// this saves a hand-off between goroutines per batch. That write is the
// writer's (Writer.Flush): bounded by WriteTimeout, interrupted by Abort,
// and a failure of it ends the link as any write error does.
func (s *Session) flushBeforeRead(full bool) {
	s.routeMu.Lock()
	queued := s.queueReplies(s.ctx, !full)
	s.routeMu.Unlock()
	if queued && !full {
		s.w.Flush()
	}
}

func (s *Session) flushRepliesCtx(ctx context.Context) {
	s.queueReplies(ctx, false)
}

// queueReplies queues the reader's batched replies, with AppendDeferred
// when deferred (the caller then calls Flush), and reports whether it
// queued any; s.routeMu is held.
func (s *Session) queueReplies(ctx context.Context, deferred bool) bool {
	if len(s.rbatch) == 0 {
		return false
	}
	var err error
	if deferred {
		err = s.w.AppendDeferred(ctx, s.appendBatch)
	} else {
		err = s.w.Append(ctx, s.appendBatch)
	}
	switch {
	case err == nil:
		s.stats.out.Add(s.rcount)
		s.stats.shed.Add(s.rshed)
		s.stats.refused.Add(s.rrefused)
		s.stats.pingsAnswered.Add(s.rpings)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The wait for room was cut short (the link is closing), but the
		// stream can still carry these replies: keep them for the
		// teardown, which queues them before its closing tag (and counts
		// them unanswered if even that fails).
		return false
	default:
		s.stats.unanswered.Add(s.rcount) // the stream is sealed or broken
	}
	s.dropBatch()
	return err == nil
}

// dropBatch empties the reader's reply batch; s.routeMu is held.
func (s *Session) dropBatch() {
	s.rbatch, s.rcount, s.rshed, s.rrefused, s.rpings = s.rbatch[:0], 0, 0, 0, 0
	if cap(s.rbatch) > maxReplyBatch {
		s.rbatch = nil
	}
}

func (s *Session) appendBatch(b []byte) []byte { return append(b, s.rbatch...) }

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
