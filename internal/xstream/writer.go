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
// a timer. A caller that is about to block anyway (the reader, before it
// reads) may write what it queued itself when that goroutine is idle
// (AppendDeferred, then Flush), which saves waking it. Whoever writes holds
// the connection (busy) and takes the whole queue, so writes never overlap
// and nothing overtakes what was queued before it. It is safe for
// concurrent use.
type Writer struct {
	w            io.Writer
	maxPending   int
	writeTimeout time.Duration

	mu      sync.Mutex
	pend    []byte
	spare   []byte        // the buffer of the last write, for the next queue
	busy    bool          // a write is in progress (the goroutine's or Flush's)
	parked  bool          // the goroutine waits on wake; cleared by whoever wakes it
	err     error         // sticky: first write error, or ErrWriterClosed
	closing bool          // no more Appends; drain then stop
	drained chan struct{} // closed when pend is taken; nil until someone waits
	wake    chan struct{} // wakes the parked goroutine
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
	if err := w.waitRoom(ctx); err != nil {
		return err
	}
	return w.appendLocked(encode, true)
}

// AppendDeferred is Append without waking the writer's goroutine: the
// caller must call Flush next, once it has released the locks it holds
// (Flush may write, which may take up to the write timeout). Until then
// what it queued waits, as does what others queue behind it.
func (w *Writer) AppendDeferred(ctx context.Context, encode func([]byte) []byte) error {
	if err := w.waitRoom(ctx); err != nil {
		return err
	}
	return w.appendLocked(encode, false)
}

// waitRoom waits while the queue is over its bound, and returns with w.mu
// held, or with an error and w.mu released.
func (w *Writer) waitRoom(ctx context.Context) error {
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
	return nil
}

// appendLocked queues what encode appends, and wakes the goroutine if
// wake and it waits for this; w.mu is held, and released. It does not
// wait for this when something was queued already: it was woken for that,
// or AppendDeferred queued it and Flush writes it.
func (w *Writer) appendLocked(encode func([]byte) []byte, wake bool) error {
	if err := w.errLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	wake = wake && len(w.pend) == 0 && w.wakeLocked()
	w.pend = encode(w.pend)
	w.mu.Unlock()
	if wake {
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
	return w.appendLocked(encode, true)
}

// Flush writes what is queued from the calling goroutine, unless a write
// is in progress (the writer then writes it next) or the writer has
// stopped. It returns once its write is done: within the write timeout,
// or sooner when Abort interrupts it. A write error stops the writer as
// one of its goroutine's does (Err, Done). Afterwards it wakes the
// goroutine if something more was queued meanwhile, or the writer is
// closing.
func (w *Writer) Flush() {
	w.mu.Lock()
	if w.busy || w.err != nil || len(w.pend) == 0 {
		w.mu.Unlock()
		return
	}
	out := w.takeLocked()
	w.mu.Unlock()
	if w.write(out) {
		w.signal()
	}
}

// wakeLocked reports whether the goroutine must be woken (signal, once
// w.mu is released) for a change that may give it work: it is parked and
// no write is in progress. During a write, whoever writes looks at the
// queue after it: the goroutine itself, or Flush, which wakes it then.
// w.mu is held.
func (w *Writer) wakeLocked() bool {
	if !w.parked || w.busy {
		return false
	}
	w.parked = false
	return true
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

// signal wakes the goroutine, after wakeLocked. It never blocks: wake
// has room for one wake-up, and wakeLocked grants one per parking.
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
	wake := w.wakeLocked()
	w.mu.Unlock()
	if wake {
		w.signal()
	}
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
	wake := w.wakeLocked()
	w.mu.Unlock()
	// Interrupt a write in progress. The loop checks aborted after setting
	// each write's deadline, so whichever runs last, the write ends.
	w.aborted.Store(true)
	if dl, ok := w.w.(deadliner); ok {
		_ = dl.SetWriteDeadline(time.Unix(1, 0))
	}
	if wake {
		w.signal()
	}
}

func (w *Writer) loop() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for w.busy || (len(w.pend) == 0 && w.err == nil && !w.closing) {
			w.parked = true
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
		out := w.takeLocked()
		w.mu.Unlock()
		w.write(out)
	}
}

// takeLocked marks a write in progress and takes the queue; w.mu is held.
// The caller must write it with write.
func (w *Writer) takeLocked() []byte {
	w.busy = true
	out := w.pend
	w.pend, w.spare = w.spare[:0], nil
	if w.drained != nil {
		close(w.drained)
		w.drained = nil
	}
	return out
}

// write writes out, which takeLocked took, to the connection within the
// write timeout, and ends the write in progress. It reports whether the
// goroutine must be woken (signal): it is parked, and something was queued
// meanwhile, the writer is closing, or it failed.
func (w *Writer) write(out []byte) (wake bool) {
	if dl, ok := w.w.(deadliner); ok {
		_ = dl.SetWriteDeadline(time.Now().Add(w.writeTimeout))
		if w.aborted.Load() {
			// Abort ran meanwhile and its deadline may have been
			// overwritten: interrupt this write after all.
			_ = dl.SetWriteDeadline(time.Unix(1, 0))
		}
	}
	_, err := w.w.Write(out)
	if err == nil {
		w.lastWrite.Store(time.Now().UnixNano())
	}
	// Don't keep a huge buffer alive after a burst.
	if cap(out) > 4*w.maxPending {
		out = nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.busy = false
	w.spare = out[:0]
	if err != nil && w.err == nil {
		w.err = err
	}
	return (len(w.pend) > 0 || w.closing || w.err != nil) && w.wakeLocked()
}
