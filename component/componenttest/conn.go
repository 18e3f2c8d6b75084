package componenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cblink/cblink/internal/xstream"
	"mellium.im/xmpp/stream"
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

type reply struct {
	raw   []byte
	isErr bool
}

type waiter struct {
	ch      chan reply
	wantRaw bool
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan reply, 1)} }}

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
	mu       sync.Mutex
	pending  map[string]*waiter
	queue    []Stanza
	queueSig chan struct{}
	raw      []byte
}

func newConn(s *Server, nc net.Conn, idx int, faults []Fault) *Conn {
	c := &Conn{
		s:        s,
		idx:      idx,
		nc:       nc,
		rw:       nc,
		ioReady:  make(chan struct{}),
		faults:   faults,
		done:     make(chan struct{}),
		closing:  make(chan struct{}),
		pending:  map[string]*waiter{},
		queueSig: make(chan struct{}, 1),
		hsLimit:  time.Now().Add(s.opts.HandshakeTimeout),
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

func (c *Conn) serve() {
	s := c.s
	defer func() {
		c.Close()
		c.w.Abort(ErrConnClosed)
		<-c.w.Done()
		s.mu.Lock()
		delete(s.live, c)
		c.ended = true
		if c.outcome == HandshakePending {
			c.outcome = HandshakeFailed
			cond := c.condition
			if cond == "" {
				cond = "disconnected"
				c.condition = cond
			}
			s.stats.HandshakesFailed[cond]++
		}
		s.notifyLocked()
		s.mu.Unlock()
		s.logf("componenttest: conn %d from %s ended (%s)", c.idx, c.nc.RemoteAddr(), c.Info().Condition)
		close(c.done)
		s.connWG.Done()
	}()
	s.logf("componenttest: conn %d accepted from %s", c.idx, c.nc.RemoteAddr())
	if c.runFaults(PhaseAccept, 0, nil) {
		return
	}
	_ = c.nc.SetDeadline(c.hsLimit)
	if s.tlsConf != nil {
		conf := s.tlsConf.Clone()
		conf.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			c.sni = hi.ServerName
			s.mu.Unlock()
			return nil, nil
		}
		tc := tls.Server(c.nc, conf)
		if err := tc.Handshake(); err != nil {
			c.setCondition("tls")
			s.logf("componenttest: conn %d: TLS handshake: %v", c.idx, err)
			return
		}
		c.rw = tc
	}
	close(c.ioReady)
	c.ioUp = true
	if c.runFaults(PhaseTLS, 0, nil) {
		return
	}
	dec := xstream.NewDecoder(connReader{c}, s.opts.MaxStanzaSize, 0)
	h, err := dec.ReadHeader()
	if err != nil {
		c.readFailed(err, dec)
		return
	}
	s.mu.Lock()
	c.name = h.To
	s.mu.Unlock()
	if c.runFaults(PhaseClientHeader, 0, dec) {
		return
	}
	id := c.streamID()
	c.sendHeader(id)
	secret, known := s.secret(h.To)
	if !known {
		s.logf("componenttest: conn %d: unknown component %q", c.idx, h.To)
		c.fail(stream.HostUnknown, dec)
		return
	}
	if c.runFaults(PhaseHeader, 0, dec) {
		return
	}
	var el xstream.Element
	for {
		el, err = dec.Next()
		if err != nil {
			c.readFailed(err, dec)
			return
		}
		if !el.Keepalive {
			break
		}
	}
	if string(el.Name()) != "handshake" {
		s.logf("componenttest: conn %d: <%s> before the handshake", c.idx, el.Name())
		c.fail(stream.NotAuthorized, dec)
		return
	}
	if !xstream.CheckHandshake(id, secret, bytes.TrimSpace(el.Inner())) {
		s.logf("componenttest: conn %d: wrong handshake for %q", c.idx, h.To)
		c.fail(stream.NotAuthorized, dec)
		return
	}
	if c.runFaults(PhaseHandshakeReceived, 0, dec) {
		return
	}
	s.mu.Lock()
	if !s.opts.AcceptDuplicates {
		for other := range s.live {
			if other != c && other.outcome == HandshakeOK && other.name == c.name {
				s.mu.Unlock()
				s.logf("componenttest: conn %d: %q already connected", c.idx, h.To)
				c.fail(stream.Conflict, dec)
				return
			}
		}
	}
	_ = c.writeBytes(context.Background(), []byte("<handshake/>"))
	c.addr = c.name
	c.outcome = HandshakeOK
	s.stats.HandshakesOK++
	c.established.Store(true)
	s.notifyLocked()
	s.mu.Unlock()
	s.logf("componenttest: conn %d: %q authenticated", c.idx, h.To)
	if c.runFaults(PhaseHandshake, 0, dec) {
		return
	}
	c.loop(dec)
}

func (c *Conn) streamID() string {
	switch {
	case c.tweak.ID != "":
		return c.tweak.ID
	case c.tweak.OmitID || c.tweak.EmptyID:
		return ""
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Conn) appendHeader(dst []byte, id string) []byte {
	t := c.tweak
	if t.Raw != nil {
		return append(dst, t.Raw...)
	}
	ns, sns, from := xstream.NSComponent, xstream.NSStream, c.s.opts.Domain
	if c.name != "" {
		from = c.name
	}
	if t.Namespace != "" {
		ns = t.Namespace
	}
	if t.StreamNamespace != "" {
		sns = t.StreamNamespace
	}
	if t.From != "" {
		from = t.From
	}
	dst = append(dst, "<stream:stream"...)
	dst = xstream.AppendAttr(dst, "xmlns", ns)
	dst = xstream.AppendAttr(dst, "xmlns:stream", sns)
	if !t.OmitFrom {
		dst = xstream.AppendAttr(dst, "from", from)
	}
	if !t.OmitID {
		dst = xstream.AppendAttr(dst, "id", id)
	}
	return append(dst, '>')
}

func (c *Conn) sendHeader(id string) {
	c.s.mu.Lock()
	hdr := c.appendHeader(nil, id)
	c.s.mu.Unlock()
	c.headerSent.Store(true)
	_ = c.writeBytes(context.Background(), hdr)
}

// readFailed ends the connection after a read error, answering with the
// stream error a server would send.
func (c *Conn) readFailed(err error, dec *xstream.Decoder) {
	var he *xstream.HeaderError
	var se *xstream.SyntaxError
	switch {
	case errors.Is(err, xstream.ErrStreamEnd):
		c.s.mu.Lock()
		c.closedByPeer = true
		c.s.mu.Unlock()
		c.setCondition("closed-by-peer")
		c.closeStream(nil)
	case errors.As(err, &he):
		c.fail(stream.Error{Err: he.Condition}, nil)
	case errors.Is(err, xstream.ErrTooLarge), errors.Is(err, xstream.ErrTooDeep):
		c.fail(stream.PolicyViolation, nil)
	case errors.As(err, &se):
		if se.Restricted {
			c.fail(stream.RestrictedXML, nil)
		} else {
			c.fail(stream.NotWellFormed, nil)
		}
	case errors.Is(err, os.ErrDeadlineExceeded) && c.drainUntil.Load() == 0:
		c.fail(stream.ConnectionTimeout, nil)
	default:
		c.s.logf("componenttest: conn %d: read: %v", c.idx, err)
	}
	_ = dec
}

// fail sends a stream error (after the server's header if it was not sent
// yet) and </stream:stream>, then waits a little for the peer's closing
// tag. It runs on the serve goroutine.
func (c *Conn) fail(e stream.Error, dec *xstream.Decoder) {
	c.setCondition(e.Err)
	if !c.established.Load() {
		c.s.mu.Lock()
		if c.outcome == HandshakePending {
			c.outcome = HandshakeFailed
			c.s.stats.HandshakesFailed[e.Err]++
		}
		c.s.mu.Unlock()
	}
	c.s.logf("componenttest: conn %d: sending stream error %s", c.idx, e.Err)
	if !c.closeStream(c.appendStreamError(nil, e)) {
		return
	}
	c.drain(dec)
}

func (c *Conn) appendStreamError(dst []byte, e stream.Error) []byte {
	if !c.headerSent.Swap(true) {
		c.s.mu.Lock()
		dst = c.appendHeader(dst, c.streamID())
		c.s.mu.Unlock()
	}
	text := ""
	if len(e.Text) > 0 {
		text = e.Text[0].Value
	}
	return xstream.AppendStreamError(dst, e.Err, e.Content, text)
}

// closeStream queues final and </stream:stream>, flushes and half-closes
// the connection. It reports false when the stream was already closed.
func (c *Conn) closeStream(final []byte) bool {
	if !c.endSent.CompareAndSwap(false, true) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.WriteTimeout)
	defer cancel()
	if c.ioUp || c.isIOReady() {
		final = append(final, xstream.StreamEnd...)
		_ = c.w.Close(ctx, final)
		if cw, ok := c.rw.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	c.stMu.Lock()
	c.drainUntil.Store(time.Now().Add(c.s.opts.CloseTimeout).UnixNano())
	_ = c.nc.SetReadDeadline(time.Now().Add(c.s.opts.CloseTimeout))
	c.stMu.Unlock()
	return true
}

func (c *Conn) isIOReady() bool {
	select {
	case <-c.ioReady:
		return true
	default:
		return false
	}
}

// drain reads until the peer's </stream:stream>, EOF or the close timeout,
// so that the peer gets our last bytes before the socket closes.
func (c *Conn) drain(dec *xstream.Decoder) {
	if !c.isIOReady() {
		return
	}
	if dec == nil {
		// The decoder is unusable (or there was none yet): look for the
		// closing tag in the raw bytes.
		var buf [4096]byte
		var tail []byte
		r := connReader{c}
		for total := 0; total < c.s.opts.MaxStanzaSize; {
			n, err := r.Read(buf[:])
			total += n
			tail = append(tail, buf[:n]...)
			if bytes.Contains(tail, []byte(xstream.StreamEnd)) {
				c.s.mu.Lock()
				c.closedByPeer = true
				c.s.mu.Unlock()
				return
			}
			tail = tail[max(0, len(tail)-len(xstream.StreamEnd)):]
			if err != nil {
				return
			}
		}
		return
	}
	for {
		_, err := dec.Next()
		if errors.Is(err, xstream.ErrStreamEnd) {
			c.s.mu.Lock()
			c.closedByPeer = true
			c.s.mu.Unlock()
			return
		}
		if err != nil {
			return
		}
	}
}

// runFaults runs the faults of a phase and reports whether the
// connection must end.
func (c *Conn) runFaults(p Phase, n int64, dec *xstream.Decoder) bool {
	for _, f := range c.faults {
		if f.Phase != p || (p == PhaseStanzas && int64(f.After) != n) {
			continue
		}
		c.s.logf("componenttest: conn %d: fault %v at %v", c.idx, f.Action, p)
		switch f.Action {
		case ActionSend:
			if c.ioUp {
				_ = c.writeBytes(context.Background(), f.Bytes)
			} else {
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
				_, _ = c.nc.Write(f.Bytes)
			}
		case ActionClose:
			c.setCondition("fault-close")
			if c.ioUp {
				ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.WriteTimeout)
				_ = c.w.Close(ctx, nil)
				cancel()
			}
			c.Close()
			return true
		case ActionReset:
			c.setCondition("fault-reset")
			if c.ioUp {
				c.flush()
			}
			c.Reset()
			return true
		case ActionStall, ActionBlackhole:
			if c.ioUp {
				c.flush()
			}
			if f.Action == ActionBlackhole || f.Duration <= 0 {
				c.setCondition("fault-blackhole")
				c.Blackhole()
				<-c.closing
				return true
			}
			c.Stall(f.Duration)
			if c.gate() != nil {
				return true
			}
		case ActionStreamError:
			c.fail(f.Err, dec)
			return true
		}
	}
	return false
}

// ---- after the handshake ----

func (c *Conn) loop(dec *xstream.Decoder) {
	for {
		el, err := dec.Next()
		if err != nil {
			if c.endSent.Load() && !errors.Is(err, xstream.ErrStreamEnd) {
				return // we closed; the peer went away or the drain ended
			}
			c.readFailed(err, dec)
			return
		}
		if el.Keepalive {
			continue
		}
		n := c.stanzasIn.Add(1)
		if c.handle(&el, dec) {
			return
		}
		if c.runFaults(PhaseStanzas, n, dec) {
			return
		}
	}
}

// handle routes one stanza; it reports whether the connection must end.
func (c *Conn) handle(el *xstream.Element, dec *xstream.Decoder) bool {
	name := el.Name()
	isIQ := string(name) == "iq"
	if !isIQ && string(name) != "message" && string(name) != "presence" {
		c.fail(stream.UnsupportedStanzaType, dec)
		return true
	}
	from, ok := el.Attr("from")
	if !ok || len(from) == 0 {
		c.fail(stream.ImproperAddressing, dec)
		return true
	}
	if !c.fromAllowed(from) {
		c.fail(stream.InvalidFrom, dec)
		return true
	}
	to, _ := el.Attr("to")
	toServer := len(to) == 0 || equalFold(to, c.s.opts.Domain)
	if isIQ {
		typ, _ := el.Attr("type")
		switch string(typ) {
		case "result", "error":
			if c.deliver(el, string(typ) == "error") {
				return false
			}
		case "get", "set":
			if toServer {
				c.answerServerIQ(el, string(typ) == "get")
				return false
			}
		}
	}
	c.enqueue(el)
	return false
}

// fromAllowed reports whether a 'from' is the component address or a JID
// at it (user@addr, addr/res, user@addr/res).
func (c *Conn) fromAllowed(from []byte) bool {
	if bytes.IndexByte(from, '&') >= 0 {
		s, err := xstream.Unescape(from)
		if err != nil {
			return false
		}
		from = []byte(s)
	}
	if i := bytes.IndexByte(from, '/'); i >= 0 {
		if i == len(from)-1 {
			return false
		}
		from = from[:i]
	}
	if i := bytes.LastIndexByte(from, '@'); i >= 0 {
		if i == 0 {
			return false
		}
		from = from[i+1:]
	}
	return equalFold(from, c.addr)
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// deliver hands an IQ result or error to the Ping or SendIQ waiting for
// it, reporting whether one was.
func (c *Conn) deliver(el *xstream.Element, isErr bool) bool {
	id, ok := el.Attr("id")
	if !ok {
		return false
	}
	if bytes.IndexByte(id, '&') >= 0 {
		s, err := xstream.Unescape(id)
		if err != nil {
			return false
		}
		id = []byte(s)
	}
	if bytes.HasPrefix(id, []byte(floodPrefix)) {
		if f := c.flood.Load(); f != nil {
			f.reply(isErr)
			return true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.pending[string(id)]
	if !ok {
		return false
	}
	delete(c.pending, string(id))
	r := reply{isErr: isErr}
	if w.wantRaw {
		r.raw = bytes.Clone(el.Raw)
	}
	w.ch <- r // buffered, and only one send per registration: never blocks
	return true
}

func (c *Conn) answerServerIQ(el *xstream.Element, get bool) {
	id, from := el.AttrString("id"), el.AttrString("from")
	isPing := false
	if get {
		if name, ns, ok := el.FirstChild(); ok {
			local := name
			if i := bytes.IndexByte(local, ':'); i >= 0 {
				local = local[i+1:]
			}
			isPing = string(local) == "ping" && string(ns) == nsPing
		}
	}
	domain := c.s.opts.Domain
	_ = c.write(context.Background(), func(b []byte) []byte {
		if isPing {
			b = append(b, "<iq type='result'"...)
		} else {
			b = append(b, "<iq type='error'"...)
		}
		b = xstream.AppendAttr(b, "id", id)
		b = xstream.AppendAttr(b, "from", domain)
		b = xstream.AppendAttr(b, "to", from)
		if isPing {
			return append(b, "/>"...)
		}
		return append(b, "><error type='cancel'><service-unavailable xmlns='"+nsStanzas+"'/></error></iq>"...)
	})
	c.stanzasOut.Add(1)
}

func (c *Conn) enqueue(el *xstream.Element) {
	st := Stanza{
		Name: string(el.Name()),
		Type: el.AttrString("type"),
		ID:   el.AttrString("id"),
		From: el.AttrString("from"),
		To:   el.AttrString("to"),
		Raw:  bytes.Clone(el.Raw),
	}
	c.mu.Lock()
	if len(c.queue) >= c.s.opts.MaxQueued {
		c.queue = c.queue[1:]
	}
	c.queue = append(c.queue, st)
	c.mu.Unlock()
	select {
	case c.queueSig <- struct{}{}:
	default:
	}
}

// Next returns the next stanza the component sent that was not a reply to
// SendIQ or Ping nor an IQ to the server domain (which the server answers
// itself). Stanzas that arrived before the connection ended are still
// returned; after that Next returns ErrConnClosed.
func (c *Conn) Next(ctx context.Context) (Stanza, error) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			st := c.queue[0]
			c.queue[0] = Stanza{}
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return st, nil
		}
		c.mu.Unlock()
		select {
		case <-c.queueSig:
		case <-c.done:
			c.mu.Lock()
			empty := len(c.queue) == 0
			c.mu.Unlock()
			if empty {
				return Stanza{}, ErrConnClosed
			}
		case <-ctx.Done():
			return Stanza{}, ctx.Err()
		}
	}
}

// ---- sending ----

func (c *Conn) ready() error {
	select {
	case <-c.done:
		return ErrConnClosed
	default:
	}
	if !c.established.Load() {
		return ErrNotEstablished
	}
	return nil
}

// writeErr maps a send's error: a connection that can no longer be
// written (closed, reset, failed) is ErrConnClosed, wrapping the cause.
func (c *Conn) writeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, xstream.ErrWriterClosed) || errors.Is(err, ErrConnClosed):
		return ErrConnClosed
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("componenttest: send: %w", err)
	}
	return fmt.Errorf("%w: %w", ErrConnClosed, err)
}

// parseOne checks that raw is exactly one element and returns it.
func parseOne(raw []byte) (xstream.Element, error) {
	dec := xstream.NewDecoder(bytes.NewReader(raw), len(raw)+1, 0)
	el, err := dec.Next()
	if err != nil || el.Keepalive {
		return el, fmt.Errorf("%w: not one element", ErrBadStanza)
	}
	if int(dec.InputOffset()) != len(bytes.TrimRight(raw, " \t\r\n")) {
		return el, fmt.Errorf("%w: bytes after the element", ErrBadStanza)
	}
	return el, nil
}

// Send sends one stanza (a complete element, as the test wrote it) to the
// component, as if the XMPP server routed it from a user. The test chooses
// every attribute, 'from' and 'to' included.
func (c *Conn) Send(ctx context.Context, raw []byte) error {
	if err := c.ready(); err != nil {
		return err
	}
	if _, err := parseOne(raw); err != nil {
		return err
	}
	c.stanzasOut.Add(1)
	return c.writeErr(c.writeBytes(ctx, raw))
}

// SendRaw sends bytes as they are, checked for nothing (a fault: garbage,
// a second header, whitespace). It works at any time after TLS.
func (c *Conn) SendRaw(ctx context.Context, raw []byte) error {
	select {
	case <-c.done:
		return ErrConnClosed
	default:
	}
	return c.writeErr(c.writeBytes(ctx, raw))
}

// SendIQ sends an IQ of type get or set (raw, with an id) to the component
// and waits for the IQ of type result or error with the same id, which it
// returns as raw bytes (an error reply is not a Go error).
func (c *Conn) SendIQ(ctx context.Context, raw []byte) ([]byte, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	el, err := parseOne(raw)
	if err != nil {
		return nil, err
	}
	typ := el.AttrString("type")
	if string(el.Name()) != "iq" || (typ != "get" && typ != "set") {
		return nil, fmt.Errorf("%w: not an IQ get or set", ErrBadStanza)
	}
	id := el.AttrString("id")
	if id == "" {
		return nil, fmt.Errorf("%w: IQ without id", ErrBadStanza)
	}
	w := &waiter{ch: make(chan reply, 1), wantRaw: true}
	c.mu.Lock()
	if _, dup := c.pending[id]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: id %q already pending", ErrBadStanza, id)
	}
	c.pending[id] = w
	c.mu.Unlock()
	c.stanzasOut.Add(1)
	if err := c.writeBytes(ctx, raw); err != nil {
		c.unregister(id, w)
		return nil, c.writeErr(err)
	}
	select {
	case r := <-w.ch:
		return r.raw, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.done:
		// The reader delivers every reply it read before it ends the
		// connection: a reply that came with the closing tag is here.
		err = ErrConnClosed
	}
	if r, ok := c.abandon(id, w); ok {
		return r.raw, nil
	}
	return nil, err
}

// abandon removes a waiter; when its reply was delivered meanwhile, it
// returns that reply instead.
func (c *Conn) abandon(id string, w *waiter) (reply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.pending[id]; ok && cur == w {
		delete(c.pending, id)
		return reply{}, false
	}
	return <-w.ch, true // delivered under c.mu: it is in the channel
}

// unregister removes a waiter and reports whether it was still pending;
// when it was not, its reply is in its channel and is drained.
func (c *Conn) unregister(id string, w *waiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.pending[id]; ok && cur == w {
		delete(c.pending, id)
		return true
	}
	select {
	case <-w.ch:
	default:
	}
	return false
}

// Ping sends an XEP-0199 ping from the server domain to the component and
// returns the round-trip time once its result arrives. It is cheap enough
// for load tests: no goroutine, one pooled waiter per call. A reply of
// type error returns ErrIQError with the round-trip time.
func (c *Conn) Ping(ctx context.Context) (time.Duration, error) {
	if err := c.ready(); err != nil {
		return 0, err
	}
	n := c.pingSeq.Add(1)
	var buf [40]byte
	idb := strconv.AppendUint(append(buf[:0], pingPrefix...), n, 10)
	id := string(idb)
	w := waiterPool.Get().(*waiter)
	w.wantRaw = false
	c.mu.Lock()
	c.pending[id] = w
	c.mu.Unlock()
	name := c.addr
	start := time.Now()
	domain := c.s.opts.Domain
	err := c.write(ctx, func(b []byte) []byte { return appendPing(b, idb, domain, name) })
	if err != nil {
		c.unregister(id, w)
		waiterPool.Put(w)
		return 0, c.writeErr(err)
	}
	c.stanzasOut.Add(1)
	select {
	case r := <-w.ch:
		waiterPool.Put(w)
		if r.isErr {
			return time.Since(start), ErrIQError
		}
		return time.Since(start), nil
	case <-ctx.Done():
		c.unregister(id, w)
		waiterPool.Put(w)
		return 0, ctx.Err()
	case <-c.done:
		c.unregister(id, w)
		waiterPool.Put(w)
		return 0, ErrConnClosed
	}
}

// flood is the state of a PingFlood: window tokens, one taken per ping
// sent and given back per reply, so no goroutine waits per ping.
type flood struct {
	tokens chan struct{}
	left   atomic.Int64 // replies still expected
	errs   atomic.Int64
	done   chan struct{}
}

func (f *flood) reply(isErr bool) {
	if isErr {
		f.errs.Add(1)
	}
	select {
	case f.tokens <- struct{}{}:
	default: // a stray duplicate reply: never more tokens than the window
	}
	if f.left.Add(-1) == 0 {
		close(f.done)
	}
}

// PingFlood sends n XEP-0199 pings to the component, keeping up to window
// of them in flight, and returns when all have been answered. It is the
// cheapest way to load a link: one goroutine sends, the connection's reader
// counts the replies, and nothing waits per ping, so the component rather
// than the server is what a benchmark measures. One flood at a time per
// connection; replies of type error make it return ErrIQError.
func (c *Conn) PingFlood(ctx context.Context, n, window int) error {
	if err := c.ready(); err != nil {
		return err
	}
	if n <= 0 {
		return nil
	}
	window = max(1, min(window, n))
	f := &flood{tokens: make(chan struct{}, window), done: make(chan struct{})}
	f.left.Store(int64(n))
	for range window {
		f.tokens <- struct{}{}
	}
	if !c.flood.CompareAndSwap(nil, f) {
		return errors.New("componenttest: a PingFlood is already running on this connection")
	}
	defer c.flood.Store(nil)
	to, from := c.addr, c.s.opts.Domain
	var buf [48]byte
	for i := range n {
		select {
		case <-f.tokens:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrConnClosed
		}
		idb := strconv.AppendInt(append(buf[:0], floodPrefix...), int64(i), 10)
		err := c.write(ctx, func(b []byte) []byte { return appendPing(b, idb, from, to) })
		if err != nil {
			return c.writeErr(err)
		}
		c.stanzasOut.Add(1)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrConnClosed
	}
	if f.errs.Load() > 0 {
		return ErrIQError
	}
	return nil
}

// SendOversize sends the component a <message> of exactly n bytes (padded
// body), to test its stanza size limit. n must be at least 128.
func (c *Conn) SendOversize(ctx context.Context, n int) error {
	if err := c.ready(); err != nil {
		return err
	}
	head := xstream.AppendAttr([]byte("<message"), "from", c.s.opts.Domain)
	head = xstream.AppendAttr(head, "to", c.addr)
	head = append(head, " id='oversize'><body>"...)
	tail := "</body></message>"
	pad := n - len(head) - len(tail)
	if pad < 0 || n < 128 {
		return fmt.Errorf("%w: size %d too small", ErrBadStanza, n)
	}
	return c.writeErr(c.write(ctx, func(b []byte) []byte {
		b = append(b, head...)
		b = append(b, bytes.Repeat([]byte{'x'}, pad)...)
		return append(b, tail...)
	}))
}

// SendStreamError sends a stream error (any condition, with Content for
// see-other-host and optional text) and </stream:stream>, then waits until
// the connection has ended (the peer closed its stream, or CloseTimeout
// passed) or ctx ends. It is meant for established links; to send an
// error during the handshake, use a Fault with ActionStreamError.
func (c *Conn) SendStreamError(ctx context.Context, e stream.Error) error {
	select {
	case <-c.done:
		return ErrConnClosed
	default:
	}
	c.setCondition(e.Err)
	if !c.closeStream(c.appendStreamError(nil, e)) {
		return ErrConnClosed
	}
	return c.WaitClosed(ctx)
}

// CloseStream closes the stream gracefully: it sends </stream:stream> and
// waits until the peer answers with its own (ClosedByPeer then reports
// true), CloseTimeout passes, or ctx ends.
func (c *Conn) CloseStream(ctx context.Context) error {
	select {
	case <-c.done:
		return ErrConnClosed
	default:
	}
	c.setCondition("closed-by-server")
	if !c.closeStream(nil) {
		return ErrConnClosed
	}
	return c.WaitClosed(ctx)
}

// appendPing appends an XEP-0199 ping with the given id (already safe in
// an attribute) from the server domain to the component.
func appendPing(b, id []byte, from, to string) []byte {
	b = append(b, "<iq type='get' id='"...)
	b = append(b, id...)
	b = append(b, "' from='"...)
	b = xstream.AppendEscaped(b, from)
	b = append(b, "' to='"...)
	b = xstream.AppendEscaped(b, to)
	return append(b, "'><ping xmlns='"+nsPing+"'/></iq>"...)
}
