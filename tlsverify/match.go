package tlsverify

import (
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// reference is a name the certificate must carry (an RFC 6125 "reference
// identifier"), normalised once so that matching is a byte comparison.
type reference struct {
	name string // lowercase ASCII (A-labels), no trailing dot; or the IP's text form
	ip   net.IP // set when the reference is an IP literal: only IP SANs match it
}

// parseReference normalises a configured name: an IP literal stays an IP;
// anything else must be a host name, which is converted to its ASCII form
// (IDNA, UTS #46 lookup profile), lowercased and stripped of one trailing dot.
func parseReference(s string) (reference, error) {
	if s == "" {
		return reference{}, fmt.Errorf("empty name")
	}
	if ip := net.ParseIP(s); ip != nil {
		return reference{name: ip.String(), ip: ip}, nil
	}
	host := strings.TrimSuffix(s, ".")
	ascii, err := idna.Lookup.ToASCII(host)
	if err != nil {
		return reference{}, fmt.Errorf("%q is not a valid host name: %w", s, err)
	}
	ascii = asciiLower(ascii)
	if !validHostname(ascii) {
		return reference{}, fmt.Errorf("%q is not a valid host name (want letters, digits, hyphens and dots, without port)", s)
	}
	return reference{name: ascii}, nil
}

// validHostname reports whether s is a lowercase LDH host name (RFC 1123)
// of at most 253 bytes with labels of 1 to 63 bytes.
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// asciiLower lowercases ASCII letters only. strings.ToLower would also fold
// some non-ASCII runes onto ASCII ones (KELVIN SIGN to "k"), which would let
// a non-ASCII SAN match an ASCII name.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}

// normalizeSAN prepares a DNS SAN from a certificate for comparison: one
// trailing dot dropped, ASCII lowercased. SANs holding anything but
// printable ASCII are unusable (RFC 5280 requires IA5String, and IDNs appear
// as A-labels), so they never match.
func normalizeSAN(san string) (string, bool) {
	san = strings.TrimSuffix(san, ".")
	if san == "" {
		return "", false
	}
	for i := 0; i < len(san); i++ {
		if c := san[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return asciiLower(san), true
}

// matchDNS reports whether the DNS SAN san covers the normalised host name
// ref under RFC 6125 section 6.4: equal ignoring ASCII case and a trailing
// dot, or san is "*." followed by exactly the labels of ref after its first
// one. The wildcard stands for one whole label (never part of a label, never
// several labels) and is refused over a bare public suffix ("*.com",
// "*.co.uk") and over a single label.
func matchDNS(ref, san string) bool {
	s, ok := normalizeSAN(san)
	if !ok {
		return false
	}
	if s == ref {
		return true
	}
	base, ok := strings.CutPrefix(s, "*.")
	if !ok {
		return false
	}
	first, rest, ok := strings.Cut(ref, ".")
	if !ok || first == "" || rest != base {
		return false
	}
	return wildcardBaseAllowed(base)
}

// wildcardBaseAllowed reports whether "*."+base may be honoured: base must
// have at least two labels and not be an ICANN public suffix. Private
// suffixes (like "appspot.com") are allowed because their owners do hold
// such wildcard certificates legitimately.
func wildcardBaseAllowed(base string) bool {
	if !strings.Contains(base, ".") {
		return false
	}
	suffix, icann := publicsuffix.PublicSuffix(base)
	return !(icann && suffix == base)
}

// matches reports whether cert carries a SAN that covers ref. The subject
// CN is never consulted.
func (r reference) matches(dnsNames []string, ips []net.IP) bool {
	if r.ip != nil {
		for _, ip := range ips {
			if ip.Equal(r.ip) {
				return true
			}
		}
		return false
	}
	for _, san := range dnsNames {
		if matchDNS(r.name, san) {
			return true
		}
	}
	return false
}

// hint explains, for an operator, why a name that looks present in cert
// does not count; it returns "" when there is nothing to add.
func (r reference) hint(cert *x509.Certificate) string {
	if r.ip != nil {
		for _, san := range cert.DNSNames {
			if s, ok := normalizeSAN(san); ok && s == r.name {
				return fmt.Sprintf("%q is listed as a DNS SAN, but an IP address matches only an IP SAN", r.name)
			}
		}
		return ""
	}
	first, rest, hasDot := strings.Cut(r.name, ".")
	for _, san := range cert.DNSNames {
		s, ok := normalizeSAN(san)
		if !ok {
			continue
		}
		base, wild := strings.CutPrefix(s, "*.")
		if !wild {
			continue
		}
		switch {
		case base == r.name:
			return fmt.Sprintf("%q does not cover %q itself", san, r.name)
		case hasDot && first != "" && base == rest && !wildcardBaseAllowed(base):
			return fmt.Sprintf("%q is a wildcard over a public suffix and is never honoured", san)
		case strings.HasSuffix(r.name, "."+base):
			return fmt.Sprintf("%q covers exactly one label, not %q", san, r.name)
		}
	}
	return ""
}

// inCommonName reports whether the subject CN of cert would have matched
// ref, had CNs counted.
func (r reference) inCommonName(cert *x509.Certificate) bool {
	cn := cert.Subject.CommonName
	if cn == "" {
		return false
	}
	if r.ip != nil {
		ip := net.ParseIP(cn)
		return ip != nil && ip.Equal(r.ip)
	}
	return matchDNS(r.name, cn)
}
