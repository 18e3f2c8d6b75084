//go:build integration

package integration

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testpki"
)

// The XMPP domain, the component name and its address in every test.
const (
	domain        = "example.com"
	componentName = "cb1"
	componentAddr = componentName + "." + domain
)

// testPKI is a test CA with its root written to a PEM file, as an operator
// would configure a CA bundle.
type testPKI struct {
	CA     *testpki.CA
	Pool   *x509.CertPool
	CAFile string // PEM bundle holding the root
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := testpki.NewCA(testpki.Template{CommonName: "cblink integration test CA"})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(file, ca.RootPEM(), 0o644))
	return &testPKI{CA: ca, Pool: ca.Pool(), CAFile: file}
}

// serverLeaf issues the certificate a correctly set-up XMPP server carries:
// SANs for the XMPP domain and its own FQDN.
func (p *testPKI) serverLeaf(t testing.TB, fqdn string) *testpki.Leaf {
	t.Helper()
	return p.leaf(t, testpki.Template{CommonName: fqdn, DNSNames: []string{domain, fqdn}})
}

func (p *testPKI) leaf(t testing.TB, tmpl testpki.Template) *testpki.Leaf {
	t.Helper()
	l, err := p.CA.Issue(tmpl)
	require.NoError(t, err)
	return l
}
