package componenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"os"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/internal/xstream"
)

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
		tc := tls.Server(firstByteConn{c.nc, &c.timing}, conf)
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
	c.timing.mark(&c.timing.auth)
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
