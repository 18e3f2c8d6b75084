package componenttest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/cblink/cblink/internal/testpki"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tlsDial(t *testing.T, srv *Server, conf *tls.Config) error {
	t.Helper()
	nc, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	tc := tls.Client(nc, conf)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	return tc.Handshake()
}

func TestTLSOptions(t *testing.T) {
	t.Run("default SANs", func(t *testing.T) {
		srv := newTestServer(t, Options{Domain: "xmpp.test"})
		for _, name := range []string{"xmpp.test", "localhost", "127.0.0.1"} {
			conf := srv.ClientTLSConfig()
			conf.ServerName = name
			assert.NoError(t, tlsDial(t, srv, conf), name)
		}
		conf := srv.ClientTLSConfig()
		conf.ServerName = "other.test"
		assert.Error(t, tlsDial(t, srv, conf), "a name not in the certificate must fail")
		assert.Error(t, tlsDial(t, srv, &tls.Config{ServerName: "xmpp.test"}), "system roots must not trust the test CA")

		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(srv.RootPEM()))
		assert.NoError(t, tlsDial(t, srv, &tls.Config{RootCAs: pool, ServerName: "xmpp.test"}))
	})
	t.Run("chosen DNS names and CA", func(t *testing.T) {
		ca := testpki.MustCA(testpki.Template{})
		srv := newTestServer(t, Options{DNSNames: []string{"xmpp1.example.com"}, CACert: ca.Cert, CAKey: ca.Key})
		assert.NoError(t, tlsDial(t, srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "xmpp1.example.com"}))
		assert.Error(t, tlsDial(t, srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "example.com"}),
			"the domain is not a SAN when DNSNames are given")
		assert.Equal(t, testpki.CertPEM(ca.Cert), srv.RootPEM())
	})
	t.Run("whole certificate", func(t *testing.T) {
		ca := testpki.MustCA(testpki.Template{})
		leaf := ca.MustIssue(testpki.Template{DNSNames: []string{"only.example.com"}})
		cert := leaf.TLSCertificate(true)
		srv := newTestServer(t, Options{Certificate: &cert})
		assert.Nil(t, srv.CertPool())
		assert.NoError(t, tlsDial(t, srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "only.example.com"}))
	})
	t.Run("SNI recorded", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := dialClient(srv, "localhost")
		require.NoError(t, err)
		defer c.close()
		require.NoError(t, c.start("cb1.example.com"))
		require.NoError(t, c.handshake("s3cret"))
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		assert.Equal(t, "localhost", conn.Info().SNI)
	})
	t.Run("plain client on TLS server", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		nc, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
		require.NoError(t, err)
		defer nc.Close()
		_, err = nc.Write([]byte("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>"))
		require.NoError(t, err)
		conn, err := srv.WaitAccepted(testCtx(t), 0)
		require.NoError(t, err)
		require.NoError(t, conn.WaitClosed(testCtx(t)))
		assert.Equal(t, "tls", conn.Info().Condition)
		assert.Equal(t, HandshakeFailed, conn.Info().Outcome)
	})
	t.Run("plain mode", func(t *testing.T) {
		srv := newTestServer(t, Options{Plain: true})
		assert.Nil(t, srv.ClientTLSConfig())
		assert.Nil(t, srv.CertPool())
	})
}
