package callbridge

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// State is where the bridge is in its connection cycle.
//
// A cycle runs Resolving -> Connecting -> TLS -> Authenticating ->
// Connected. A failure at any step moves to the next endpoint (back to
// Connecting) or, when every endpoint failed, to BackingOff and then Resolving
// again. Connected moves to Resolving when the link drops, and to Draining
// when Update replaces it: the old link refuses new requests and finishes
// those it has, then the cycle starts again with the new settings. Close,
// Shutdown or the end of Run's context move any state to Stopping once the
// link refuses new requests, while it is taken down (queued requests
// drained or answered), then to Stopped when Run returns; nothing leaves
// Stopping but Stopped, and Stopped is final. Only Connected takes
// requests: it is the one state a readiness check should treat as ready.
//
//	Idle -> Resolving -> Connecting -> TLS -> Authenticating -> Connected
//	            ^  ^          ^__________|______________|          |  |
//	            |  |__ BackingOff <- (every endpoint failed)       |  |
//	            |_____________ (link dropped) _____________________|  |
//	            |_____________ Draining <- (Update) __________________|
//	any state -> Stopping -> Stopped
type State int

const (
	// Idle: Run has not been called yet.
	Idle State = iota
	// Resolving: looking up the server (SRV, then A/AAAA), or parsing the
	// explicit address.
	Resolving
	// Connecting: opening TCP connections to an endpoint's addresses.
	Connecting
	// TLS: the TLS handshake and certificate checks.
	TLS
	// Authenticating: the XEP-0114 component handshake.
	Authenticating
	// Connected: the link is up and join requests are being handled.
	Connected
	// Draining: Update is replacing the link; the old one refuses new
	// requests (service-unavailable, type wait) and finishes those it has,
	// within Config.DrainTimeout. Not ready.
	Draining
	// BackingOff: every endpoint failed; waiting before the next cycle.
	BackingOff
	// Stopping: Close, Shutdown or the end of Run's context is taking the
	// link down. Readiness checks should treat it as not ready.
	Stopping
	// Stopped: Run has returned.
	Stopped
)

var stateNames = [...]string{"idle", "resolving", "connecting", "tls", "authenticating", "connected", "draining", "backoff", "stopping", "stopped"}

// States lists every State in order, for metrics and status pages.
func States() []State {
	s := make([]State, len(stateNames))
	for i := range s {
		s[i] = State(i)
	}
	return s
}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText makes a State print by name in JSON and logs.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ErrorKind classifies why a cycle failed or a link ended, for status,
// stats and logs. Classify gives the kind of any error of this module;
// Permanent tells the kinds an operator must fix (the bridge keeps trying
// at Backoff.Max, or stops with StopOnPermanentError).
type ErrorKind string

// Error kinds, and whether each is permanent.
const (
	KindNone ErrorKind = ""
	// KindConfig (permanent): invalid settings, or settings the server
	// shows wrong: its TLS alert unrecognized_name says it serves no such
	// name as the SNI sent (Domain, or SNI; tlsverify.ErrUnrecognizedName).
	KindConfig ErrorKind = "config"
	// KindNoService (permanent): the domain publishes no component service
	// (SRV target ".", or no SRV records and no fallback).
	KindNoService ErrorKind = "no-service"
	// KindDNS: a lookup failed (timeout, SERVFAIL, no address).
	KindDNS ErrorKind = "dns"
	// KindNetwork: TCP could not connect, or the connection failed.
	KindNetwork ErrorKind = "network"
	// KindTLS: the TLS handshake failed (an alert, an abrupt end).
	KindTLS ErrorKind = "tls"
	// KindCertificate (permanent): the server's certificate is not trusted
	// or lacks a name it must carry.
	KindCertificate ErrorKind = "certificate"
	// KindProtocol (permanent): the server does not speak XEP-0114 as the
	// settings expect: not TLS at all, a stream header without id or for
	// another component, a wrong namespace, junk instead of the handshake
	// reply, or a stream error saying so (invalid-namespace,
	// improper-addressing, invalid-from, unsupported-...). Usually a wrong
	// port or a component misconfigured on the server.
	KindProtocol ErrorKind = "protocol"
	// KindAuth (permanent): the server refused the shared secret.
	KindAuth ErrorKind = "auth"
	// KindUnknownName (permanent): the server does not know the component
	// name (host-unknown, host-gone).
	KindUnknownName ErrorKind = "unknown-name"
	// KindConflict: another link holds the name (often our own stale one).
	KindConflict ErrorKind = "conflict"
	// KindDuplicateName (permanent): the server has refused the name with
	// conflict for longer than a stale link of this bridge lasts: another
	// Call Bridge uses the name (a cloned machine). See DuplicateNameError.
	KindDuplicateName ErrorKind = "duplicate-name"
	// KindRedirect: the server sent see-other-host (followed once), or its
	// redirect could not be followed.
	KindRedirect ErrorKind = "redirect"
	// KindShutdown: the server said it is shutting down.
	KindShutdown ErrorKind = "server-shutdown"
	// KindStream: another stream error, or the server closed the stream.
	KindStream ErrorKind = "stream"
	// KindTimeout: a step, a ping or a read timed out.
	KindTimeout ErrorKind = "timeout"
	// KindClosed: the link was closed by this side (Close, Update).
	KindClosed ErrorKind = "closed"
	// KindFailBack: a link closed because a preferred server took over.
	KindFailBack ErrorKind = "fail-back"
)

// ErrorKinds lists every ErrorKind but KindNone, in the order declared,
// so that metrics can show every kind from the start, at zero.
func ErrorKinds() []ErrorKind {
	return []ErrorKind{
		KindConfig, KindNoService, KindDNS, KindNetwork, KindTLS, KindCertificate,
		KindProtocol, KindAuth, KindUnknownName, KindConflict, KindDuplicateName, KindRedirect,
		KindShutdown, KindStream, KindTimeout, KindClosed, KindFailBack,
	}
}

// Permanent reports whether an error of kind k will not go away until an
// operator fixes the settings, the DNS, the certificate or the XMPP
// server: KindConfig, KindNoService, KindCertificate, KindProtocol,
// KindAuth, KindUnknownName and KindDuplicateName.
func (k ErrorKind) Permanent() bool {
	switch k {
	case KindConfig, KindNoService, KindCertificate, KindProtocol, KindAuth, KindUnknownName, KindDuplicateName:
		return true
	}
	return false
}

// Status is a snapshot of the bridge. Fields describe the current or last
// attempt; by the time a caller reads it the bridge may have moved on.
type Status struct {
	State State `json:"state"`
	// Server is the FQDN of the XMPP server in use or being tried (the SRV
	// target or the explicit host); Addr the IP:port.
	Server string `json:"server,omitempty"`
	Addr   string `json:"addr,omitempty"`
	// Since is when State was entered, or when a fail-back moved the link
	// to another server while Connected.
	Since time.Time `json:"since"`
	// Attempt counts failed cycles since the last successful connection.
	Attempt int `json:"attempt"`
	// Backoff is the wait in progress while State is BackingOff.
	Backoff time.Duration `json:"backoff,omitempty"`
	// LastErr is the most recent failure, nil if none since Connected.
	LastErr error `json:"-"`
	// LastErrKind classifies LastErr.
	LastErrKind ErrorKind `json:"last_error_kind,omitempty"`
	// Permanent is the verdict of the last failed cycle: every server's
	// last failure (or the lookup's) is of a kind only an operator can fix
	// (ErrorKind.Permanent), so the bridge retries at Backoff.Max (or
	// stops with StopOnPermanentError). A permanent LastErr from one
	// server while another failed transiently is not: the bridge then
	// retries at the transient pace. False again once a link is up.
	Permanent bool `json:"permanent,omitempty"`
	// ConnectedSince is when the current link came up (zero if none).
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	// Backup is true while the link in use goes to a server that is not
	// among the preferred ones (the lowest SRV priority published): the
	// preferred servers failed. With Config.FailBack the bridge probes
	// them meanwhile, and logs a WARN line at most every ten minutes
	// while they fail.
	Backup bool `json:"backup,omitempty"`
}

// LastError returns LastErr's message, "" when nil; handy for JSON.
func (s Status) LastError() string {
	if s.LastErr == nil {
		return ""
	}
	return s.LastErr.Error()
}

// Event is one state change, delivered to subscribers in order.
type Event struct {
	From, To State
	Status   Status // the status right after the change
	// Dropped counts the events this subscriber lost just before this
	// one because it fell behind (see Bridge.Subscribe): From is then not
	// the To of the event received before.
	Dropped int
}

func (e Event) String() string {
	s := fmt.Sprintf("%s -> %s", e.From, e.To)
	if e.Status.Server != "" {
		s += " server=" + e.Status.Server
	}
	if e.Status.LastErr != nil && e.To != Connected {
		s += " err=" + e.Status.LastErr.Error()
	}
	return s
}

// ErrClosed is returned by Run after Close, by a second call to Run, and
// by sends after the bridge stopped.
var ErrClosed = errors.New("callbridge: closed")

// ErrNotConnected is returned at once by sends while no link is up.
var ErrNotConnected = errors.New("callbridge: not connected")
