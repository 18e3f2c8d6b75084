package componenttest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cblink/cblink/internal/xstream"
)

const (
	nsPing      = "urn:xmpp:ping"
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	pingPrefix  = "componenttest-ping-"
	floodPrefix = "componenttest-flood-"
)

// Stanza is a top-level element the component sent that was not consumed
// as the reply to SendIQ or Ping, nor answered by the server itself.
type Stanza struct {
	// Name is the element name: "iq", "message" or "presence".
	Name string
	// Type, ID, From and To are the unescaped attributes ("" if absent).
	Type, ID, From, To string
	// Raw is the element as it arrived.
	Raw []byte
}

// ConnInfo describes a connection at one moment.
type ConnInfo struct {
	// Index is the accept index (0 for the server's first connection).
	Index int
	// Name is the component address the peer asked for in its header's
	// 'to'; "" before the header.
	Name       string
	RemoteAddr net.Addr
	// TLS is true on a direct-TLS connection; SNI is the server name the
	// client sent in its TLS ClientHello ("" if none).
	TLS bool
	SNI string
	// Outcome of the handshake; Condition is the stream error condition
	// the server sent, or what cut the connection before success.
	Outcome   Outcome
	Condition string
	// ClosedByPeer is true when the peer sent </stream:stream>.
	ClosedByPeer bool
	// Ended is true once the connection is closed.
	Ended bool
	// StanzasIn and StanzasOut count stanzas after the handshake.
	StanzasIn, StanzasOut int64
}

// Conn is one accepted connection. Its methods are safe for concurrent use.
type Conn struct {
	s       *Server
	idx     int
	nc      net.Conn // the TCP connection
	rw      net.Conn // nc or its TLS layer; set before ioReady is closed
	ioReady chan struct{}
	ioUp    bool // serve goroutine only: ioReady closed
	w       *xstream.Writer
	faults  []Fault
	tweak   HeaderTweak
	hsLimit time.Time
	timing  connTiming // see Timing

	done      chan struct{} // closed when serve has exited
	closing   chan struct{} // closed by Close
	closeOnce sync.Once

	// under s.mu
	name         string
	sni          string
	outcome      Outcome
	condition    string
	closedByPeer bool
	ended        bool
	addr         string // c.name, fixed before established is set

	established atomic.Bool
	headerSent  atomic.Bool
	endSent     atomic.Bool
	drainUntil  atomic.Int64 // unix ns; 0 when not draining
	stanzasIn   atomic.Int64
	stanzasOut  atomic.Int64
	queued      atomic.Int64 // bytes handed to w
	written     atomic.Int64 // bytes written to the connection
	writes      atomic.Int64 // write calls (batches)
	pingSeq     atomic.Uint64
	flood       atomic.Pointer[flood] // the PingFlood in progress, if any

	// stall state, under stMu
	stMu       sync.Mutex
	stallCh    chan struct{} // non-nil while stalled; closed on release
	stallTimer *time.Timer

	// under mu
	mu      sync.Mutex
	pending map[string]*waiter
	raw     []byte

	queue *stanzaQueue // what Next returns
}

func newConn(s *Server, nc net.Conn, idx int, faults []Fault) *Conn {
	c := &Conn{
		s:       s,
		idx:     idx,
		nc:      nc,
		rw:      nc,
		ioReady: make(chan struct{}),
		faults:  faults,
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		pending: map[string]*waiter{},
		queue:   newStanzaQueue(s.opts.MaxQueued),
		hsLimit: time.Now().Add(s.opts.HandshakeTimeout),
	}
	for _, f := range faults {
		if !f.Header.isZero() {
			c.tweak = f.Header
			break
		}
	}
	c.w = xstream.NewWriter(gateWriter{c}, 0, s.opts.WriteTimeout)
	return c
}

// Done is closed when the connection has ended and its goroutines exited.
func (c *Conn) Done() <-chan struct{} { return c.done }

// WaitClosed waits until the connection has ended.
func (c *Conn) WaitClosed(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ClosedByPeer reports whether the peer sent </stream:stream> (a clean
// close on its side).
func (c *Conn) ClosedByPeer() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.closedByPeer
}

// Index returns the accept index of the connection.
func (c *Conn) Index() int { return c.idx }

// Name returns the component address from the peer's stream header.
func (c *Conn) Name() string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.name
}

// Info returns a snapshot of the connection's state.
func (c *Conn) Info() ConnInfo {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return ConnInfo{
		Index: c.idx, Name: c.name, RemoteAddr: c.nc.RemoteAddr(),
		TLS: c.s.tlsConf != nil, SNI: c.sni,
		Outcome: c.outcome, Condition: c.condition, ClosedByPeer: c.closedByPeer, Ended: c.ended,
		StanzasIn: c.stanzasIn.Load(), StanzasOut: c.stanzasOut.Load(),
	}
}

// RawReceived returns a copy of the bytes received on the connection
// (after TLS), from the first, up to Options.MaxRawLog.
func (c *Conn) RawReceived() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.raw)
}

func (c *Conn) setCondition(cond string) {
	c.s.mu.Lock()
	if c.condition == "" {
		c.condition = cond
	}
	c.s.mu.Unlock()
}

// ---- serve: the connection's goroutine ----

// ---- after the handshake ----

// ---- sending ----
