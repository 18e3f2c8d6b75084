package callbridge

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEarlyConnWriteWaitsForSet: the first Write (the ClientHello) says
// so at once and waits for the connection; then everything passes
// through.
func TestEarlyConnWriteWaitsForSet(t *testing.T) {
	e := newEarlyConn()
	a, b := net.Pipe()
	defer b.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := e.Write([]byte("hello"))
		wrote <- err
	}()
	<-e.wrote
	select {
	case err := <-wrote:
		t.Fatalf("Write returned before the connection was set: %v", err)
	default:
	}
	e.set(a)
	buf := make([]byte, 5)
	_, err := io.ReadFull(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
	require.NoError(t, <-wrote)
	assert.Equal(t, a, e.NetConn())
	assert.Equal(t, a.RemoteAddr(), e.RemoteAddr())
	go func() { _, _ = b.Write([]byte("x")) }()
	n, err := e.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "x", string(buf[:n]))
	require.NoError(t, e.SetDeadline(time.Now().Add(time.Hour)))
	require.NoError(t, e.Close())
	_, err = b.Read(buf)
	assert.ErrorIs(t, err, io.EOF, "Close closes the connection")
}

// TestEarlyConnClosedBeforeSet: a Close that comes first (crypto/tls's,
// when the handshake's context ends) closes the connection when it comes.
func TestEarlyConnClosedBeforeSet(t *testing.T) {
	e := newEarlyConn()
	require.NoError(t, e.Close())
	a, b := net.Pipe()
	e.set(a)
	_, err := b.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	_, err = e.Write([]byte("x"))
	assert.Error(t, err)
}

// TestEarlyConnDialFailed: without a connection every method fails at
// once instead of waiting.
func TestEarlyConnDialFailed(t *testing.T) {
	e := newEarlyConn()
	blocked := make(chan error, 1)
	go func() {
		_, err := e.Write([]byte("hello"))
		blocked <- err
	}()
	<-e.wrote
	e.set(nil)
	assert.True(t, errors.Is(<-blocked, net.ErrClosed))
	_, err := e.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, e.SetReadDeadline(time.Time{}), net.ErrClosed)
	assert.Equal(t, net.Conn(e), e.NetConn())
	assert.NotNil(t, e.RemoteAddr())
	assert.NoError(t, e.Close())
}
