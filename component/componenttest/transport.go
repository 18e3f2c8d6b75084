package componenttest

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"time"
)

// gateWriter is what the xstream.Writer writes to: it waits for TLS and
// holds writes while the connection is stalled.
type gateWriter struct{ c *Conn }

func (g gateWriter) Write(p []byte) (int, error) {
	c := g.c
	select {
	case <-c.ioReady:
	case <-c.closing:
		return 0, ErrConnClosed
	}
	if err := c.gate(); err != nil {
		return 0, err
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	// Let runnable senders queue more before the syscall: under load the
	// next batch grows, so fewer TLS records and syscalls per stanza.
	runtime.Gosched()
	n, err := c.rw.Write(p)
	c.written.Add(int64(n))
	c.writes.Add(1)
	return n, err
}

// write queues what encode appends on the writer, counting the bytes so
// that flush can wait for them.
func (c *Conn) write(ctx context.Context, encode func([]byte) []byte) error {
	return c.w.Append(ctx, func(b []byte) []byte {
		n := len(b)
		b = encode(b)
		c.queued.Add(int64(len(b) - n))
		return b
	})
}

func (c *Conn) writeBytes(ctx context.Context, p []byte) error {
	return c.write(ctx, func(b []byte) []byte { return append(b, p...) })
}

// flush waits until everything queued so far was written (for faults
// that must act after bytes left, such as a stall after the header).
func (c *Conn) flush() {
	limit := time.Now().Add(c.s.opts.WriteTimeout)
	want := c.queued.Load()
	for c.written.Load() < want && time.Now().Before(limit) && c.w.Err() == nil {
		select {
		case <-c.closing:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// connReader is what the decoder reads from: it applies the read deadline
// of the current phase, keeps the raw log and holds reads while stalled.
type connReader struct{ c *Conn }

func (r connReader) Read(p []byte) (int, error) {
	c := r.c
	for {
		if err := c.gate(); err != nil {
			return 0, err
		}
		c.stMu.Lock()
		stalled := c.stallCh != nil
		if !stalled {
			_ = c.nc.SetReadDeadline(c.readDeadline())
		}
		c.stMu.Unlock()
		if stalled {
			continue
		}
		n, err := c.rw.Read(p)
		if n > 0 {
			c.timing.mark(&c.timing.firstByte) // Plain mode; set already under TLS
			c.logRaw(p[:n])
			// Bytes that arrived as a stall began are held until it ends,
			// as if they had not been read yet.
			if gerr := c.gate(); gerr != nil {
				return 0, gerr
			}
		}
		if n == 0 && err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			c.stMu.Lock()
			stalled = c.stallCh != nil
			c.stMu.Unlock()
			if stalled {
				continue
			}
		}
		return n, err
	}
}

func (c *Conn) readDeadline() time.Time {
	if d := c.drainUntil.Load(); d != 0 {
		return time.Unix(0, d)
	}
	if !c.established.Load() {
		return c.hsLimit
	}
	if c.s.opts.IdleTimeout > 0 {
		return time.Now().Add(c.s.opts.IdleTimeout)
	}
	return time.Time{}
}

func (c *Conn) logRaw(p []byte) {
	max := c.s.opts.MaxRawLog
	if max <= 0 {
		return
	}
	c.mu.Lock()
	if room := max - len(c.raw); room > 0 {
		c.raw = append(c.raw, p[:min(room, len(p))]...)
	}
	c.mu.Unlock()
}

// gate waits while the connection is stalled.
func (c *Conn) gate() error {
	for {
		c.stMu.Lock()
		ch := c.stallCh
		c.stMu.Unlock()
		if ch == nil {
			return nil
		}
		select {
		case <-ch:
		case <-c.closing:
			return ErrConnClosed
		}
	}
}

// Stall makes the server stop reading from and writing to the connection
// for d, keeping the socket open, then carry on; d <= 0 stalls until Close
// (see Blackhole). A stall during the handshake still counts against the
// handshake timeout.
func (c *Conn) Stall(d time.Duration) {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	if c.stallCh == nil {
		c.stallCh = make(chan struct{})
	}
	if c.stallTimer != nil {
		c.stallTimer.Stop()
		c.stallTimer = nil
	}
	// Interrupt a blocked read; connReader sees the stall and waits.
	_ = c.nc.SetReadDeadline(time.Now())
	if d > 0 {
		ch := c.stallCh
		c.stallTimer = time.AfterFunc(d, func() {
			c.stMu.Lock()
			if c.stallCh == ch {
				close(ch)
				c.stallCh = nil
			}
			c.stMu.Unlock()
		})
	}
}

// Blackhole makes the server drop its side silently: it stops reading and
// writing but keeps the socket open until Close (or Server.Close), as a
// hung server or a dead middlebox would.
func (c *Conn) Blackhole() { c.Stall(0) }

// Resume ends a Stall or Blackhole.
func (c *Conn) Resume() {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	if c.stallTimer != nil {
		c.stallTimer.Stop()
		c.stallTimer = nil
	}
	if c.stallCh != nil {
		close(c.stallCh)
		c.stallCh = nil
	}
}

// Close closes the connection abruptly (TCP FIN, no stream error, no
// closing tag). It does not wait; see WaitClosed.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.stMu.Lock()
		if c.stallTimer != nil {
			c.stallTimer.Stop()
			c.stallTimer = nil
		}
		c.stMu.Unlock()
		_ = c.nc.Close()
	})
}

// Reset closes the connection with a TCP reset (SO_LINGER 0): the peer
// sees "connection reset by peer".
func (c *Conn) Reset() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.w.Abort(ErrConnClosed)
	c.Close()
}
