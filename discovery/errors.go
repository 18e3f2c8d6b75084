package discovery

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors, matched with errors.Is against what Lookup and
// ParseAddress return.
var (
	// ErrNoService means the SRV record set is the single target "." (RFC
	// 2782): the domain says it offers no such service. There is no fallback.
	ErrNoService = errors.New("discovery: service explicitly not available at this domain (SRV target \".\")")
	// ErrNoSRV means the domain has no SRV records for the service
	// (NXDOMAIN or an empty answer).
	ErrNoSRV = errors.New("discovery: no SRV records")
	// ErrNoAddresses means no target had any IPv4 or IPv6 address.
	ErrNoAddresses = errors.New("discovery: no target has an address")
	// ErrBadAddress means a server address or domain setting is malformed.
	ErrBadAddress = errors.New("discovery: bad address")
)

// Kind classifies an [Error].
type Kind int

// Kinds of [Error].
const (
	KindUnknown       Kind = iota
	KindBadAddress         // a setting does not parse (ErrBadAddress)
	KindNotFound           // NXDOMAIN or no records of the type asked
	KindNoService          // SRV target "." (ErrNoService)
	KindNoSRV              // no SRV records (ErrNoSRV)
	KindNoAddresses        // no target has an address (ErrNoAddresses)
	KindTimeout            // no name server answered in time, or ctx's deadline passed
	KindServerFailure      // SERVFAIL or another error rcode
	KindRefused            // REFUSED
	KindNetwork            // the name server could not be reached
	KindMalformed          // the reply does not parse or holds invalid records
	KindWrongName          // the reply answers another question
	KindTruncated          // the reply stayed truncated even over TCP
	KindCNAMELoop          // a CNAME chain loops or is too long
	KindTooLarge           // more records than the resolver accepts
	KindNoNameServers      // no name server is configured
	KindCanceled           // the caller's context was cancelled (Err wraps context.Canceled)
)

var kindNames = [...]string{
	KindUnknown:       "unknown",
	KindBadAddress:    "bad address",
	KindNotFound:      "not found",
	KindNoService:     "no service",
	KindNoSRV:         "no SRV records",
	KindNoAddresses:   "no addresses",
	KindTimeout:       "timeout",
	KindServerFailure: "server failure",
	KindRefused:       "refused",
	KindNetwork:       "network error",
	KindMalformed:     "malformed reply",
	KindWrongName:     "reply for the wrong name",
	KindTruncated:     "truncated reply",
	KindCNAMELoop:     "CNAME loop",
	KindTooLarge:      "too many records",
	KindNoNameServers: "no name servers",
	KindCanceled:      "canceled",
}

// String names k.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// errNilContext: Lookup was given a nil context.Context.
var errNilContext = errors.New("nil context.Context (use context.Background())")

// Error is a discovery failure, like net.DNSError: it names the operation,
// the name or setting involved and, when one answered, the name server.
type Error struct {
	Op     string // "lookup SRV", "lookup A", "parse server address", ...
	Name   string // the DNS name or setting value concerned
	Server string // name server address, if the error came from one
	Kind   Kind
	Err    error // underlying cause; may wrap a sentinel
}

// Error formats e as "discovery: <op> "<name>"[ at <server>]: <cause>".
func (e *Error) Error() string {
	s := "discovery: " + e.Op + " " + strconv.Quote(e.Name)
	if e.Server != "" {
		s += " at " + e.Server
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	} else {
		s += ": " + e.Kind.String()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// IsNotFound reports whether the name or service does not exist (as opposed
// to a failure to find out).
func (e *Error) IsNotFound() bool {
	switch e.Kind {
	case KindNotFound, KindNoSRV, KindNoService:
		return true
	}
	return false
}

// IsTimeout reports whether the failure was a timeout.
func (e *Error) IsTimeout() bool { return e.Kind == KindTimeout }

// IsTemporary reports whether trying again later may succeed: timeouts,
// server failures, refusals, network errors and bad replies.
func (e *Error) IsTemporary() bool {
	switch e.Kind {
	case KindTimeout, KindServerFailure, KindRefused, KindNetwork, KindMalformed,
		KindWrongName, KindTruncated, KindNoAddresses:
		return true
	}
	return false
}

// Is lets errors.Is match an Error against the sentinel of its Kind even
// when Err does not wrap it.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNoService:
		return e.Kind == KindNoService
	case ErrNoSRV:
		return e.Kind == KindNoSRV
	case ErrNoAddresses:
		return e.Kind == KindNoAddresses
	case ErrBadAddress:
		return e.Kind == KindBadAddress
	}
	return false
}

// joinedError lists several causes on one line; errors.Is and errors.As
// see each of them.
type joinedError struct {
	prefix string
	errs   []error
}

func joinErrors(prefix string, errs []error) error { return &joinedError{prefix, errs} }

func (e *joinedError) Error() string {
	var b strings.Builder
	b.WriteString(e.prefix)
	for i, err := range e.errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimPrefix(err.Error(), "discovery: ")) // said once, by the outer error
	}
	return b.String()
}

func (e *joinedError) Unwrap() []error { return e.errs }

// ctxError reports that ctx ended with err: KindTimeout for a passed
// deadline, KindCanceled otherwise.
func ctxError(op, name string, err error) *Error {
	k := KindCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		k = KindTimeout
	}
	return &Error{Op: op, Name: name, Kind: k, Err: err}
}

func isContextError(err error) bool {
	var e *Error
	if errors.As(err, &e) && e.Kind == KindCanceled {
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
