package component

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cblink/cblink/internal/xstream"
)

// noIDGrace is how long the handshake waits, after a header without id,
// for the stream error that usually explains it (host-unknown).
const noIDGrace = 200 * time.Millisecond

// bestEffortWrite bounds writes made while giving up on a link.
const bestEffortWrite = 200 * time.Millisecond

// handshake runs the XEP-0114 handshake. It never sends anything derived
// from the secret unless the server's header carried a non-empty id.
func (s *Session) handshake(ctx context.Context) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetDeadline(dl)
	}
	// Cancellation sets an immediate deadline, which unblocks any read or
	// write without a goroutine of our own.
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetDeadline(time.Unix(1, 0)) })
	err = s.handshakeSteps(ctx)
	if !stop() && err == nil {
		// ctx ended while the last step ran: the deadline may be cut
		// short; a session started now would fail oddly, so give up.
		err = ctx.Err()
	}
	if err != nil && (ctx.Err() != nil || isTimeout(err)) {
		// Every deadline set during the handshake comes from ctx; the
		// connection may report it before ctx itself has expired.
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("component: handshake for %s: %w (%w)", s.cfg.addrStr, ErrTimeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("component: handshake for %s: %w", s.cfg.addrStr, ctx.Err())
	}
	if err != nil {
		return err
	}
	return s.conn.SetDeadline(time.Time{})
}

func (s *Session) handshakeSteps(ctx context.Context) error {
	addr := s.cfg.addrStr
	if _, err := s.conn.Write(xstream.AppendHeader(nil, xstream.Header{To: addr})); err != nil {
		return fmt.Errorf("component: handshake for %s: send stream header: %w", addr, err)
	}
	h, err := s.dec.ReadHeader()
	if err != nil {
		return s.handshakeReadErr("read the server's stream header", err)
	}
	if h.From != "" && !strings.EqualFold(h.From, addr) {
		s.giveUp(nil)
		return notXEP0114(fmt.Errorf("%w: asked for %s, the server answered for %q", ErrWrongAddress, addr, xstream.CleanText(h.From)))
	}
	if h.ID == "" {
		// A server that knows no such component often sends a header
		// without id followed by host-unknown: report that if it comes.
		grace := time.Now().Add(noIDGrace)
		if dl, ok := ctx.Deadline(); ok && dl.Before(grace) {
			grace = dl
		}
		_ = s.conn.SetReadDeadline(grace)
		if el, err := s.nextElement(); err == nil && isStreamError(&el) {
			return s.serverStreamError(el.Raw)
		}
		s.giveUp(nil)
		return notXEP0114(fmt.Errorf("%w (component %s); nothing derived from the secret was sent", ErrNoStreamID, addr))
	}
	digest := xstream.HandshakeDigest(h.ID, s.cfg.Secret.reveal())
	msg := make([]byte, 0, 64)
	msg = append(msg, "<handshake>"...)
	msg = append(msg, digest[:]...)
	msg = append(msg, "</handshake>"...)
	_, err = s.conn.Write(msg)
	clear(msg)
	clear(digest[:])
	if err != nil {
		return fmt.Errorf("component: handshake for %s: send handshake: %w", addr, err)
	}
	el, err := s.nextElement()
	if err != nil {
		if errors.Is(err, xstream.ErrStreamEnd) {
			s.giveUp(nil)
			return fmt.Errorf("component: handshake for %s: %w", addr, ErrPeerClosed)
		}
		return s.handshakeReadErr("read the handshake reply", err)
	}
	switch {
	case isStreamError(&el):
		return s.serverStreamError(el.Raw)
	case string(el.Name()) == "handshake":
		if ns, ok := el.Attr("xmlns"); ok && string(ns) != xstream.NSComponent {
			s.giveUp(nil)
			return notXEP0114(fmt.Errorf("%w: handshake reply in namespace %q", ErrProtocol, xstream.CleanText(string(ns))))
		}
		if len(bytes.TrimSpace(el.Inner())) != 0 {
			s.giveUp(nil)
			return notXEP0114(fmt.Errorf("%w: handshake reply is not empty", ErrProtocol))
		}
		return nil
	default:
		s.giveUp(nil)
		return notXEP0114(fmt.Errorf("%w: <%s> instead of the handshake reply", ErrProtocol, truncate(el.Name(), 64)))
	}
}

// nextElement returns the next element, skipping whitespace keepalives.
func (s *Session) nextElement() (xstream.Element, error) {
	for {
		el, err := s.dec.Next()
		if err != nil || !el.Keepalive {
			return el, err
		}
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "?")
}

func isStreamError(el *xstream.Element) bool {
	return string(el.Local()) == "error" && len(el.Prefix()) > 0
}

// serverStreamError turns a <stream:error> from the server into a
// *StreamError and answers with our closing tag.
func (s *Session) serverStreamError(raw []byte) error {
	se, err := xstream.ParseStreamError(raw)
	s.giveUp(nil)
	if err != nil {
		return notXEP0114(fmt.Errorf("%w: unreadable stream error: %w", ErrProtocol, err))
	}
	return &StreamError{Err: se, Addr: s.cfg.addrStr, Name: s.cfg.Name}
}

// handshakeReadErr classifies a read failure during the handshake; local
// protocol problems are answered with a stream error.
func (s *Session) handshakeReadErr(step string, err error) error {
	if se := s.localStreamError(err); se != nil {
		s.giveUp(xstream.AppendStreamError(nil, se.Err.Err, "", ""))
		return notXEP0114(se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("the server closed the connection: %w", err)
	}
	return fmt.Errorf("component: handshake for %s: %s: %w", s.cfg.addrStr, step, err)
}

// localStreamError maps decoder errors that are the server's fault to the
// stream error this side answers with; nil for I/O errors.
func (s *Session) localStreamError(err error) *StreamError {
	se := &StreamError{Addr: s.cfg.addrStr, Name: s.cfg.Name, Local: true}
	var syn *xstream.SyntaxError
	var he *xstream.HeaderError
	switch {
	case errors.Is(err, xstream.ErrTooLarge):
		se.Err.Err, se.Cause = "policy-violation", ErrTooLarge
	case errors.Is(err, xstream.ErrTooDeep):
		se.Err.Err, se.Cause = "policy-violation", ErrTooDeep
	case errors.As(err, &syn):
		se.Err.Err = "not-well-formed"
		if syn.Restricted {
			se.Err.Err = "restricted-xml"
		}
		se.Cause = fmt.Errorf("%w: %s at byte %d", ErrProtocol, syn.Msg, syn.Offset)
	case errors.As(err, &he):
		se.Err.Err = he.Condition
		se.Cause = fmt.Errorf("%w: %s", ErrProtocol, strings.TrimPrefix(he.Msg, "xstream: "))
	default:
		return nil
	}
	return se
}

// giveUp writes, best effort and briefly, an optional stream error and our
// closing tag during a failed handshake.
func (s *Session) giveUp(streamErr []byte) {
	b := append(streamErr, xstream.StreamEnd...)
	_ = s.conn.SetWriteDeadline(time.Now().Add(bestEffortWrite))
	_, _ = s.conn.Write(b)
}

// isTimeout reports whether err is a deadline error from the connection.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// enableTCPKeepalive turns on TCP keepalive when conn is a TCP connection
// or wraps one directly (a *tls.Conn, through NetConn), so that a dead peer
// is noticed even on an idle link.
func enableTCPKeepalive(conn net.Conn) {
	if w, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = w.NetConn()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 15 * time.Second, Count: 4})
	}
}
