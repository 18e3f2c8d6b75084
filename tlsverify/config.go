package tlsverify

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"
)

// Policy selects which names the certificate must carry as SANs.
type Policy int

const (
	// RequireBoth, the zero value, requires both the XMPP domain and the
	// server name, as Cisco Meeting Server's Call Bridge does.
	RequireBoth Policy = iota
	// RequireDomain requires only the XMPP domain.
	RequireDomain
	// RequireServerName requires only the server name (FQDN or IP).
	RequireServerName
)

// String returns the constant's name.
func (p Policy) String() string {
	switch p {
	case RequireBoth:
		return "RequireBoth"
	case RequireDomain:
		return "RequireDomain"
	case RequireServerName:
		return "RequireServerName"
	default:
		return fmt.Sprintf("Policy(%d)", int(p))
	}
}

// Config says how to verify an XMPP server's certificate chain. It is a
// plain value, cheap to copy; Verify and TLSConfig only read it, so one
// Config may serve concurrent calls as long as nobody mutates it (or the
// slices and pool it refers to) meanwhile.
type Config struct {
	// Domain is the XMPP domain (for example "example.com"). Required unless
	// Policy is RequireServerName. IDNs may be given in Unicode; they are
	// compared in ASCII (A-label) form.
	Domain string

	// ServerName is the name the server's certificate must carry besides
	// the domain: the SRV target or the configured host, or an explicit
	// override when the address dialled is not in the certificate (a
	// combined server configured as "localhost:5223"). An IP literal here
	// matches only an IP SAN. Required unless Policy is RequireDomain.
	ServerName string

	// Roots are the trusted root CAs. Nil means the system pool.
	Roots *x509.CertPool
	// RootsFile names a PEM bundle of trusted roots (an internal CA, say),
	// used instead of the system pool. Setting both Roots and RootsFile is
	// an error. Verify reads the file on every call; TLSConfig reads it
	// once.
	RootsFile string

	// Policy selects the names required; the zero value requires both.
	Policy Policy

	// Pins are SHA-256 hashes of SubjectPublicKeyInfo, written
	// "sha256/<base64>" (as Summary.SPKIPin prints them; "sha256//" and bare
	// base64 are accepted too) or as 64 hex digits, colons allowed. A
	// certificate the server sends whose key matches a pin is trusted as if
	// it were a root: pins are an extra trust anchor beside Roots, or the
	// only one with PinOnly. Names, dates and key usage are still checked.
	Pins []string
	// PinOnly makes Pins the only trust anchors: Roots, RootsFile and the
	// system pool are not consulted (setting them is an error).
	PinOnly bool

	// InsecureSkipAllVerification turns every check off: chain, dates, key
	// usage, names and pins. Anyone on the path can then impersonate the
	// XMPP server and learn the component handshake. For lab use only.
	InsecureSkipAllVerification bool

	// Now returns the time to check validity at; nil means time.Now. It
	// must be safe for concurrent use.
	Now func() time.Time
}

// TLSConfig returns a client tls.Config that verifies the server with c on
// every handshake, including resumed ones. sni is the name sent in the TLS
// ServerName extension; "" means the XMPP domain, which is what XMPP servers
// such as Prosody expect (they refuse an SNI that is not one of their
// hosts). An IP literal sends no SNI, as crypto/tls does. The minimum
// version is TLS 1.2.
//
// The returned config sets InsecureSkipVerify, because crypto/tls would
// otherwise check the certificate against ServerName alone, which is the
// SNI, not the names an XMPP server's certificate must carry. The full
// verification (chain, dates, key usage, names, pins) runs in
// VerifyConnection instead and fails the handshake with the same errors as
// Verify; do not clear VerifyConnection. With InsecureSkipAllVerification
// nothing is checked.
//
// Roots, RootsFile and Pins are read once, here, and so is the system pool
// when it is the one used (nil Roots, no RootsFile, not PinOnly): the first
// call in a process then takes the time to load it. The config may be used
// for many concurrent dials.
func (c Config) TLSConfig(sni string) (*tls.Config, error) {
	v, err := c.compile()
	if err != nil {
		return nil, err
	}
	name := v.sni
	if sni != "" {
		ref, err := parseReference(sni)
		if err != nil {
			return nil, fmt.Errorf("%w: SNI: %w", ErrInvalidConfig, err)
		}
		name = ref.name
	}
	cfg := &tls.Config{
		ServerName:         name,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // VerifyConnection below does the full check
	}
	if !v.insecure {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return v.verify(cs.PeerCertificates)
		}
		if v.roots == nil && !v.pinOnly {
			loadSystemRoots()
		}
	}
	return cfg, nil
}

// loadSystemRoots has crypto/x509 load the system pool, once per process,
// so that a client that calls TLSConfig before dialling does not load it
// in the middle of its first handshake (about 15 ms for a Debian bundle),
// while the server waits. Verification still asks x509 for the pool as
// before; this only makes the load happen earlier.
var loadSystemRoots = sync.OnceFunc(func() { _, _ = x509.SystemCertPool() })
