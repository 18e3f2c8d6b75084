package component

import (
	"errors"
	"strings"

	"mellium.im/xmpp/stream"
)

// Sentinel errors. Errors returned by this package wrap them (or a
// *StreamError) so that callers can branch with errors.Is.
var (
	// ErrClosed is returned by sends and pending IQs once Close or Abort was
	// called, and by Err after a local close.
	ErrClosed = errors.New("component: session closed")
	// ErrDisconnected is returned by sends and pending IQs once the link has
	// ended for any reason other than a local Close; the error also wraps
	// the reason (for example a *StreamError or ErrTimeout).
	ErrDisconnected = errors.New("component: link is down")
	// ErrPeerClosed means the server ended the stream with
	// </stream:stream> and no stream error.
	ErrPeerClosed = errors.New("component: the server closed the stream")
	// ErrTimeout means a deadline passed: the handshake took too long, the
	// server stayed silent for Config.ReadTimeout, a ping went unanswered, or
	// an IQ reply did not come in time.
	ErrTimeout = errors.New("component: timed out")
	// ErrNoStreamID means the server's stream header carried no id, so no
	// handshake could be computed; nothing derived from the secret was sent.
	ErrNoStreamID = errors.New("component: the server's stream header has no id")
	// ErrWrongAddress means the server's stream header names a component
	// address other than the one requested.
	ErrWrongAddress = errors.New("component: the server answered for another component address")
	// ErrProtocol means the server sent something the protocol does not
	// allow at that point (for example a stanza instead of the handshake).
	ErrProtocol = errors.New("component: protocol violation by the server")
	// ErrHandshakeProtocol is wrapped by every handshake error that shows
	// the server does not speak XEP-0114 as configured: a stream header
	// that is not a component stream for this address (a client port,
	// another namespace, no or a malformed id, another component's
	// address), or junk, an HTTP answer, a stanza or an unreadable stream
	// error where the handshake reply belongs. The error also wraps what
	// says more (ErrNoStreamID, ErrWrongAddress, ErrProtocol, or the local
	// *StreamError sent). Retrying the same server will not help.
	ErrHandshakeProtocol = errors.New("component: the server's handshake is not XEP-0114")
	// ErrForeignFrom is returned by sends whose from address is outside the
	// component's domain; servers end the stream for such stanzas.
	ErrForeignFrom = errors.New("component: from address outside the component's domain")
	// ErrTooManyPending is returned by SendIQ when Config.MaxPendingIQ
	// requests are already waiting for replies.
	ErrTooManyPending = errors.New("component: too many IQ requests in flight")
	// ErrTooLarge means the server sent a stanza larger than
	// Config.MaxStanzaSize; the link ends with policy-violation.
	ErrTooLarge = errors.New("component: stanza from the server exceeds the size limit")
	// ErrTooDeep means the server sent a stanza nested deeper than
	// Config.MaxDepth; the link ends with policy-violation.
	ErrTooDeep = errors.New("component: stanza from the server exceeds the depth limit")
	// ErrConfig is matched by every *ConfigError: the errors of
	// Config.Validate, Tuning.Validate, NewSession and Handshake for an
	// unusable Config (no name, no secret, malformed address...), and of
	// callbridge's validation, which shares the type.
	ErrConfig = errors.New("component: invalid configuration")

	// ErrNilContext: a function or method was given a nil context.Context
	// (use context.Background() or context.TODO()). The call does nothing
	// else: a session or bridge given one is left as it was.
	ErrNilContext = errors.New("component: nil context.Context")
)

// StreamError is a stream-level error that ended the link: either one the
// server sent (Local false) or one this side sent before closing (Local
// true, with Cause saying why). It wraps the mellium stream.Error, so
//
//	errors.Is(err, stream.NotAuthorized)
//
// works, and Cause, so errors.Is(err, ErrTooLarge) works too.
type StreamError struct {
	// Err is the condition with the server's text and, for
	// see-other-host, the new address.
	Err stream.Error
	// Addr is the component address the link was for.
	Addr string
	// Name is the configured component name ("cb1").
	Name string
	// Local reports that this side detected the problem and sent the error.
	Local bool
	// Cause is the local reason when Local is set.
	Cause error
}

// Condition returns the stream error condition, such as "not-authorized".
func (e *StreamError) Condition() string { return e.Err.Err }

// Text returns the human-readable text the server attached, if any.
func (e *StreamError) Text() string {
	for _, t := range e.Err.Text {
		if t.Lang == "" || strings.HasPrefix(t.Lang, "en") {
			return t.Value
		}
	}
	if len(e.Err.Text) > 0 {
		return e.Err.Text[0].Value
	}
	return ""
}

// OtherHost returns the address a see-other-host error redirects to, and
// whether the error is one.
func (e *StreamError) OtherHost() (string, bool) {
	if e.Err.Err != stream.SeeOtherHost.Err {
		return "", false
	}
	return e.Err.Content, true
}

// Unwrap returns the stream.Error and, for local errors, the cause.
func (e *StreamError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// Error returns an operator-readable message. It never contains the secret.
func (e *StreamError) Error() string {
	cond := e.Err.Err
	var b strings.Builder
	b.WriteString("component: ")
	if e.Local {
		b.WriteString("ended the link to the server with " + cond)
		if e.Cause != nil {
			b.WriteString(": " + e.Cause.Error())
		}
		return b.String()
	}
	addr := e.Addr
	switch cond {
	case "not-authorized":
		b.WriteString("authentication failure: wrong shared secret for " + addr + " (server said not-authorized)")
	case "host-unknown":
		b.WriteString("the XMPP server does not know the component name " + addr +
			" (host-unknown): add the component on the server")
	case "conflict":
		b.WriteString("another link is already connected as " + addr + " (conflict); a stale link may still be closing")
	case "invalid-namespace", "bad-namespace-prefix":
		b.WriteString("the server rejected the stream namespace (" + cond + "): is this the server's component port?")
	case "improper-addressing":
		b.WriteString("the server says a stanza from " + addr + " lacked a from or to address (improper-addressing)")
	case "invalid-from":
		b.WriteString("the server refused a from address that is not " + addr + " or inside it (invalid-from)")
	case "policy-violation":
		b.WriteString("the server ended the link of " + addr + " for a local policy violation (policy-violation)")
	case "see-other-host":
		b.WriteString("the server redirects " + addr + " to " + e.Err.Content + " (see-other-host)")
	case "system-shutdown":
		b.WriteString("the XMPP server is shutting down (system-shutdown)")
	case "connection-timeout":
		b.WriteString("the server timed out the link of " + addr + " (connection-timeout)")
	case "host-gone":
		b.WriteString("the server no longer serves " + addr + " (host-gone)")
	default:
		b.WriteString("stream error from the server for " + addr + ": " + cond)
	}
	if t := e.Text(); t != "" {
		b.WriteString(": server text: " + t)
	}
	return b.String()
}

// handshakeProtocolError marks a handshake error as ErrHandshakeProtocol,
// keeping its message and everything it wraps.
type handshakeProtocolError struct{ err error }

func (e *handshakeProtocolError) Error() string   { return e.err.Error() }
func (e *handshakeProtocolError) Unwrap() []error { return []error{e.err, ErrHandshakeProtocol} }

// notXEP0114 marks err, a handshake error that is the server's protocol
// fault, with ErrHandshakeProtocol.
func notXEP0114(err error) error { return &handshakeProtocolError{err} }
