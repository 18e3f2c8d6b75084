package xstream

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ErrWriterClosed is returned by a Writer after Close or Abort.
var ErrWriterClosed = errors.New("xstream: writer closed")

// Default bounds of a Writer.
const (
	DefaultMaxPending   = 1 << 20
	DefaultWriteTimeout = 30 * time.Second
)

// deadliner is the part of net.Conn the writer uses to bound each write.
type deadliner interface {
	SetWriteDeadline(time.Time) error
}

// Writer is the send side of a stream: callers append encoded stanzas to a
// queue and one goroutine drains the queue into the connection, writing all
// that is queued in one call. Stanzas queued together therefore leave
// together (one TLS record and one syscall for many), and nothing waits for
// a timer. It is safe for concurrent use.
type Writer struct {
	w            io.Writer
	maxPending   int
	writeTimeout time.Duration

	mu      sync.Mutex
	pend    []byte
	err     error         // sticky: first write error, or ErrWriterClosed
	closing bool          // no more Appends; drain then stop
	drained chan struct{} // closed when pend is taken; nil until someone waits
	wake    chan struct{}
	done    chan struct{}

	lastWrite atomic.Int64 // unix nanoseconds of the last completed write
	aborted   atomic.Bool  // Abort was called
}

// NewWriter starts a Writer on w. maxPending bounds the queued bytes (a
// sender waits while the queue is full); writeTimeout bounds each write when
// w has SetWriteDeadline. Values <= 0 select the defaults.
func NewWriter(w io.Writer, maxPending int, writeTimeout time.Duration) *Writer {
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	wr := &Writer{
		w:            w,
		maxPending:   maxPending,
		writeTimeout: writeTimeout,
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	wr.lastWrite.Store(time.Now().UnixNano())
	go wr.loop()
	return wr
}

// Append queues what encode appends to the queue. encode runs under the
// writer's lock: it must only append bytes and return. Append waits while
// the queue is over its bound, until ctx ends or the writer fails.
func (w *Writer) Append(ctx context.Context, encode func([]byte) []byte) error {
	w.mu.Lock()
	for w.err == nil && !w.closing && len(w.pend) >= w.maxPending {
		if w.drained == nil {
			w.drained = make(chan struct{})
		}
		ch := w.drained
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.done:
		}
		w.mu.Lock()
	}
	return w.appendLocked(encode)
}

// appendLocked queues what encode appends; w.mu is held, and released.
func (w *Writer) appendLocked(encode func([]byte) []byte) error {
	if err := w.errLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	wasEmpty := len(w.pend) == 0
	w.pend = encode(w.pend)
	w.mu.Unlock()
	if wasEmpty {
		w.signal()
	}
	return nil
}

// Write queues a copy of p.
func (w *Writer) Write(ctx context.Context, p []byte) error {
	return w.Append(ctx, func(b []byte) []byte { return append(b, p...) })
}

// AppendControl queues what encode appends without waiting for room: it is
// for small control stanzas (keepalives, liveness pings) that must go out,
// or at least be timed, even while the queue is over its bound. It fails
// only once the writer has stopped or is closing.
func (w *Writer) AppendControl(encode func([]byte) []byte) error {
	w.mu.Lock()
	return w.appendLocked(encode)
}

// Pending returns the number of bytes queued and not yet handed to the
// connection.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pend)
}

func (w *Writer) errLocked() error {
	if w.err != nil {
		return w.err
	}
	if w.closing {
		return ErrWriterClosed
	}
	return nil
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Err returns the error that stopped the writer, or nil while it runs.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Done is closed when the writer's goroutine has exited.
func (w *Writer) Done() <-chan struct{} { return w.done }

// LastWrite returns when the last write to the connection completed.
func (w *Writer) LastWrite() time.Time { return time.Unix(0, w.lastWrite.Load()) }

// Close queues final (it may be nil), lets the queue drain, and waits until
// the goroutine exits or ctx ends; when ctx ends first it aborts, which
// also interrupts a write blocked on a peer that stopped reading, so Close
// returns soon after ctx ends whatever the peer does. Later Appends fail
// with ErrWriterClosed. It returns the write error, if any.
func (w *Writer) Close(ctx context.Context, final []byte) error {
	w.Seal(final)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.Abort(ctx.Err())
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == ErrWriterClosed {
		return nil
	}
	return w.err
}

// Seal queues final (it may be nil) as the last bytes: later Appends fail
// with ErrWriterClosed while what is queued drains. It does not wait; Close
// does. Sealing twice keeps the first final.
func (w *Writer) Seal(final []byte) {
	w.mu.Lock()
	if w.err == nil && !w.closing {
		w.pend = append(w.pend, final...)
		w.closing = true
	}
	w.mu.Unlock()
	w.signal()
}

// Abort stops the writer at once, dropping what is queued. When the
// underlying writer has SetWriteDeadline, a write in progress is
// interrupted too (its deadline is moved to the past); otherwise it ends
// when the caller closes the connection. Abort does not wait for the
// goroutine.
func (w *Writer) Abort(cause error) {
	if cause == nil {
		cause = ErrWriterClosed
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = cause
	}
	w.pend = w.pend[:0]
	if w.drained != nil {
		close(w.drained)
		w.drained = nil
	}
	w.mu.Unlock()
	// Interrupt a write in progress. The loop checks aborted after setting
	// each write's deadline, so whichever runs last, the write ends.
	w.aborted.Store(true)
	if dl, ok := w.w.(deadliner); ok {
		_ = dl.SetWriteDeadline(time.Unix(1, 0))
	}
	w.signal()
}

func (w *Writer) loop() {
	defer close(w.done)
	var out []byte
	dl, hasDeadline := w.w.(deadliner)
	for {
		w.mu.Lock()
		for len(w.pend) == 0 && w.err == nil && !w.closing {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if w.err != nil || (len(w.pend) == 0 && w.closing) {
			if w.err == nil {
				w.err = ErrWriterClosed
			}
			if w.drained != nil {
				close(w.drained)
				w.drained = nil
			}
			w.mu.Unlock()
			return
		}
		out, w.pend = w.pend, out[:0]
		if w.drained != nil {
			close(w.drained)
			w.drained = nil
		}
		w.mu.Unlock()
		if hasDeadline {
			_ = dl.SetWriteDeadline(time.Now().Add(w.writeTimeout))
			if w.aborted.Load() {
				// Abort ran meanwhile and its deadline may have been
				// overwritten: interrupt this write after all.
				_ = dl.SetWriteDeadline(time.Unix(1, 0))
			}
		}

		_, err := w.w.Write(out)
		if err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
			continue
		}
		w.lastWrite.Store(time.Now().UnixNano())
		// Don't keep a huge buffer alive after a burst.
		if cap(out) > 4*w.maxPending {
			out = nil
		}
	}
}
