package callbridge

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// earlyConn stands in for a TCP connection that is not made yet, under a
// tls.Client whose handshake starts first: crypto/tls builds its
// ClientHello (the key shares take 0.1-0.3 ms of CPU) before the connect,
// and the ClientHello leaves as soon as the connection is up, instead of
// the server waiting for it. Every method waits for set; afterwards each
// is the connection's.
//
// It is owned by connect, which always calls set, with the connection or
// nil when the dial failed (the methods then fail with net.ErrClosed).
type earlyConn struct {
	conn      atomic.Pointer[dialled] // set once the dial succeeded
	ready     chan struct{}           // closed by set
	once      sync.Once
	wrote     chan struct{} // closed at the first Write: the ClientHello is built
	wroteOnce sync.Once

	mu     sync.Mutex
	closed bool // Close came first: set closes the connection
}

// dialled is the connection an earlyConn stands in for.
type dialled struct{ net.Conn }

func newEarlyConn() *earlyConn {
	return &earlyConn{ready: make(chan struct{}), wrote: make(chan struct{})}
}

// set hands over the dialled connection (nil when the dial failed).
func (e *earlyConn) set(c net.Conn) {
	e.mu.Lock()
	switch {
	case c != nil && e.closed:
		c.Close()
	case c != nil:
		e.conn.Store(&dialled{c})
	}
	e.mu.Unlock()
	e.once.Do(func() { close(e.ready) })
}

// get returns the connection once set, or nil when there is none.
func (e *earlyConn) get() net.Conn {
	d := e.conn.Load()
	if d == nil {
		<-e.ready
		if d = e.conn.Load(); d == nil {
			return nil
		}
	}
	return d.Conn
}

func (e *earlyConn) Read(p []byte) (int, error) {
	if c := e.get(); c != nil {
		return c.Read(p)
	}
	return 0, net.ErrClosed
}

func (e *earlyConn) Write(p []byte) (int, error) {
	e.wroteOnce.Do(func() { close(e.wrote) })
	if c := e.get(); c != nil {
		return c.Write(p)
	}
	return 0, net.ErrClosed
}

// Close closes the connection, at once or as soon as it is set: crypto/tls
// calls it from another goroutine when the handshake's context ends.
func (e *earlyConn) Close() error {
	e.mu.Lock()
	e.closed = true
	d := e.conn.Load()
	e.mu.Unlock()
	if d != nil {
		return d.Close()
	}
	return nil
}

func (e *earlyConn) LocalAddr() net.Addr {
	if c := e.get(); c != nil {
		return c.LocalAddr()
	}
	return &net.TCPAddr{}
}

func (e *earlyConn) RemoteAddr() net.Addr {
	if c := e.get(); c != nil {
		return c.RemoteAddr()
	}
	return &net.TCPAddr{}
}

func (e *earlyConn) SetDeadline(t time.Time) error {
	if c := e.get(); c != nil {
		return c.SetDeadline(t)
	}
	return net.ErrClosed
}

func (e *earlyConn) SetReadDeadline(t time.Time) error {
	if c := e.get(); c != nil {
		return c.SetReadDeadline(t)
	}
	return net.ErrClosed
}

func (e *earlyConn) SetWriteDeadline(t time.Time) error {
	if c := e.get(); c != nil {
		return c.SetWriteDeadline(t)
	}
	return net.ErrClosed
}

// NetConn returns the connection (e itself if the dial failed), for those
// that unwrap connections (TCP keepalive, closing without close_notify).
func (e *earlyConn) NetConn() net.Conn {
	if c := e.get(); c != nil {
		return c
	}
	return e
}
