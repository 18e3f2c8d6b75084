package tlsverify_test

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/tlsverify"
)

// TestFixtures checks that the committed PKI fixtures (testdata/pki, used
// by the READMEs' commands) are what testdata/README.md says they are.
func TestFixtures(t *testing.T) {
	dir := filepath.Join("..", "testdata", "pki")
	roots, err := tlsverify.LoadRoots(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	load := func(name string) []*x509.Certificate {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		require.NoError(t, err, "%s: the certificate matches its key", name)
		var chain []*x509.Certificate
		for _, der := range pair.Certificate {
			c, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			chain = append(chain, c)
		}
		return chain
	}
	for _, server := range []string{"xmpp1.example.com", "xmpp2.example.com", "localhost", "127.0.0.1"} {
		cfg := tlsverify.Config{Domain: "example.com", ServerName: server, Roots: roots}
		assert.NoError(t, cfg.Verify(load("server")), "server.pem for %s", server)
	}
	cfg := tlsverify.Config{Domain: "example.com", ServerName: "xmpp1.example.com", Roots: roots}
	var ne *tlsverify.NameError
	require.ErrorAs(t, cfg.Verify(load("domain-only")), &ne)
	assert.Equal(t, "xmpp1.example.com", ne.Missing[0].Name)
	assert.ErrorIs(t, cfg.Verify(load("expired")), tlsverify.ErrExpired)
}
