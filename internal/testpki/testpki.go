// Package testpki makes certificate authorities and leaf certificates in
// memory for tests: chosen DNS and IP SANs, CN, validity window, key type and
// intermediates. Every certificate carries explicit NotBefore/NotAfter so
// tests never depend on the wall clock by accident.
package testpki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"
)

// KeyType selects the key algorithm of a certificate.
type KeyType int

const (
	// ECDSAP256 is the default: fast to generate.
	ECDSAP256 KeyType = iota
	// RSA2048 is slower to generate; use it only where RSA matters.
	RSA2048
)

// Epoch is the default start of every validity window: fixed, and far enough
// in the past that certificates are valid for any test run now.
var Epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultLifetime is the validity period when a template sets no NotAfter.
const DefaultLifetime = 100 * 365 * 24 * time.Hour

// Template describes a certificate to issue. The zero value is valid.
type Template struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// NotBefore defaults to Epoch; NotAfter to NotBefore+DefaultLifetime.
	NotBefore, NotAfter time.Time
	Key                 KeyType
	// ExtKeyUsage defaults to server auth for leaves. Set NoExtKeyUsage to
	// issue a leaf without any extended key usage.
	ExtKeyUsage   []x509.ExtKeyUsage
	NoExtKeyUsage bool
}

// CA is a certificate authority that can issue leaves and intermediates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	parents []*x509.Certificate // issuing chain above Cert, nearest first, root excluded
}

// Leaf is an issued end-entity certificate with its chain.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // intermediates, nearest first; root excluded
}

var serial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(serial.Add(1)) }

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("testpki: unknown key type %d", t)
	}
}

func window(t Template) (time.Time, time.Time) {
	nb := t.NotBefore
	if nb.IsZero() {
		nb = Epoch
	}
	na := t.NotAfter
	if na.IsZero() {
		na = nb.Add(DefaultLifetime)
	}
	return nb, na
}

// NewCA makes a self-signed root CA.
func NewCA(t Template) (*CA, error) {
	if t.CommonName == "" {
		t.CommonName = "cblink test root CA"
	}
	return newCA(t, nil)
}

// newCA issues a CA certificate signed by parent, or self-signed when
// parent is nil.
func newCA(t Template, parent *CA) (*CA, error) {
	key, err := newKey(t.Key)
	if err != nil {
		return nil, err
	}
	nb, na := window(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: t.CommonName, Organization: []string{"cblink tests"}},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	var parents []*x509.Certificate
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
		parents = append([]*x509.Certificate{parent.Cert}, parent.parents...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, parents: parents}, nil
}

// MustCA is NewCA that panics on error, for test set-up.
func MustCA(t Template) *CA {
	ca, err := NewCA(t)
	if err != nil {
		panic(err)
	}
	return ca
}

// Pool returns a pool holding only this CA's root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root())
	return p
}

func (ca *CA) root() *x509.Certificate {
	if len(ca.parents) == 0 {
		return ca.Cert
	}
	return ca.parents[len(ca.parents)-1]
}

// RootPEM returns the root certificate of this CA's chain in PEM form, as a
// CA bundle file would hold it.
func (ca *CA) RootPEM() []byte { return CertPEM(ca.root()) }

// NewIntermediate issues an intermediate CA signed by ca.
func (ca *CA) NewIntermediate(t Template) (*CA, error) {
	if t.CommonName == "" {
		t.CommonName = "cblink test intermediate CA"
	}
	return newCA(t, ca)
}

// Issue signs a leaf certificate for t.
func (ca *CA) Issue(t Template) (*Leaf, error) {
	key, err := newKey(t.Key)
	if err != nil {
		return nil, err
	}
	nb, na := window(t)
	eku := t.ExtKeyUsage
	if eku == nil && !t.NoExtKeyUsage {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if t.NoExtKeyUsage {
		eku = nil
	}
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: t.CommonName},
		DNSNames:     t.DNSNames,
		IPAddresses:  t.IPs,
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     ku,
		ExtKeyUsage:  eku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: issue leaf: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := []*x509.Certificate{}
	if len(ca.parents) > 0 {
		chain = append(chain, ca.Cert)
		chain = append(chain, ca.parents[:len(ca.parents)-1]...)
	}
	return &Leaf{Cert: cert, Key: key, Chain: chain}, nil
}

// MustIssue is Issue that panics on error, for test set-up.
func (ca *CA) MustIssue(t Template) *Leaf {
	l, err := ca.Issue(t)
	if err != nil {
		panic(err)
	}
	return l
}

// TLSCertificate returns the leaf with its intermediates, ready for a
// tls.Config. Set withChain to false to leave the intermediates out, as a
// misconfigured server would.
func (l *Leaf) TLSCertificate(withChain bool) tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
	if withChain {
		for _, ic := range l.Chain {
			c.Certificate = append(c.Certificate, ic.Raw)
		}
	}
	return c
}

// CertPEM returns the leaf followed by its intermediates in PEM form, as a
// server's certificate file holds them.
func (l *Leaf) CertPEM() []byte {
	var b bytes.Buffer
	b.Write(CertPEM(l.Cert))
	for _, ic := range l.Chain {
		b.Write(CertPEM(ic))
	}
	return b.Bytes()
}

// KeyPEM returns the private key in PKCS#8 PEM form.
func (l *Leaf) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		panic(err) // only for key types this package never makes
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CertPEM encodes one certificate as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
