package callbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

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
	// Elapsed is how long the step ran before it failed.
	Elapsed time.Duration
	Err     error
}

// stepNames say what each step of a connection does, in messages.
var stepNames = map[State]string{Connecting: "TCP connect", TLS: "TLS handshake", Authenticating: "XEP-0114 handshake"}

func (e *ConnectError) Error() string {
	where := e.Server
	if e.Addr != "" {
		where += " (" + e.Addr + ")"
	}
	step, ok := stepNames[e.Step]
	if !ok {
		step = e.Step.String()
	}
	cause := e.Err.Error()
	if e.Step == TLS {
		cause = strings.TrimPrefix(cause, "tls: ") // crypto/tls's own prefix: said once
	}
	// The step says where: no package prefix in the middle of the text.
	for _, p := range []string{"component: ", "tlsverify: "} {
		cause = strings.TrimPrefix(cause, p)
	}
	if isStall(e.Err) && e.Elapsed > 0 {
		step += fmt.Sprintf(" stalled: no progress for %v", e.Elapsed.Round(time.Millisecond))
	}
	msg := fmt.Sprintf("callbridge: %s: %s: %s", where, step, cause)
	var se *component.StreamError
	if errors.As(e.Err, &se) && se.Condition() == "host-unknown" && se.Name != "" {
		// Our hint, apart from the server's text: a typo in the name is
		// as likely as a component missing on the server; then what a CMS
		// operator types on the XMPP server.
		msg += "; hint: check the Call Bridge name " + strconv.Quote(se.Name) + " first; if it is right, add the component on the XMPP server (on Cisco Meeting Server: xmpp callbridge add " + se.Name + ")"
	}
	return msg
}

// isStall reports whether err says a step ran out of time.
func isStall(err error) bool { return Classify(err) == KindTimeout }

func (e *ConnectError) Unwrap() error { return e.Err }

// PermanentError is what Run returns with StopOnPermanentError when the
// XMPP server refuses the bridge for a reason retrying will not fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string {
	return "callbridge: giving up: " + strings.TrimPrefix(e.Err.Error(), "callbridge: ")
}

func (e *PermanentError) Unwrap() error { return e.Err }

// RedirectError is a see-other-host redirect the bridge could not follow
// (its address does not parse or resolve).
type RedirectError struct {
	Addr string // the address the server gave, cleaned for display
	Err  error
}

func (e *RedirectError) Error() string {
	return "callbridge: cannot follow the server's redirect to " + e.Addr + ": " + e.Err.Error()
}

func (e *RedirectError) Unwrap() error { return e.Err }

// ContractError says that a Config.Resolver or Config.Dialer supplied by
// the program broke its contract: a Dialer returned neither a connection
// nor an error, or a Resolver returned no error with a nil Result, no
// endpoints, or an endpoint without an address. Classify gives
// KindConfig: the program must be fixed, so the bridge treats it as a
// permanent failure (it retries at Backoff.Max, or Run gives up with
// StopOnPermanentError).
type ContractError struct {
	Field string // "Dialer" or "Resolver"
	What  string // what it did, such as "returned no connection and no error"
}

func (e *ContractError) Error() string {
	return "callbridge: Config." + e.Field + " " + e.What
}

// DuplicateNameError is a conflict (the server says another link holds
// the component name) that persisted over Attempts attempts on one server
// spanning For: longer than a stale link of this bridge takes to close,
// so another Call Bridge uses the name, often a cloned machine. Classify
// gives KindDuplicateName, which is permanent. Err is the last attempt's
// error.
type DuplicateNameError struct {
	For      time.Duration
	Attempts int
	Err      error
}

func (e *DuplicateNameError) Error() string {
	return fmt.Sprintf("%v; refused for %v over %d attempts: another Call Bridge uses this name (a cloned machine?); give each Call Bridge its own name",
		e.Err, e.For.Round(time.Second), e.Attempts)
}

func (e *DuplicateNameError) Unwrap() error { return e.Err }

// protocolConditions are the stream error conditions from the server that
// say it does not accept this component's stream as configured.
var protocolConditions = map[string]bool{
	"invalid-namespace":       true,
	"bad-namespace-prefix":    true,
	"bad-format":              true,
	"improper-addressing":     true,
	"invalid-from":            true,
	"unsupported-version":     true,
	"unsupported-encoding":    true,
	"unsupported-feature":     true,
	"unsupported-stanza-type": true,
	"restricted-xml":          true,
	"not-well-formed":         true,
}

// Classify returns the kind of an error from the bridge or from the
// packages it composes (discovery, tlsverify, component, the network): the
// one classification of this module. Its Permanent method says whether an
// operator must act.
func Classify(err error) ErrorKind {
	var (
		nameErr  *tlsverify.NameError
		chainErr *tlsverify.ChainError
		dnsErr   *discovery.Error
		redirErr *RedirectError
		tlsAlert tls.AlertError
		recErr   tls.RecordHeaderError
		netErr   net.Error
		se       *component.StreamError
		ce       *ConnectError
		contract *ContractError
		dup      *DuplicateNameError
	)
	switch {
	case err == nil:
		return KindNone
	case errors.Is(err, ErrClosed), errors.Is(err, component.ErrClosed):
		return KindClosed
	case errors.Is(err, component.ErrConfig), errors.As(err, &contract), errors.Is(err, component.ErrNilContext):
		return KindConfig
	case errors.As(err, &redirErr):
		return KindRedirect
	case errors.As(err, &dup):
		return KindDuplicateName
	case errors.Is(err, discovery.ErrNoService), errors.Is(err, discovery.ErrNoSRV):
		return KindNoService
	case errors.Is(err, discovery.ErrBadAddress), errors.Is(err, tlsverify.ErrInvalidConfig):
		return KindConfig
	case errors.As(err, &dnsErr):
		return KindDNS
	case errors.As(err, &nameErr), errors.As(err, &chainErr):
		return KindCertificate
	case errors.As(err, &recErr): // includes tlsverify.ErrPlainXMPP
		return KindProtocol // the port does not speak TLS
	case errors.Is(err, component.ErrHandshakeProtocol), errors.Is(err, component.ErrNoStreamID), errors.Is(err, component.ErrWrongAddress):
		return KindProtocol // the server's handshake was not XEP-0114
	case errors.As(err, &se):
		switch c := se.Condition(); {
		case se.Local:
			return KindStream // the server broke the protocol mid-session
		case c == "not-authorized":
			return KindAuth
		case c == "host-unknown", c == "host-gone":
			return KindUnknownName
		case c == "conflict":
			return KindConflict
		case c == "see-other-host":
			return KindRedirect
		case c == "system-shutdown":
			return KindShutdown
		case c == "connection-timeout":
			return KindTimeout
		case protocolConditions[c]:
			return KindProtocol
		}
		return KindStream
	case errors.Is(err, component.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, tlsverify.ErrUnrecognizedName):
		// The server serves no name the bridge asked for (SNI: the
		// domain, or Config.SNI): a setting to fix, not a passing fault.
		return KindConfig
	case errors.As(err, &tlsAlert):
		return KindTLS
	case errors.Is(err, component.ErrPeerClosed), errors.Is(err, component.ErrProtocol):
		return KindStream
	case errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.As(err, &ce) && ce.Step == TLS:
		return KindTLS
	}
	return KindNetwork
}
