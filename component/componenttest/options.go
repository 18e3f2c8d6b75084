package componenttest

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"time"

	"mellium.im/xmpp/stream"
)

// Defaults of the Options fields, applied when a field is zero.
const (
	DefaultDomain           = "example.com"
	DefaultAddr             = "127.0.0.1:0"
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = time.Hour
	DefaultMaxStanzaSize    = 256 << 10
	DefaultWriteTimeout     = 10 * time.Second
	DefaultCloseTimeout     = time.Second
	DefaultMaxRawLog        = 1 << 20
	DefaultMaxQueued        = 4096
)

// Options configure a Server. The zero value is usable: a direct-TLS server
// for DefaultDomain on a free loopback port, refusing duplicate names.
// NewServer copies the Options; later changes have no effect.
type Options struct {
	// Domain is the XMPP domain the server serves ("example.com"). Pings
	// and IQs addressed to it are answered by the server itself, and it is
	// the default SAN of the generated certificate. Default DefaultDomain.
	Domain string
	// Addr is the address to listen on. Default "127.0.0.1:0". Pass the
	// Addr() of a closed server to come back on the same port.
	Addr string
	// Plain serves plain TCP instead of direct TLS.
	Plain bool

	// DNSNames are the DNS SANs of the generated certificate. Default:
	// Domain and "localhost".
	DNSNames []string
	// IPs are the IP SANs of the generated certificate. Default: 127.0.0.1
	// and ::1.
	IPs []net.IP
	// CACert and CAKey, when both set, sign the generated certificate
	// instead of a fresh CA; CertPool then holds CACert.
	CACert *x509.Certificate
	CAKey  crypto.Signer
	// Certificate, when set, is served as is (nothing is generated);
	// CertPool and RootPEM then return nil unless CACert is also set.
	Certificate *tls.Certificate
	// TLSConfig, when set, is cloned as the base of the server's TLS
	// configuration (e.g. to pin versions); its Certificates are used when
	// not empty, as with Certificate.
	TLSConfig *tls.Config

	// Components is the initial registry: component address (such as
	// "cb1.example.com", not the bare name "cb1") to shared secret.
	Components map[string]string
	// AcceptDuplicates accepts a second link for a name that already has an
	// established one, as ejabberd does. By default the second link is
	// refused with the conflict stream error, as Prosody does.
	AcceptDuplicates bool

	// HandshakeTimeout bounds everything before the component is
	// authenticated: TLS, both headers and the handshake. Default 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout ends an established link with connection-timeout when
	// nothing at all (not even a whitespace keepalive) arrived for that
	// long. Default 1h; negative disables.
	IdleTimeout time.Duration
	// MaxStanzaSize bounds every element the server reads; a larger one is
	// answered with policy-violation. Default 256 KiB.
	MaxStanzaSize int
	// WriteTimeout bounds each write to a connection. Default 10s.
	WriteTimeout time.Duration
	// CloseTimeout is how long the server waits for the peer's
	// </stream:stream> after closing its own stream. Default 1s.
	CloseTimeout time.Duration
	// MaxRawLog bounds the bytes kept per connection for RawReceived (the
	// first bytes are kept). Default 1 MiB; negative keeps nothing.
	MaxRawLog int
	// MaxQueued bounds the stanzas per connection waiting for Next; the
	// oldest are dropped beyond it. Default 4096.
	MaxQueued int

	// Faults, when set, is asked for the faults of every accepted
	// connection that has no pending SetFault; index counts accepted
	// connections from 0 over the server's life.
	Faults FaultFunc
	// Logf receives diagnostics (tests pass t.Logf); nil discards them.
	// Secrets are never logged.
	Logf func(format string, args ...any)
}

// FaultFunc returns the faults to inject into the connection with the
// given accept index (0 for the first connection the server accepted).
type FaultFunc func(index int) []Fault

// Phase is a point in the life of a connection where a Fault fires.
type Phase int

// Phases, in the order a connection goes through them.
const (
	// PhaseAccept: right after the TCP accept, before TLS.
	PhaseAccept Phase = iota + 1
	// PhaseTLS: after the TLS handshake (right after accept when Plain),
	// before the component's stream header is read.
	PhaseTLS
	// PhaseClientHeader: the component's header was read; the server's
	// header is not sent yet. Bytes sent here come before the header (an
	// XML declaration, say).
	PhaseClientHeader
	// PhaseHeader: the server's header was sent; the handshake is not read
	// yet. A stream error here is what Prosody sends for an unknown name.
	PhaseHeader
	// PhaseHandshakeReceived: a correct handshake was read; <handshake/> is
	// not sent yet. A stream error here replaces the success.
	PhaseHandshakeReceived
	// PhaseHandshake: <handshake/> was sent; the link is established.
	PhaseHandshake
	// PhaseStanzas: the component has sent Fault.After stanzas.
	PhaseStanzas
)

var phaseNames = [...]string{"", "accept", "tls", "client-header", "header", "handshake-received", "handshake", "stanzas"}

func (p Phase) String() string {
	if p > 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(?)"
}

// Action is what a Fault does.
type Action int

// Actions.
const (
	// ActionNone does nothing (a Fault may only tweak the header).
	ActionNone Action = iota
	// ActionClose flushes what is queued and closes the TCP connection
	// without a stream error or closing tag.
	ActionClose
	// ActionReset closes the TCP connection with a reset (SO_LINGER 0),
	// dropping what is queued.
	ActionReset
	// ActionStall stops reading and writing, keeping the socket, for
	// Fault.Duration, then carries on; 0 means until the connection or the
	// server is closed (same as ActionBlackhole).
	ActionStall
	// ActionBlackhole stops reading and writing, keeping the socket open,
	// until the connection or the server is closed.
	ActionBlackhole
	// ActionSend sends Fault.Bytes as they are, then carries on.
	ActionSend
	// ActionStreamError sends Fault.Err (after the server's header if it
	// was not sent yet), then </stream:stream>, and closes.
	ActionStreamError
)

// Fault is a misbehaviour to inject into a connection at a Phase.
type Fault struct {
	Phase Phase
	// After is the stanza count for PhaseStanzas.
	After  int
	Action Action
	// Bytes for ActionSend.
	Bytes []byte
	// Err for ActionStreamError: any condition (stream.SystemShutdown,
	// stream.SeeOtherHost with Content set to the new address, ...) and
	// optional text.
	Err stream.Error
	// Duration for ActionStall.
	Duration time.Duration
	// Header changes the server's stream header, whatever Phase says.
	Header HeaderTweak
}

// HeaderTweak changes the server's stream header. The zero value changes
// nothing.
type HeaderTweak struct {
	// OmitID leaves the id attribute out; EmptyID sends id=''.
	OmitID, EmptyID bool
	// ID replaces the random stream id (useful for known digests).
	ID string
	// Namespace replaces the default namespace jabber:component:accept.
	Namespace string
	// StreamNamespace replaces http://etherx.jabber.org/streams.
	StreamNamespace string
	// OmitFrom leaves the from attribute out; From replaces it.
	OmitFrom bool
	From     string
	// Raw, when set, is sent instead of the whole header.
	Raw []byte
}

func (h HeaderTweak) isZero() bool {
	return !h.OmitID && !h.EmptyID && h.ID == "" && h.Namespace == "" && h.StreamNamespace == "" &&
		!h.OmitFrom && h.From == "" && h.Raw == nil
}
