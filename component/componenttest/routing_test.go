package componenttest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cblink/cblink/internal/xstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"
)

func TestDuplicates(t *testing.T) {
	t.Run("refuse", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c1, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c1.close()
		_, err = connect(t, srv, "cb1.example.com", "s3cret")
		require.ErrorIs(t, err, stream.Conflict)
		assert.EqualValues(t, 1, srv.Stats().HandshakesFailed["conflict"])
		refused, err := srv.WaitAccepted(testCtx(t), 1)
		require.NoError(t, err)
		require.NoError(t, refused.WaitClosed(testCtx(t)))
		assert.Equal(t, "conflict", refused.Info().Condition)
		assert.Len(t, srv.LiveConns(), 1)
	})
	t.Run("accept", func(t *testing.T) {
		srv := newTestServer(t, Options{AcceptDuplicates: true})
		c1, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c1.close()
		c2, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c2.close()
		assert.EqualValues(t, 2, srv.Stats().HandshakesOK)
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		assert.Equal(t, 1, conn.Index(), "WaitConn returns the newest link")
	})
}

func TestAddressing(t *testing.T) {
	tests := []struct {
		name   string
		stanza string
		want   *stream.Error // nil: accepted and queued for Next
	}{
		{"missing from", "<message to='alice@example.com'><body>hi</body></message>", &stream.ImproperAddressing},
		{"empty from", "<message from='' to='alice@example.com'/>", &stream.ImproperAddressing},
		{"foreign from", "<message from='cb2.example.com' to='alice@example.com'/>", &stream.InvalidFrom},
		{"parent domain", "<message from='example.com' to='alice@example.com'/>", &stream.InvalidFrom},
		{"subdomain", "<message from='x.cb1.example.com' to='alice@example.com'/>", &stream.InvalidFrom},
		{"unsupported element", "<foo from='cb1.example.com'/>", &stream.UnsupportedStanzaType},
		{"component address", "<message from='cb1.example.com' to='alice@example.com'/>", nil},
		{"user at component", "<presence from='room@cb1.example.com/nick' to='alice@example.com'/>", nil},
		{"uppercase domain", "<message from='CB1.Example.COM' to='alice@example.com'/>", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			c, err := connect(t, srv, "cb1.example.com", "s3cret")
			require.NoError(t, err)
			defer c.abort()
			conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
			require.NoError(t, err)
			require.NoError(t, c.send(tc.stanza))
			if tc.want != nil {
				_, err = c.next()
				require.ErrorIs(t, err, *tc.want)
				_, err = c.next()
				require.ErrorIs(t, err, xstream.ErrStreamEnd)
				c.close()
				require.NoError(t, conn.WaitClosed(testCtx(t)))
				assert.Equal(t, tc.want.Err, conn.Info().Condition)
				return
			}
			st, err := conn.Next(testCtx(t))
			require.NoError(t, err)
			assert.Equal(t, tc.stanza, string(st.Raw))
			assert.Equal(t, "alice@example.com", st.To)
		})
	}
}

func TestServerAnswersIQs(t *testing.T) {
	srv := newTestServer(t, Options{})
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	defer c.close()
	conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)

	// Whitespace keepalives are tolerated, and the server still answers.
	require.NoError(t, c.send(" "))
	require.NoError(t, c.send("\n \n"))
	require.NoError(t, c.send("<iq type='get' id='p1' from='cb1.example.com' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>"))
	el, err := c.next()
	require.NoError(t, err)
	assert.Equal(t, "<iq type='result' id='p1' from='example.com' to='cb1.example.com'/>", string(el.Raw))

	require.NoError(t, c.send(" <iq type='set' id='q&amp;1' from='cb1.example.com/r' to='example.com'><query xmlns='jabber:iq:roster'/></iq> "))
	el, err = c.next()
	require.NoError(t, err)
	assert.Equal(t, "<iq type='error' id='q&amp;1' from='example.com' to='cb1.example.com/r'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", string(el.Raw))

	// An IQ to someone else is for the test, through Next.
	require.NoError(t, c.send("<iq type='get' id='u1' from='cb1.example.com' to='alice@example.com'><x xmlns='y'/></iq>"))
	st, err := conn.Next(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, Stanza{Name: "iq", Type: "get", ID: "u1", From: "cb1.example.com", To: "alice@example.com",
		Raw: []byte("<iq type='get' id='u1' from='cb1.example.com' to='alice@example.com'><x xmlns='y'/></iq>")}, st)

	assert.EqualValues(t, 3, conn.Info().StanzasIn)
	assert.EqualValues(t, 2, conn.Info().StanzasOut)
	raw := conn.RawReceived()
	assert.True(t, bytes.HasPrefix(raw, []byte("<stream:stream")), "%s", raw)
	assert.Equal(t, 1, bytes.Count(raw, []byte("<handshake>")))
}

func TestSendIQErrors(t *testing.T) {
	srv := newTestServer(t, Options{})
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)
	for name, raw := range map[string]string{
		"no id":       "<iq type='get' to='cb1.example.com'/>",
		"result":      "<iq type='result' id='a'/>",
		"not an iq":   "<message id='a'/>",
		"two":         "<iq type='get' id='a'/><iq type='get' id='b'/>",
		"unbalanced":  "<iq type='get' id='a'>",
		"just spaces": "   ",
	} {
		_, err := conn.SendIQ(testCtx(t), []byte(raw))
		assert.ErrorIs(t, err, ErrBadStanza, name)
	}
	// A pending SendIQ is released when the connection ends.
	done := make(chan error, 1)
	go func() {
		_, err := conn.SendIQ(testCtx(t), []byte("<iq type='get' id='never' from='a@example.com' to='cb1.example.com'/>"))
		done <- err
	}()
	el, err := c.next()
	require.NoError(t, err)
	assert.Contains(t, string(el.Raw), "id='never'")
	c.abort()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrConnClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("SendIQ not released")
	}
	_, err = conn.Ping(testCtx(t))
	assert.ErrorIs(t, err, ErrConnClosed)
	_, err = conn.Next(testCtx(t))
	assert.True(t, errors.Is(err, ErrConnClosed))
}

func TestRegistryWhileRunning(t *testing.T) {
	srv := newTestServer(t, Options{Components: map[string]string{}})
	assert.Empty(t, srv.Components())
	_, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.ErrorIs(t, err, stream.HostUnknown)

	srv.AddComponent("cb1.example.com", "s3cret")
	srv.AddComponent("cb2.example.com", "other")
	assert.Equal(t, []string{"cb1.example.com", "cb2.example.com"}, srv.Components())
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)

	srv.AddComponent("cb1.example.com", "changed")
	srv.RemoveComponent("cb2.example.com")
	_, err = connect(t, srv, "cb2.example.com", "other")
	require.ErrorIs(t, err, stream.HostUnknown)

	// The established link survives removal; a new one is refused.
	srv.RemoveComponent("cb1.example.com")
	conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)
	require.NoError(t, c.send("<message from='cb1.example.com' to='a@example.com'/>"))
	_, err = conn.Next(testCtx(t))
	require.NoError(t, err)
	c.close()
}
