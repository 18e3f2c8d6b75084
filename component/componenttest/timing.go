package componenttest

import (
	"net"
	"sync/atomic"
	"time"
)

// Timing is when a connection reached the first steps of its life, as the
// server saw them: what a benchmark of connection set-up measures (see
// Conn.Timing). A zero time means the step was not reached.
type Timing struct {
	// Accepted is when the TCP accept returned.
	Accepted time.Time
	// FirstByte is when the first read from the connection returned data:
	// the start of the TLS ClientHello, or of the stream header in Plain
	// mode.
	FirstByte time.Time
	// Authenticated is when the server accepted the handshake and queued
	// <handshake/> (its write follows at once).
	Authenticated time.Time
}

// connTiming holds a Conn's Timing: accepted is set before the
// connection's goroutine starts; the others are offsets from it (1 + the
// duration, so that 0 means not yet), which keeps the monotonic clock.
type connTiming struct {
	accepted  time.Time
	firstByte atomic.Int64
	auth      atomic.Int64
}

// mark records now as the time of step (firstByte or auth) unless set.
func (t *connTiming) mark(step *atomic.Int64) {
	if step.Load() == 0 {
		step.CompareAndSwap(0, 1+int64(time.Since(t.accepted)))
	}
}

func (t *connTiming) at(step *atomic.Int64) time.Time {
	if d := step.Load(); d != 0 {
		return t.accepted.Add(time.Duration(d - 1))
	}
	return time.Time{}
}

// Timing returns when the connection was accepted, received its first
// byte and was authenticated.
func (c *Conn) Timing() Timing {
	t := &c.timing
	return Timing{Accepted: t.accepted, FirstByte: t.at(&t.firstByte), Authenticated: t.at(&t.auth)}
}

// firstByteConn is the TCP connection under the server's TLS layer: it
// notes when the first bytes arrive.
type firstByteConn struct {
	net.Conn
	t *connTiming
}

func (f firstByteConn) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if n > 0 {
		f.t.mark(&f.t.firstByte)
	}
	return n, err
}
