//go:build unix

package component

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKeepaliveThroughTLS: TCP keepalive reaches the socket under a
// tls.Conn.
func TestKeepaliveThroughTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	tcp := c.(*net.TCPConn)
	require.NoError(t, tcp.SetKeepAlive(false))
	enableTCPKeepalive(tls.Client(tcp, &tls.Config{}))
	raw, err := tcp.SyscallConn()
	require.NoError(t, err)
	var on int
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}))
	require.NoError(t, serr)
	assert.Equal(t, 1, on)
}
