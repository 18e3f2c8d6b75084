package tlsverify

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Sentinel errors, for errors.Is. A failed verification returns a
// *NameError or a *ChainError that matches one of these; errors.As on those
// types gives the details.
var (
	// ErrNameMismatch: a required name is not among the certificate's SANs.
	ErrNameMismatch = errors.New("tlsverify: certificate name mismatch")
	// ErrExpired: a certificate in the chain is past its NotAfter.
	ErrExpired = errors.New("tlsverify: certificate expired")
	// ErrNotYetValid: a certificate in the chain is before its NotBefore.
	ErrNotYetValid = errors.New("tlsverify: certificate not yet valid")
	// ErrUnknownAuthority: the chain does not reach a trusted root.
	ErrUnknownAuthority = errors.New("tlsverify: certificate signed by unknown authority")
	// ErrKeyUsage: the chain is not valid for TLS server authentication.
	ErrKeyUsage = errors.New("tlsverify: certificate not valid for server authentication")
	// ErrPinMismatch: no certificate in the chain carries a pinned key.
	ErrPinMismatch = errors.New("tlsverify: no certificate matches a pinned key")
	// ErrInvalidChain: any other chain failure (bad signature, name
	// constraints, malformed certificate).
	ErrInvalidChain = errors.New("tlsverify: invalid certificate chain")
	// ErrNoCertificate: the peer presented no certificate.
	ErrNoCertificate = errors.New("tlsverify: no certificate presented")
	// ErrInvalidConfig: the Config cannot be used as given.
	ErrInvalidConfig = errors.New("tlsverify: invalid config")
	// ErrPlainXMPP: the server answered the TLS ClientHello with XML: the
	// port speaks plain XMPP (a component port without TLS such as 5347,
	// or the client port 5222), not direct TLS.
	ErrPlainXMPP = errors.New("this port speaks plain XMPP, not direct TLS; the direct-TLS component port is usually 5223")
	// ErrUnrecognizedName: the server answered the ClientHello with the
	// TLS alert unrecognized_name (RFC 6066 section 3): it serves no such
	// name as the SNI sent, the XMPP domain unless set otherwise. The
	// domain setting is the usual mistake (Prosody answers so for a host
	// it does not serve).
	ErrUnrecognizedName = errors.New("the server serves no host of the name sent as SNI (TLS alert unrecognized_name): check the XMPP domain (or the SNI setting)")
)

// ExplainHandshakeError returns the error of a failed TLS handshake
// (tls.Conn.Handshake) as is, or one that also says what it means: when
// the server answered with XML, an error matching both ErrPlainXMPP and
// err that quotes what it answered; when it sent the alert
// unrecognized_name, an error matching both ErrUnrecognizedName and err.
func ExplainHandshakeError(err error) error {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && bytes.HasPrefix(bytes.TrimLeft(rh.RecordHeader[:], " \t\r\n"), []byte("<")) {
		return &plainXMPPError{header: rh.RecordHeader, err: err}
	}
	// crypto/tls reports an alert received as a *net.OpError "remote
	// error" whose Err (of an unexported type) prints as the alert's
	// AlertError does.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && oe.Err.Error() == alertUnrecognizedName.Error() {
		return fmt.Errorf("%w (%w)", ErrUnrecognizedName, err)
	}
	return err
}

// alertUnrecognizedName is the TLS alert unrecognized_name.
const alertUnrecognizedName tls.AlertError = 112

type plainXMPPError struct {
	header [5]byte
	err    error
}

func (e *plainXMPPError) Error() string {
	return fmt.Sprintf("%v (it answered %q)", ErrPlainXMPP, e.header[:])
}

func (e *plainXMPPError) Unwrap() []error { return []error{ErrPlainXMPP, e.err} }

// Role says why a name is required.
type Role uint8

const (
	// RoleDomain marks the XMPP domain.
	RoleDomain Role = 1 << iota
	// RoleServerName marks the XMPP server's FQDN (or IP address).
	RoleServerName
)

// String returns the role as an operator reads it: "XMPP domain", "server
// name", or both joined by "and".
func (r Role) String() string {
	switch r {
	case RoleDomain:
		return "XMPP domain"
	case RoleServerName:
		return "server name"
	case RoleDomain | RoleServerName:
		return "XMPP domain and server name"
	default:
		return fmt.Sprintf("Role(%d)", uint8(r))
	}
}

// RequiredName is a name the policy requires in the certificate's SANs.
type RequiredName struct {
	// Name is the ASCII form (IDNs as A-labels, lowercase, no trailing
	// dot), or the text form of an IP address.
	Name string
	// IP is set when Name is an IP address, which only an IP SAN matches.
	IP   net.IP
	Role Role
}

// NameError reports required names that the certificate's SANs do not
// cover. It matches ErrNameMismatch.
type NameError struct {
	// Leaf is the certificate that was checked.
	Leaf *x509.Certificate
	// Required lists every name the policy asked for; Missing the ones not
	// covered.
	Required, Missing []RequiredName
	// DNSNames and IPAddresses are the SANs the certificate carries.
	DNSNames    []string
	IPAddresses []net.IP
	// CommonName is the subject CN. It is never used for matching; it is
	// here because operators often put the missing name there.
	CommonName string
	// InCommonNameOnly lists the missing names that the CN would have
	// covered.
	InCommonNameOnly []string
}

// Error returns one line naming the missing SANs, the SANs present and why
// near misses (CN, wildcards, IP as DNS SAN) do not count.
// server names the server whose certificate this is: the FQDN required,
// else the certificate's own first name.
func (e *NameError) server() string {
	for _, r := range e.Required {
		if r.Role&RoleServerName != 0 {
			return r.Name
		}
	}
	return certName(e.Leaf)
}

func (e *NameError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tlsverify: certificate of %s lacks ", e.server())
	if len(e.Missing) == 1 {
		m := e.Missing[0]
		if m.IP != nil {
			b.WriteString("IP ")
		}
		fmt.Fprintf(&b, "SAN %q (%s)", m.Name, m.Role)
	} else {
		b.WriteString("SANs ")
		for i, m := range e.Missing {
			if i > 0 {
				b.WriteString(" and ")
			}
			if m.IP != nil {
				b.WriteString("IP ")
			}
			fmt.Fprintf(&b, "%q (%s)", m.Name, m.Role)
		}
	}
	b.WriteString("; it names ")
	b.WriteString(sanList(e.DNSNames, e.IPAddresses))
	if e.CommonName != "" {
		if len(e.InCommonNameOnly) > 0 {
			fmt.Fprintf(&b, " (CN %q is ignored: only SANs count)", e.CommonName)
		} else {
			fmt.Fprintf(&b, " (CN %q is ignored)", e.CommonName)
		}
	}
	if e.Leaf != nil {
		for _, m := range e.Missing {
			r := reference{name: m.Name, ip: m.IP}
			if h := r.hint(e.Leaf); h != "" {
				b.WriteString("; ")
				b.WriteString(h)
			}
		}
	}
	return b.String()
}

// Is reports whether target is ErrNameMismatch.
func (e *NameError) Is(target error) bool { return target == ErrNameMismatch }

func sanList(dns []string, ips []net.IP) string {
	if len(dns) == 0 && len(ips) == 0 {
		return "no SANs"
	}
	var parts []string
	if len(dns) > 0 {
		parts = append(parts, "DNS:["+strings.Join(dns, " ")+"]")
	}
	if len(ips) > 0 {
		s := make([]string, len(ips))
		for i, ip := range ips {
			s[i] = ip.String()
		}
		parts = append(parts, "IP:["+strings.Join(s, " ")+"]")
	}
	return strings.Join(parts, " ")
}

// certName names a certificate in messages: its first SAN, else its CN.
func certName(c *x509.Certificate) string {
	switch {
	case c == nil:
		return "(none)"
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	case c.Subject.CommonName != "":
		return fmt.Sprintf("CN %q", c.Subject.CommonName)
	default:
		return fmt.Sprintf("%q", c.Subject.String())
	}
}

// ChainError reports a certificate chain that cannot be trusted. Reason is
// the sentinel it matches with errors.Is; Unwrap gives the crypto/x509 error
// when there is one.
type ChainError struct {
	// Reason is one of ErrExpired, ErrNotYetValid, ErrUnknownAuthority,
	// ErrKeyUsage, ErrPinMismatch or ErrInvalidChain.
	Reason error
	// Leaf is the server's certificate; Cert the one at fault, which may be
	// the leaf, an intermediate or a root.
	Leaf, Cert *x509.Certificate
	// Now is the time the chain was checked at.
	Now time.Time
	// Intermediates counts the intermediate certificates the peer sent.
	Intermediates int
	// PinsUnmatched is set when pins were configured as an extra trust
	// anchor and none matched either; the error then also matches
	// ErrPinMismatch.
	PinsUnmatched bool
	// Err is the underlying crypto/x509 error, if any.
	Err error
}

// Error returns one line saying what is wrong with which certificate, with
// dates or issuer as the reason needs.
func (e *ChainError) Error() string {
	var b strings.Builder
	b.WriteString("tlsverify: ")
	which := "certificate for " + certName(e.Leaf)
	if e.Cert != nil && e.Leaf != nil && !e.Cert.Equal(e.Leaf) {
		which = fmt.Sprintf("CA certificate %q in the chain for %s", e.Cert.Subject.String(), certName(e.Leaf))
	}
	b.WriteString(which)
	const day = time.RFC3339
	switch e.Reason {
	case ErrExpired:
		if e.Cert == nil {
			b.WriteString(" expired")
			break
		}
		fmt.Fprintf(&b, " expired at %s (now %s)", e.Cert.NotAfter.UTC().Format(day), e.Now.UTC().Format(day))
	case ErrNotYetValid:
		if e.Cert == nil {
			b.WriteString(" is not yet valid")
			break
		}
		fmt.Fprintf(&b, " is not valid before %s (now %s)", e.Cert.NotBefore.UTC().Format(day), e.Now.UTC().Format(day))
	case ErrUnknownAuthority:
		fmt.Fprintf(&b, " is signed by an unknown authority %q", issuerOf(e.Cert))
		if e.Intermediates == 0 && e.Cert != nil && e.Leaf != nil && e.Cert.Equal(e.Leaf) && !selfSigned(e.Leaf) {
			b.WriteString(" (the server sent no intermediate certificates; add them to its certificate file or trust its CA)")
		} else {
			b.WriteString(" (trust its root CA or pin a key)")
		}
	case ErrKeyUsage:
		fmt.Fprintf(&b, " is not valid for TLS server authentication (extended key usage: %s)", ekuList(e.Cert))
	case ErrPinMismatch:
		fmt.Fprintf(&b, ": no certificate in the chain matches a pinned key (server key is %s)", spkiPin(e.Leaf))
	default:
		b.WriteString(": invalid chain")
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
	}
	if e.PinsUnmatched && e.Reason != ErrPinMismatch {
		fmt.Fprintf(&b, "; no certificate matches a pinned key either (server key is %s)", spkiPin(e.Leaf))
	}
	return b.String()
}

// Is matches Reason, and ErrPinMismatch when PinsUnmatched is set.
func (e *ChainError) Is(target error) bool {
	return target == e.Reason || (e.PinsUnmatched && target == ErrPinMismatch)
}

// Unwrap returns the crypto/x509 error, if any.
func (e *ChainError) Unwrap() error { return e.Err }

func issuerOf(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Issuer.String()
}

func selfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}

func ekuList(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	var s []string
	for _, u := range c.ExtKeyUsage {
		s = append(s, ekuName(u))
	}
	for _, oid := range c.UnknownExtKeyUsage {
		s = append(s, oid.String())
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageAny:
		return "any"
	case x509.ExtKeyUsageServerAuth:
		return "server auth"
	case x509.ExtKeyUsageClientAuth:
		return "client auth"
	case x509.ExtKeyUsageCodeSigning:
		return "code signing"
	case x509.ExtKeyUsageEmailProtection:
		return "email protection"
	case x509.ExtKeyUsageTimeStamping:
		return "time stamping"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSP signing"
	default:
		return fmt.Sprintf("usage %d", int(u))
	}
}

// chainError turns a crypto/x509 verification error into a *ChainError.
// chain is the peer's chain, leaf first.
func chainError(err error, chain []*x509.Certificate, intermediates int, now time.Time) *ChainError {
	leaf := chain[0]
	ce := &ChainError{Reason: ErrInvalidChain, Leaf: leaf, Cert: leaf, Now: now, Intermediates: intermediates, Err: err}
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv):
		if inv.Cert != nil {
			ce.Cert = inv.Cert
		}
		switch inv.Reason {
		case x509.Expired:
			ce.Reason = ErrExpired
			if now.Before(ce.Cert.NotBefore) {
				ce.Reason = ErrNotYetValid
			}
		case x509.IncompatibleUsage:
			ce.Reason = ErrKeyUsage
		}
	case errors.As(err, &ua):
		ce.Reason = ErrUnknownAuthority
		// crypto/x509 names the leaf; the operator needs the issuer
		// missing above the last certificate the server did send.
		ce.Cert = topOfChain(chain)
	}
	return ce
}

// topOfChain follows issuers from the leaf through the certificates the
// peer sent and returns the last one reached.
func topOfChain(chain []*x509.Certificate) *x509.Certificate {
	cur := chain[0]
	used := make([]bool, len(chain))
	used[0] = true
	for range chain {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			return cur // self-issued: nothing above it
		}
		next := -1
		for i, c := range chain {
			if !used[i] && c != nil && bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = i
				break
			}
		}
		if next < 0 {
			return cur
		}
		used[next] = true
		cur = chain[next]
	}
	return cur
}
