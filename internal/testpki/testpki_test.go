package testpki

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLeafVerifiesWithSANs(t *testing.T) {
	ca := MustCA(Template{})
	leaf := ca.MustIssue(Template{
		CommonName: "ignored.example",
		DNSNames:   []string{"example.com", "xmpp1.example.com"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
	})
	for _, name := range []string{"example.com", "xmpp1.example.com", "127.0.0.1"} {
		_, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool(), CurrentTime: Epoch.Add(time.Hour)})
		assert.NoError(t, err, name)
	}
	_, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "ignored.example", Roots: ca.Pool(), CurrentTime: Epoch.Add(time.Hour)})
	assert.Error(t, err, "the CN must not be a usable name")
}

func TestValidityWindow(t *testing.T) {
	ca := MustCA(Template{})
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := ca.MustIssue(Template{DNSNames: []string{"a.example"}, NotBefore: nb, NotAfter: nb.Add(time.Hour)})
	assert.Equal(t, nb, leaf.Cert.NotBefore)
	assert.Equal(t, nb.Add(time.Hour), leaf.Cert.NotAfter)
	_, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "a.example", Roots: ca.Pool(), CurrentTime: nb.Add(2 * time.Hour)})
	var inv x509.CertificateInvalidError
	require.ErrorAs(t, err, &inv)
	assert.Equal(t, x509.Expired, inv.Reason)
}

func TestIntermediateChain(t *testing.T) {
	root := MustCA(Template{})
	inter, err := root.NewIntermediate(Template{})
	require.NoError(t, err)
	leaf := inter.MustIssue(Template{DNSNames: []string{"x.example"}})
	require.Len(t, leaf.Chain, 1)

	inters := x509.NewCertPool()
	inters.AddCert(leaf.Chain[0])
	_, err = leaf.Cert.Verify(x509.VerifyOptions{DNSName: "x.example", Roots: inter.Pool(), Intermediates: inters})
	require.NoError(t, err)
	// Without the intermediate the chain does not reach the root.
	_, err = leaf.Cert.Verify(x509.VerifyOptions{DNSName: "x.example", Roots: root.Pool()})
	var ua x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &ua)

	assert.Len(t, leaf.TLSCertificate(true).Certificate, 2)
	assert.Len(t, leaf.TLSCertificate(false).Certificate, 1)
}

func TestPEMRoundTrip(t *testing.T) {
	ca := MustCA(Template{Key: RSA2048})
	leaf := ca.MustIssue(Template{DNSNames: []string{"r.example"}, Key: RSA2048})
	_, isRSA := leaf.Key.(*rsa.PrivateKey)
	assert.True(t, isRSA)
	pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
	require.NoError(t, err)
	assert.Equal(t, leaf.Cert.Raw, pair.Certificate[0])

	block, _ := pem.Decode(ca.RootPEM())
	require.NotNil(t, block)
	assert.Equal(t, ca.Cert.Raw, block.Bytes)
}

func TestNoExtKeyUsage(t *testing.T) {
	ca := MustCA(Template{})
	leaf := ca.MustIssue(Template{DNSNames: []string{"a.example"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	_, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "a.example", Roots: ca.Pool()})
	var inv x509.CertificateInvalidError
	require.ErrorAs(t, err, &inv)
	assert.Equal(t, x509.IncompatibleUsage, inv.Reason)
	leaf = ca.MustIssue(Template{NoExtKeyUsage: true})
	assert.Empty(t, leaf.Cert.ExtKeyUsage)
}
