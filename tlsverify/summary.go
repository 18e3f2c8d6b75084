package tlsverify

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// Summary is what an operator needs to see of a certificate to fix it: who
// it is for, who issued it, the names it carries and when it is valid.
type Summary struct {
	// Subject and Issuer are distinguished names in RFC 2253 form.
	Subject, Issuer string
	// CommonName is the subject CN. It plays no part in name matching.
	CommonName string
	// DNSNames and IPAddresses are the SANs, as the certificate holds them.
	DNSNames, IPAddresses []string
	// NotBefore and NotAfter bound the validity period.
	NotBefore, NotAfter time.Time
	// IsCA is set for CA certificates.
	IsCA bool
	// SHA256 is the certificate fingerprint, colon-separated uppercase hex,
	// as "openssl x509 -fingerprint -sha256" prints it.
	SHA256 string
	// SPKIPin is the SHA-256 of the public key in the form Config.Pins
	// accepts.
	SPKIPin string
}

// Summarize extracts a Summary from c. A nil c gives the zero Summary.
func Summarize(c *x509.Certificate) Summary {
	if c == nil {
		return Summary{}
	}
	s := Summary{
		Subject:    c.Subject.String(),
		Issuer:     c.Issuer.String(),
		CommonName: c.Subject.CommonName,
		DNSNames:   append([]string(nil), c.DNSNames...),
		NotBefore:  c.NotBefore,
		NotAfter:   c.NotAfter,
		IsCA:       c.IsCA,
		SHA256:     certFingerprint(c),
		SPKIPin:    spkiPin(c),
	}
	for _, ip := range c.IPAddresses {
		s.IPAddresses = append(s.IPAddresses, ip.String())
	}
	return s
}

// String formats the summary over several lines, one field per line.
func (s Summary) String() string {
	var sans []string
	for _, d := range s.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	for _, ip := range s.IPAddresses {
		sans = append(sans, "IP:"+ip)
	}
	if len(sans) == 0 {
		sans = []string{"none"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "subject:  %s\n", s.Subject)
	fmt.Fprintf(&b, "issuer:   %s\n", s.Issuer)
	fmt.Fprintf(&b, "SANs:     %s\n", strings.Join(sans, ", "))
	fmt.Fprintf(&b, "validity: %s to %s\n", s.NotBefore.UTC().Format(time.RFC3339), s.NotAfter.UTC().Format(time.RFC3339))
	if s.IsCA {
		b.WriteString("CA:       yes\n")
	}
	fmt.Fprintf(&b, "SHA-256:  %s\n", s.SHA256)
	fmt.Fprintf(&b, "SPKI pin: %s", s.SPKIPin)
	return b.String()
}
