package callbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/tlsverify"
)

// ConnectError is why one attempt to reach one server failed: the server
// (SRV target or explicit host), the address dialled when there was one,
// the step that failed, and the cause. errors.Is/As see through it to the
// cause (a *tlsverify.NameError, a *component.StreamError, ...).
type ConnectError struct {
	Server string
	Addr   string
	Step   State // Connecting, TLS or Authenticating
	Err    error
}

func (e *ConnectError) Error() string {
	where := e.Server
	if e.Addr != "" {
		where += " (" + e.Addr + ")"
	}
	return fmt.Sprintf("callbridge: %s: %s: %v", where, e.Step, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// PermanentError is what Run returns with StopOnPermanentError when the
// XMPP server refuses the bridge for a reason retrying will not fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string {
	return "callbridge: giving up: " + e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// kindOf classifies an error for status, stats and logs.
func kindOf(err error) ErrorKind {
	var (
		nameErr  *tlsverify.NameError
		chainErr *tlsverify.ChainError
		dnsErr   *discovery.Error
		tlsAlert tls.AlertError
		recErr   tls.RecordHeaderError
		netErr   net.Error
	)
	switch {
	case err == nil:
		return KindNone
	case errors.Is(err, ErrClosed), errors.Is(err, component.ErrClosed):
		return KindClosed
	case errors.Is(err, ErrInvalidConfig), errors.Is(err, component.ErrConfig):
		return KindConfig
	case errors.Is(err, discovery.ErrNoService):
		return KindNoService
	case errors.As(err, &dnsErr):
		return KindDNS
	case errors.As(err, &nameErr), errors.As(err, &chainErr):
		return KindCertificate
	case errors.Is(err, stream.NotAuthorized):
		return KindAuth
	case errors.Is(err, stream.HostUnknown):
		return KindUnknownName
	case errors.Is(err, stream.Conflict):
		return KindConflict
	case errors.Is(err, stream.SeeOtherHost):
		return KindRedirect
	case errors.Is(err, stream.SystemShutdown):
		return KindShutdown
	case errors.Is(err, component.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.As(err, &tlsAlert), errors.As(err, &recErr):
		return KindTLS
	}
	var se *component.StreamError
	if errors.As(err, &se) || errors.Is(err, component.ErrPeerClosed) || errors.Is(err, component.ErrProtocol) {
		return KindStream
	}
	if errors.As(err, &netErr) && netErr.Timeout() {
		return KindTimeout
	}
	var ce *ConnectError
	if errors.As(err, &ce) && ce.Step == TLS {
		return KindTLS
	}
	return KindNetwork
}
