package callbridge

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testhelp"
	"github.com/cblink/cblink/internal/testpki"
)

// TestTLSWithSessionCacheAndNoServerName: the TLS step works with any
// tls.Config crypto/tls accepts. With a ClientSessionCache and no
// ServerName, crypto/tls asks the connection for RemoteAddr before it
// writes anything; the stand-in connection the bridge used to handshake
// on before the TCP connect waited for that first write and never
// dialled, so the attempt hung.
func TestTLSWithSessionCacheAndNoServerName(t *testing.T) {
	leaf := testpki.MustCA(testpki.Template{}).MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}})
	srvConf := &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(true)}}
	addr := testhelp.Listen(t, func(c net.Conn) {
		tc := tls.Server(c, srvConf)
		if tc.Handshake() == nil {
			_, _ = tc.Read(make([]byte, 1)) // until the client closes
		}
	})
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tconn, err := startTLS(ctx, conn, &tls.Config{
		InsecureSkipVerify: true, // no name to check: this is about the step, not the checks
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	})
	require.NoError(t, err)
	assert.True(t, tconn.ConnectionState().HandshakeComplete)
	require.NoError(t, tconn.Close())
}
