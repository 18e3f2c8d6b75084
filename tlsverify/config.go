package tlsverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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

// maxRootsFile bounds how much of a roots file is read: far above any real
// CA bundle (the Mozilla one is about 220 KB), small enough to be harmless.
const maxRootsFile = 16 << 20

// LoadRoots reads a PEM bundle of CA certificates into a new pool. It fails
// when the file holds no certificate or a certificate that does not parse,
// so a wrong file (a key, a DER certificate) is caught at set-up.
func LoadRoots(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: roots file: %w", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRootsFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: roots file: %w", ErrInvalidConfig, err)
	}
	if len(data) > maxRootsFile {
		return nil, fmt.Errorf("%w: roots file %s is larger than %d bytes", ErrInvalidConfig, path, maxRootsFile)
	}
	pool, n, err := parseRoots(data)
	if err != nil {
		return nil, fmt.Errorf("%w: roots file %s: %w", ErrInvalidConfig, path, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: roots file %s holds no PEM CERTIFICATE block", ErrInvalidConfig, path)
	}
	return pool, nil
}

func parseRoots(data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return pool, n, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
}

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
// Roots, RootsFile and Pins are read once, here. The config may be used for
// many concurrent dials.
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
	}
	return cfg, nil
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
