package componenttest

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
)

func TestPingAndSendIQ(t *testing.T) {
	srv := newTestServer(t, Options{})
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- c.answerPings("cb1.example.com") }()
	conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)

	rtt, err := conn.Ping(testCtx(t))
	require.NoError(t, err)
	assert.Positive(t, rtt)

	reply, err := conn.SendIQ(testCtx(t), []byte(`<iq type='get' id='join1' from='alice@example.com/web' to='cb1.example.com'><query xmlns='urn:example:join'/></iq>`))
	require.NoError(t, err)
	assert.Contains(t, string(reply), "id='join1'")
	assert.Contains(t, string(reply), "type='result'")
	assert.Contains(t, string(reply), "to='alice@example.com/web'")

	require.NoError(t, conn.CloseStream(testCtx(t)))
	assert.Error(t, <-errc) // the client's read loop saw the stream end
	c.abort()
}

func TestPingFlood(t *testing.T) {
	srv := newTestServer(t, Options{})
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- c.answerPings("cb1.example.com") }()
	conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)

	before := conn.Info().StanzasIn
	require.NoError(t, conn.PingFlood(testCtx(t), 500, 16))
	assert.Equal(t, int64(500), conn.Info().StanzasIn-before, "every ping answered once")
	// Floods can follow each other, and a plain Ping still works after.
	require.NoError(t, conn.PingFlood(testCtx(t), 3, 64))
	_, err = conn.Ping(testCtx(t))
	require.NoError(t, err)

	require.NoError(t, conn.CloseStream(testCtx(t)))
	assert.Error(t, <-errc)
	c.abort()
	assert.ErrorIs(t, conn.PingFlood(testCtx(t), 1, 1), ErrConnClosed)
}

// TestFloodBeforeEstablished: a flood started while the handshake is
// still going returns ErrNotEstablished and reads nothing the handshake
// writes (run with -race).
func TestFloodBeforeEstablished(t *testing.T) {
	for name, flood := range map[string]func(*Conn) error{
		"ping": func(conn *Conn) error { return conn.PingFlood(testCtx(t), 1, 1) },
		"join": func(conn *Conn) error {
			// The hand-rolled client answers no set: once established,
			// the flood ends with its context.
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			return conn.JoinFlood(ctx, 1, 1, component.JoinRequest{Call: "1"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			c, err := dialClient(srv, "")
			require.NoError(t, err)
			defer c.abort()
			var conn *Conn
			for conn == nil { // accepted and past TLS
				if cs := srv.Conns(); len(cs) > 0 {
					conn = cs[0]
				}
				runtime.Gosched()
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				assert.NoError(t, c.start("cb1.example.com"))
				assert.NoError(t, c.handshake("s3cret"))
				_ = c.answerPings("cb1.example.com")
			}()
			for errors.Is(flood(conn), ErrNotEstablished) {
				runtime.Gosched()
			}
			c.abort()
			<-done
		})
	}
}
