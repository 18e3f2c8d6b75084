package componenttest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"
)

func TestHandshake(t *testing.T) {
	for _, plain := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "plain"}[plain]
		t.Run(name, func(t *testing.T) {
			srv := newTestServer(t, Options{Plain: plain})
			c, err := connect(t, srv, "cb1.example.com", "s3cret")
			require.NoError(t, err)
			assert.Equal(t, "cb1.example.com", c.hdr.From)
			assert.Len(t, c.hdr.ID, 32)
			conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
			require.NoError(t, err)
			info := conn.Info()
			assert.Equal(t, HandshakeOK, info.Outcome)
			assert.Equal(t, !plain, info.TLS)
			if !plain {
				assert.Equal(t, "example.com", info.SNI)
			}
			c.close()
			require.NoError(t, conn.WaitClosed(testCtx(t)))
			assert.True(t, conn.ClosedByPeer())
			st := srv.Stats()
			assert.EqualValues(t, 1, st.Accepted)
			assert.EqualValues(t, 1, st.HandshakesOK)
		})
	}
}

func TestHandshakeRefused(t *testing.T) {
	tests := []struct {
		name, addr, secret string
		want               stream.Error
	}{
		{"wrong secret", "cb1.example.com", "nope", stream.NotAuthorized},
		{"unknown name", "cb9.example.com", "s3cret", stream.HostUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			_, err := connect(t, srv, tc.addr, tc.secret)
			require.ErrorIs(t, err, tc.want)
			conn, err := srv.WaitAccepted(testCtx(t), 0)
			require.NoError(t, err)
			require.NoError(t, conn.WaitClosed(testCtx(t)))
			assert.Equal(t, HandshakeFailed, conn.Info().Outcome)
			assert.EqualValues(t, 1, srv.Stats().HandshakesFailed[tc.want.Err])
		})
	}
}
