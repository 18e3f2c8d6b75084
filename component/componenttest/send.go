package componenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/internal/xstream"
)

type reply struct {
	raw   []byte
	isErr bool
}

type waiter struct {
	ch      chan reply
	wantRaw bool
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan reply, 1)} }}

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
	id, w, err := c.startIQ(ctx, raw)
	if err != nil {
		return nil, err
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

// startIQ sends an IQ get or set and registers the waiter its reply will
// be delivered to.
func (c *Conn) startIQ(ctx context.Context, raw []byte) (string, *waiter, error) {
	if err := c.ready(); err != nil {
		return "", nil, err
	}
	el, err := parseOne(raw)
	if err != nil {
		return "", nil, err
	}
	typ := el.AttrString("type")
	if string(el.Name()) != "iq" || (typ != "get" && typ != "set") {
		return "", nil, fmt.Errorf("%w: not an IQ get or set", ErrBadStanza)
	}
	id := el.AttrString("id")
	if id == "" {
		return "", nil, fmt.Errorf("%w: IQ without id", ErrBadStanza)
	}
	w := &waiter{ch: make(chan reply, 1), wantRaw: true}
	c.mu.Lock()
	if _, dup := c.pending[id]; dup {
		c.mu.Unlock()
		return "", nil, fmt.Errorf("%w: id %q already pending", ErrBadStanza, id)
	}
	c.pending[id] = w
	c.mu.Unlock()
	c.stanzasOut.Add(1)
	if err := c.writeBytes(ctx, raw); err != nil {
		c.unregister(id, w)
		return "", nil, c.writeErr(err)
	}
	return id, w, nil
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
// than the server is what a benchmark measures. One flood (PingFlood or
// JoinFlood) at a time per connection; replies of type error make it
// return ErrIQError.
func (c *Conn) PingFlood(ctx context.Context, n, window int) error {
	from := c.s.opts.Domain
	return c.floodIQ(ctx, n, window, func(b, id []byte, to string) []byte { return appendPing(b, id, from, to) })
}

// JoinFlood sends n copies of the join request req (its ID is replaced by
// one of the flood's own; a zero From is a guest of the server's domain)
// to the component, keeping up to window in flight, and returns when all
// have been answered, as PingFlood does. A refusal makes it return
// ErrIQError once all are answered.
func (c *Conn) JoinFlood(ctx context.Context, n, window int, req component.JoinRequest) error {
	from := req.From.String()
	if req.From.Domainpart() == "" {
		from = "guest@" + c.s.opts.Domain + "/web"
	}
	payload := component.AppendJoinPayload(nil, &req)
	return c.floodIQ(ctx, n, window, func(b, id []byte, to string) []byte {
		b = append(b, "<iq type='set' id='"...)
		b = append(b, id...)
		b = xstream.AppendAttr(append(b, '\''), "from", from)
		b = xstream.AppendAttr(b, "to", to)
		b = append(b, '>')
		b = append(b, payload...)
		return append(b, "</iq>"...)
	})
}

// floodIQ sends n IQs appended by appendIQ, with ids of the flood's own,
// to the component's address, window at a time.
func (c *Conn) floodIQ(ctx context.Context, n, window int, appendIQ func(b, id []byte, to string) []byte) error {
	if err := c.ready(); err != nil {
		return err
	}
	to := c.addr // set before the connection is ready
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
		return errors.New("componenttest: a flood is already running on this connection")
	}
	defer c.flood.Store(nil)
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
		err := c.write(ctx, func(b []byte) []byte { return appendIQ(b, idb, to) })
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
