package xstream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gatedConn records what is written to it. Each write first announces
// what it carries on entered, then waits until release is closed. It
// notes writes that overlap.
type gatedConn struct {
	entered chan string
	release chan struct{}
	active  atomic.Int32
	overlap atomic.Bool

	mu  sync.Mutex
	buf bytes.Buffer
}

func newGatedConn() *gatedConn {
	return &gatedConn{entered: make(chan string, 64), release: make(chan struct{})}
}

func (c *gatedConn) Write(p []byte) (int, error) {
	if c.active.Add(1) > 1 {
		c.overlap.Store(true)
	}
	defer c.active.Add(-1)
	c.entered <- string(p)
	<-c.release
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *gatedConn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// next returns what the next write carries, as it starts.
func (c *gatedConn) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-c.entered:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no write started")
		return ""
	}
}

// flushAsync runs w.Flush on a goroutine of the test's; the channel is
// closed when it returns.
func flushAsync(w *Writer) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Flush()
	}()
	return done
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// waitParked waits until w's goroutine waits to be woken: from then on it
// writes nothing unless woken.
func waitParked(t *testing.T, w *Writer) {
	t.Helper()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.parked
	}, 10*time.Second, time.Millisecond, "the writer's goroutine never waited")
}

func appendStr(s string) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, s...) }
}

// TestWriterFlushWritesFromCaller: with the goroutine idle, what
// AppendDeferred queued is written by Flush itself: it is on the wire when
// Flush returns.
func TestWriterFlushWritesFromCaller(t *testing.T) {
	c := newGatedConn()
	close(c.release)
	w := NewWriter(c, 0, 0)
	ctx := context.Background()
	before := time.Now()
	waitParked(t, w)
	require.NoError(t, w.AppendDeferred(ctx, appendStr("<a/>")))
	w.Flush()
	assert.Equal(t, "<a/>", c.String(), "Flush returned before its write")
	assert.Zero(t, w.Pending())
	assert.False(t, w.LastWrite().Before(before), "LastWrite not updated by Flush's write")
	w.Flush() // nothing queued: no write
	require.NoError(t, w.Close(ctx, []byte(StreamEnd)))
	assert.Equal(t, "<a/>"+StreamEnd, c.String())
	assert.False(t, c.overlap.Load())
	w.Flush() // closed: no write
	assert.Equal(t, "<a/>"+StreamEnd, c.String())
}

// TestWriterFlushDuringWrite: while the goroutine writes, Flush neither
// waits nor writes: what it would have written leaves after the write in
// progress, in the order queued.
func TestWriterFlushDuringWrite(t *testing.T) {
	c := newGatedConn()
	w := NewWriter(c, 0, 0)
	ctx := context.Background()
	require.NoError(t, w.Write(ctx, []byte("<a/>")))
	require.Equal(t, "<a/>", c.next(t)) // the goroutine is in its write
	require.NoError(t, w.AppendDeferred(ctx, appendStr("<b/>")))
	waitClosed(t, flushAsync(w), "Flush waited for the goroutine's write")
	require.NoError(t, w.Write(ctx, []byte("<c/>")))
	close(c.release)
	require.NoError(t, w.Close(ctx, []byte(StreamEnd)))
	assert.Equal(t, "<a/><b/><c/>"+StreamEnd, c.String())
	assert.False(t, c.overlap.Load(), "two writes at once")
}

// TestWriterFlushWakesWriter: what is queued while Flush writes (Append
// does not wake the goroutine then) is written once Flush's write is done,
// without any further call.
func TestWriterFlushWakesWriter(t *testing.T) {
	c := newGatedConn()
	w := NewWriter(c, 0, 0)
	ctx := context.Background()
	waitParked(t, w)
	require.NoError(t, w.AppendDeferred(ctx, appendStr("<a/>")))
	flushed := flushAsync(w)
	require.Equal(t, "<a/>", c.next(t)) // Flush is in its write
	require.NoError(t, w.Write(ctx, []byte("<b/>")))
	require.NoError(t, w.AppendControl(appendStr(" ")))
	close(c.release)
	waitClosed(t, flushed, "Flush did not return")
	assert.Equal(t, "<b/> ", c.next(t), "what was queued during Flush's write was not written")
	require.NoError(t, w.Close(ctx, nil))
	assert.Equal(t, "<a/><b/> ", c.String())
	assert.False(t, c.overlap.Load(), "two writes at once")
}

// TestWriterSealDuringFlush: Close during Flush's write waits for it, then
// writes the final bytes after it, and only then stops.
func TestWriterSealDuringFlush(t *testing.T) {
	c := newGatedConn()
	w := NewWriter(c, 0, 0)
	ctx := context.Background()
	waitParked(t, w)
	require.NoError(t, w.AppendDeferred(ctx, appendStr("<a/>")))
	flushed := flushAsync(w)
	require.Equal(t, "<a/>", c.next(t))
	w.Seal([]byte(StreamEnd))
	assert.ErrorIs(t, w.Write(ctx, []byte("<late/>")), ErrWriterClosed)
	select {
	case <-w.Done():
		t.Fatal("the writer stopped during Flush's write, before its final bytes")
	default:
	}
	close(c.release)
	waitClosed(t, flushed, "Flush did not return")
	require.NoError(t, w.Close(ctx, nil))
	assert.Equal(t, "<a/>"+StreamEnd, c.String())
	assert.False(t, c.overlap.Load(), "two writes at once")
}

// enterConn is a net.Conn that announces each write as it starts.
type enterConn struct {
	net.Conn
	entered chan struct{}
}

func (c *enterConn) Write(p []byte) (int, error) {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	return c.Conn.Write(p)
}

// TestWriterAbortInterruptsFlush: Abort ends a write of Flush's blocked on
// a peer that stopped reading (the write timeout is an hour), and the
// writer stops with Abort's cause.
func TestWriterAbortInterruptsFlush(t *testing.T) {
	c1, c2 := net.Pipe() // nobody reads c2: writes block
	defer c2.Close()
	defer c1.Close()
	c := &enterConn{Conn: c1, entered: make(chan struct{}, 1)}
	w := NewWriter(c, 0, time.Hour)
	waitParked(t, w)
	require.NoError(t, w.AppendDeferred(context.Background(), appendStr("<a/>")))
	flushed := flushAsync(w)
	waitClosed(t, c.entered, "Flush did not write")
	cause := errors.New("give up")
	w.Abort(cause)
	waitClosed(t, flushed, "Abort did not interrupt Flush's write")
	waitClosed(t, w.Done(), "the writer did not stop")
	assert.ErrorIs(t, w.Err(), cause)
}

// TestWriterFlushErrorStopsWriter: a write error in Flush stops the writer
// as one of its goroutine's does.
func TestWriterFlushErrorStopsWriter(t *testing.T) {
	c1, c2 := net.Pipe()
	c2.Close()
	defer c1.Close()
	w := NewWriter(c1, 0, 0)
	ctx := context.Background()
	waitParked(t, w)
	require.NoError(t, w.AppendDeferred(ctx, appendStr("<a/>")))
	w.Flush()
	waitClosed(t, w.Done(), "a failed Flush did not stop the writer")
	require.Error(t, w.Err())
	assert.NotErrorIs(t, w.Err(), ErrWriterClosed)
	assert.Error(t, w.Write(ctx, []byte("<b/>")), "a send on a failed link must fail at once")
}

// TestWriterAppendDeferredWaitsForRoom: AppendDeferred waits for room as
// Append does.
func TestWriterAppendDeferredWaitsForRoom(t *testing.T) {
	c := newGatedConn()
	w := NewWriter(c, 16, 0)
	ctx := context.Background()
	require.NoError(t, w.Write(ctx, []byte("0123456789abcdef")))
	c.next(t) // the goroutine took it: the queue is empty
	require.NoError(t, w.Write(ctx, []byte("0123456789abcdef")))
	tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, w.AppendDeferred(tctx, appendStr("x")), context.DeadlineExceeded)
	close(c.release)
	require.NoError(t, w.Close(ctx, nil))
}

// notifyConn tells of each write on written.
type notifyConn struct{ written chan int }

func (c *notifyConn) Write(p []byte) (int, error) {
	c.written <- len(p)
	return len(p), nil
}

// BenchmarkWriterReplies: a goroutine queues a batch of replies and then
// waits for the next request, which comes once the batch is written (as
// the reader does; here the wait is for the write itself). wake: Append,
// the writer's goroutine writes; flush: AppendDeferred and Flush, the
// caller writes.
func BenchmarkWriterReplies(b *testing.B) {
	batch := bytes.Repeat([]byte("<iq type='result' id='flood-123456' from='cb1.example.com' to='example.com'/>"), 64)
	add := func(p []byte) []byte { return append(p, batch...) }
	for _, mode := range []string{"wake", "flush"} {
		b.Run(mode, func(b *testing.B) {
			c := &notifyConn{written: make(chan int, 1)}
			w := NewWriter(c, 0, 0)
			defer w.Abort(nil)
			ctx := context.Background()
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if mode == "wake" {
					if err := w.Append(ctx, add); err != nil {
						b.Fatal(err)
					}
				} else {
					if err := w.AppendDeferred(ctx, add); err != nil {
						b.Fatal(err)
					}
					w.Flush()
				}
				<-c.written
			}
		})
	}
}
