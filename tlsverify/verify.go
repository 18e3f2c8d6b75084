package tlsverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// verifier is a Config checked and prepared once: names normalised, pins
// decoded, roots loaded. It is immutable after compile.
type verifier struct {
	insecure bool
	required []RequiredName
	roots    *x509.CertPool
	pins     [][sha256.Size]byte
	pinOnly  bool
	now      func() time.Time
	sni      string // the domain in ASCII form, the default SNI
}

func (c Config) compile() (*verifier, error) {
	v := &verifier{insecure: c.InsecureSkipAllVerification, now: c.Now, pinOnly: c.PinOnly}
	if v.now == nil {
		v.now = time.Now
	}
	var domain, server reference
	var err error
	if c.Domain != "" {
		if domain, err = parseReference(c.Domain); err != nil {
			return nil, fmt.Errorf("%w: Domain: %w", ErrInvalidConfig, err)
		}
		v.sni = domain.name
	}
	if c.ServerName != "" {
		if server, err = parseReference(c.ServerName); err != nil {
			return nil, fmt.Errorf("%w: ServerName: %w", ErrInvalidConfig, err)
		}
	}
	if v.insecure {
		return v, nil
	}
	needDomain, needServer := true, true
	switch c.Policy {
	case RequireBoth:
	case RequireDomain:
		needServer = false
	case RequireServerName:
		needDomain = false
	default:
		return nil, fmt.Errorf("%w: unknown %v", ErrInvalidConfig, c.Policy)
	}
	if needDomain {
		if c.Domain == "" {
			return nil, fmt.Errorf("%w: Domain is required by %v", ErrInvalidConfig, c.Policy)
		}
		v.required = append(v.required, RequiredName{Name: domain.name, IP: domain.ip, Role: RoleDomain})
	}
	if needServer {
		if c.ServerName == "" {
			return nil, fmt.Errorf("%w: ServerName is required by %v", ErrInvalidConfig, c.Policy)
		}
		if needDomain && server.name == domain.name {
			v.required[0].Role |= RoleServerName
		} else {
			v.required = append(v.required, RequiredName{Name: server.name, IP: server.ip, Role: RoleServerName})
		}
	}

	for i, p := range c.Pins {
		pin, err := parsePin(p)
		if err != nil {
			return nil, fmt.Errorf("%w: Pins[%d]: %w", ErrInvalidConfig, i, err)
		}
		v.pins = append(v.pins, pin)
	}
	switch {
	case c.PinOnly && len(v.pins) == 0:
		return nil, fmt.Errorf("%w: PinOnly without Pins", ErrInvalidConfig)
	case c.PinOnly && (c.Roots != nil || c.RootsFile != ""):
		return nil, fmt.Errorf("%w: PinOnly excludes Roots and RootsFile", ErrInvalidConfig)
	case c.Roots != nil && c.RootsFile != "":
		return nil, fmt.Errorf("%w: set Roots or RootsFile, not both", ErrInvalidConfig)
	case c.RootsFile != "":
		if v.roots, err = LoadRoots(c.RootsFile); err != nil {
			return nil, err
		}
	default:
		v.roots = c.Roots
	}
	return v, nil
}

// parsePin decodes one SPKI pin; see Config.Pins for the forms accepted.
func parsePin(s string) ([sha256.Size]byte, error) {
	var pin [sha256.Size]byte
	t := strings.TrimSpace(s)
	if h := strings.ReplaceAll(t, ":", ""); len(h) == 2*sha256.Size {
		if _, err := hex.Decode(pin[:], []byte(h)); err == nil {
			return pin, nil
		}
	}
	// Base64 may itself start with "/", so "sha256//x" is either curl's
	// form of x or our form of "/x": try both.
	if rest, ok := strings.CutPrefix(t, "sha256/"); ok {
		t = rest
	}
	for _, cand := range []string{t, strings.TrimPrefix(t, "/")} {
		if b, err := base64.StdEncoding.DecodeString(cand); err == nil && len(b) == sha256.Size {
			copy(pin[:], b)
			return pin, nil
		}
	}
	return pin, errors.New(`want "sha256/<base64>" or 64 hex digits: the SHA-256 of a SubjectPublicKeyInfo`)
}

func spkiHash(c *x509.Certificate) [sha256.Size]byte {
	return sha256.Sum256(c.RawSubjectPublicKeyInfo)
}

// spkiPin formats the pin of c's key the way Config.Pins accepts it.
func spkiPin(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	h := spkiHash(c)
	return "sha256/" + base64.StdEncoding.EncodeToString(h[:])
}

// Verify checks a peer's certificate chain (leaf first, then the
// intermediates it sent, as tls.ConnectionState.PeerCertificates holds
// them): that it chains to a trusted root or a pinned key, that every
// certificate is within its validity dates at Now, that it is valid for TLS
// server authentication, and that the leaf's SANs cover the names Policy
// requires (RFC 6125; the subject CN is never used). The chain is checked
// before the names, and the first failure is returned as a *ChainError or
// *NameError; a bad Config gives an error matching ErrInvalidConfig.
//
// Verify does no I/O beyond reading RootsFile: no revocation checks, no
// fetching of missing intermediates.
func (c Config) Verify(chain []*x509.Certificate) error {
	v, err := c.compile()
	if err != nil {
		return err
	}
	return v.verify(chain)
}

var serverAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

func (v *verifier) verify(chain []*x509.Certificate) error {
	if v.insecure {
		return nil
	}
	if len(chain) == 0 || chain[0] == nil {
		return ErrNoCertificate
	}
	leaf := chain[0]
	inters := x509.NewCertPool()
	n := 0
	for _, c := range chain[1:] {
		if c != nil {
			inters.AddCert(c)
			n++
		}
	}
	now := v.now()
	opts := x509.VerifyOptions{Intermediates: inters, CurrentTime: now, KeyUsages: serverAuth}

	var chainErr *ChainError
	if !v.pinOnly {
		opts.Roots = v.roots
		if _, err := leaf.Verify(opts); err != nil {
			chainErr = chainError(err, chain, n, now)
		}
	}
	if v.pinOnly || (chainErr != nil && len(v.pins) > 0) {
		pinned := x509.NewCertPool()
		matched := false
		for _, c := range chain {
			if c != nil && v.pinned(c) {
				pinned.AddCert(c)
				matched = true
			}
		}
		switch {
		case matched:
			opts.Roots = pinned
			chainErr = nil
			if _, err := leaf.Verify(opts); err != nil {
				chainErr = chainError(err, chain, n, now)
			}
		case chainErr != nil:
			// Pins could only have stood in for an unknown root; an
			// expired or misused certificate fails either way.
			chainErr.PinsUnmatched = chainErr.Reason == ErrUnknownAuthority
		default:
			chainErr = &ChainError{Reason: ErrPinMismatch, Leaf: leaf, Cert: leaf, Now: now, Intermediates: n}
		}
	}
	if chainErr != nil {
		return chainErr
	}
	return v.checkNames(leaf)
}

func (v *verifier) pinned(c *x509.Certificate) bool {
	h := spkiHash(c)
	for _, p := range v.pins {
		if p == h {
			return true
		}
	}
	return false
}

func (v *verifier) checkNames(leaf *x509.Certificate) error {
	var missing []RequiredName
	var cnOnly []string
	for _, r := range v.required {
		ref := reference{name: r.Name, ip: r.IP}
		if ref.matches(leaf.DNSNames, leaf.IPAddresses) {
			continue
		}
		missing = append(missing, r)
		if ref.inCommonName(leaf) {
			cnOnly = append(cnOnly, r.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &NameError{
		Leaf:             leaf,
		Required:         append([]RequiredName(nil), v.required...),
		Missing:          missing,
		DNSNames:         leaf.DNSNames,
		IPAddresses:      leaf.IPAddresses,
		CommonName:       leaf.Subject.CommonName,
		InCommonNameOnly: cnOnly,
	}
}

// certFingerprint is the SHA-256 of the whole certificate, colon-separated
// uppercase hex as "openssl x509 -fingerprint -sha256" prints it.
func certFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b bytes.Buffer
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}
