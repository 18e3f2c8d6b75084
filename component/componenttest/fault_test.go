package componenttest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/cblink/cblink/internal/xstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"
)

// isClosed reports whether err is how a client sees a connection that the
// server closed (EOF, or reset).
func isClosed(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func TestFaultClose(t *testing.T) {
	tests := []struct {
		name  string
		phase Phase
	}{
		{"after accept", PhaseAccept},
		{"after tls", PhaseTLS},
		{"after client header", PhaseClientHeader},
		{"after header", PhaseHeader},
		{"instead of success", PhaseHandshakeReceived},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			srv.SetFault(Fault{Phase: tc.phase, Action: ActionClose})
			c, err := dialClient(srv, "")
			if err == nil { // TLS survives the phase
				err = c.start("cb1.example.com")
				if err == nil {
					err = c.handshake("s3cret")
				}
				c.abort()
			}
			require.Error(t, err)
			assert.True(t, isClosed(err), "%v", err)
			conn, err := srv.WaitAccepted(testCtx(t), 0)
			require.NoError(t, err)
			require.NoError(t, conn.WaitClosed(testCtx(t)))
			assert.Equal(t, "fault-close", conn.Info().Condition)
			assert.Equal(t, HandshakeFailed, conn.Info().Outcome)
			// The fault was one-shot: the next connection works.
			c2, err := connect(t, srv, "cb1.example.com", "s3cret")
			require.NoError(t, err)
			c2.close()
		})
	}
}

func TestFaultReset(t *testing.T) {
	t.Run("after handshake", func(t *testing.T) {
		srv := newTestServer(t, Options{Plain: true})
		srv.SetFault(Fault{Phase: PhaseHandshake, Action: ActionReset})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		if err == nil {
			_, err = c.next()
			c.abort()
		}
		require.ErrorIs(t, err, syscall.ECONNRESET)
	})
	t.Run("after 2 stanzas", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		srv.SetFault(Fault{Phase: PhaseStanzas, After: 2, Action: ActionReset})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		for range 2 {
			require.NoError(t, c.send("<message from='cb1.example.com' to='a@example.com'/>"))
		}
		_, err = c.next()
		require.ErrorIs(t, err, syscall.ECONNRESET)
		require.NoError(t, conn.WaitClosed(testCtx(t)))
		assert.EqualValues(t, 2, conn.Info().StanzasIn)
		assert.Equal(t, "fault-reset", conn.Info().Condition)
	})
	t.Run("live", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		conn.Reset()
		_, err = c.next()
		require.ErrorIs(t, err, syscall.ECONNRESET)
	})
}

func TestFaultStreamError(t *testing.T) {
	seeOther := stream.SeeOtherHost
	seeOther.Content = "xmpp2.example.com:5223"
	shutdown := stream.SystemShutdown
	shutdown.Text = append(shutdown.Text, struct{ Lang, Value string }{"", "going down for maintenance"})
	tests := []struct {
		name  string
		phase Phase
		err   stream.Error
	}{
		{"host-unknown after header", PhaseHeader, stream.HostUnknown},
		{"not-authorized instead of success", PhaseHandshakeReceived, stream.NotAuthorized},
		{"see-other-host after header", PhaseHeader, seeOther},
		{"system-shutdown after handshake", PhaseHandshake, shutdown},
		{"policy-violation before header", PhaseTLS, stream.PolicyViolation},
		{"connection-timeout after client header", PhaseClientHeader, stream.ConnectionTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			srv.SetFault(Fault{Phase: tc.phase, Action: ActionStreamError, Err: tc.err})
			c, err := dialClient(srv, "")
			require.NoError(t, err)
			defer c.abort()
			err = c.start("cb1.example.com")
			if err == nil {
				err = c.handshake("s3cret")
				if err == nil {
					_, err = c.next()
				}
			}
			var se stream.Error
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.err.Err, se.Err)
			assert.Equal(t, tc.err.Content, se.Content)
			if len(tc.err.Text) > 0 {
				require.NotEmpty(t, se.Text)
				assert.Equal(t, tc.err.Text[0].Value, se.Text[0].Value)
			}
			_, err = c.next()
			require.ErrorIs(t, err, xstream.ErrStreamEnd)
			c.close()
			conn, err := srv.WaitAccepted(testCtx(t), 0)
			require.NoError(t, err)
			require.NoError(t, conn.WaitClosed(testCtx(t)))
			assert.True(t, conn.ClosedByPeer())
			assert.Equal(t, tc.err.Err, conn.Info().Condition)
		})
	}
}

func TestLiveStreamErrorAndCloseStream(t *testing.T) {
	srv := newTestServer(t, Options{})
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)
	go func() {
		// The client answers the error with its closing tag.
		_, _ = c.next()
		_, _ = c.next()
		c.close()
	}()
	require.NoError(t, conn.SendStreamError(testCtx(t), stream.SystemShutdown))
	assert.True(t, conn.ClosedByPeer())
	assert.ErrorIs(t, conn.CloseStream(testCtx(t)), ErrConnClosed)

	c2, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	conn2, err := srv.WaitConn(testCtx(t), "cb1.example.com")
	require.NoError(t, err)
	go func() {
		_, err := c2.next()
		if errors.Is(err, xstream.ErrStreamEnd) {
			c2.close()
		}
	}()
	require.NoError(t, conn2.CloseStream(testCtx(t)))
	assert.True(t, conn2.ClosedByPeer())
	assert.Equal(t, "closed-by-server", conn2.Info().Condition)
}

func TestFaultSendBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		phase Phase
		bytes string
		check func(raw []byte) bool
	}{
		{"xml declaration with newlines before header", PhaseClientHeader, "<?xml version='1.0'?>\n\n",
			func(raw []byte) bool { return bytes.HasPrefix(raw, []byte("<?xml version='1.0'?>\n\n<stream:stream ")) }},
		{"whitespace before handshake success", PhaseHandshakeReceived, " \n\t ",
			func(raw []byte) bool { return bytes.HasSuffix(raw, []byte(" \n\t <handshake/>")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			srv.SetFault(Fault{Phase: tc.phase, Action: ActionSend, Bytes: []byte(tc.bytes)})
			c, err := dialClient(srv, "")
			require.NoError(t, err)
			defer c.close()
			raw := &bytes.Buffer{}
			c.dec = xstream.NewDecoder(io.TeeReader(c.conn, raw), 0, 0)
			require.NoError(t, c.start("cb1.example.com"))
			require.NoError(t, c.handshake("s3cret"))
			assert.True(t, tc.check(raw.Bytes()), "%q", raw)
		})
	}
	t.Run("live raw bytes", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		require.NoError(t, conn.SendRaw(testCtx(t), []byte("<message><unclosed></message>")))
		_, err = c.next()
		var syn *xstream.SyntaxError
		require.ErrorAs(t, err, &syn)
	})
}

func TestHeaderTweaks(t *testing.T) {
	tests := []struct {
		name   string
		tweak  HeaderTweak
		check  func(t *testing.T, h xstream.Header, err error)
		noAuth bool
	}{
		{"omit id", HeaderTweak{OmitID: true}, func(t *testing.T, h xstream.Header, err error) {
			require.NoError(t, err)
			assert.Empty(t, h.ID)
		}, true},
		{"empty id", HeaderTweak{EmptyID: true}, func(t *testing.T, h xstream.Header, err error) {
			require.NoError(t, err)
			assert.Empty(t, h.ID)
		}, true},
		{"fixed id", HeaderTweak{ID: "3BF96D32"}, func(t *testing.T, h xstream.Header, err error) {
			require.NoError(t, err)
			assert.Equal(t, "3BF96D32", h.ID)
		}, false},
		{"wrong namespace", HeaderTweak{Namespace: "jabber:client"}, func(t *testing.T, h xstream.Header, err error) {
			var he *xstream.HeaderError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, "invalid-namespace", he.Condition)
		}, true},
		{"raw header", HeaderTweak{Raw: []byte("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='cb1.example.com' version='1.0'>")}, func(t *testing.T, h xstream.Header, err error) {
			require.NoError(t, err)
			assert.Empty(t, h.ID)
			assert.Equal(t, "1.0", h.Version)
		}, true},
		{"omit from", HeaderTweak{OmitFrom: true}, func(t *testing.T, h xstream.Header, err error) {
			require.NoError(t, err)
			assert.Empty(t, h.From)
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{})
			srv.SetFault(Fault{Header: tc.tweak})
			c, err := dialClient(srv, "")
			require.NoError(t, err)
			err = c.start("cb1.example.com")
			tc.check(t, c.hdr, err)
			conn, werr := srv.WaitAccepted(testCtx(t), 0)
			require.NoError(t, werr)
			if tc.noAuth {
				// A correct client stops here, before any digest: the
				// raw log lets a test prove it.
				c.close()
				require.NoError(t, conn.WaitClosed(testCtx(t)))
				assert.NotContains(t, string(conn.RawReceived()), "<handshake")
				assert.Contains(t, string(conn.RawReceived()), "</stream:stream>")
				return
			}
			require.NoError(t, c.handshake("s3cret"))
			c.close()
		})
	}
}

// readAsync reads the next element on another goroutine.
func readAsync(c *client) chan error {
	ch := make(chan error, 1)
	go func() {
		_ = c.conn.SetReadDeadline(time.Time{})
		for {
			el, err := c.dec.Next()
			if err == nil && el.Keepalive {
				continue
			}
			ch <- err
			return
		}
	}()
	return ch
}

func TestStallAndBlackhole(t *testing.T) {
	ping := "<iq type='get' id='p' from='cb1.example.com' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>"
	t.Run("stall at header then carry on", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		srv.SetFault(Fault{Phase: PhaseHeader, Action: ActionStall, Duration: 200 * time.Millisecond})
		c, err := dialClient(srv, "")
		require.NoError(t, err)
		defer c.close()
		// The stall starts once the server has sent its header, which
		// start reads: take the time before, never after it began.
		start := time.Now()
		require.NoError(t, c.start("cb1.example.com"))
		require.NoError(t, c.handshake("s3cret"))
		assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	})
	t.Run("blackhole at header", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		srv.SetFault(Fault{Phase: PhaseHeader, Action: ActionBlackhole})
		c, err := dialClient(srv, "")
		require.NoError(t, err)
		defer c.abort()
		require.NoError(t, c.start("cb1.example.com"))
		require.NoError(t, c.send("<handshake>0000</handshake>"))
		got := readAsync(c)
		select {
		case err := <-got:
			t.Fatalf("blackholed server answered: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		conn, err := srv.WaitAccepted(testCtx(t), 0)
		require.NoError(t, err)
		assert.Equal(t, HandshakePending, conn.Info().Outcome)
		srv.CloseClientConnections()
		assert.True(t, isClosed(<-got))
	})
	t.Run("live blackhole and resume", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.close()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		conn.Blackhole()
		require.NoError(t, c.send(ping))
		got := readAsync(c)
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		_, err = conn.Ping(ctx) // queued, but not written while blackholed
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		select {
		case err := <-got:
			t.Fatalf("blackholed server answered: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		assert.Zero(t, conn.Info().StanzasIn, "nothing read while blackholed")
		conn.Resume()
		require.NoError(t, <-got) // the queued ping or the answer
		for {
			el, err := c.next()
			require.NoError(t, err)
			if id, _ := el.Attr("id"); string(id) == "p" {
				break
			}
		}
		assert.EqualValues(t, 1, conn.Info().StanzasIn)
	})
	t.Run("blackhole until server close", func(t *testing.T) {
		srv, err := NewServer(Options{Components: map[string]string{"cb1.example.com": "s3cret"}})
		require.NoError(t, err)
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		conn.Blackhole()
		srv.Close() // must not hang on the blackholed conn; goleak checks the rest
		srv.Close()
		<-conn.Done()
	})
}

func TestLimits(t *testing.T) {
	t.Run("oversize stanza from component", func(t *testing.T) {
		srv := newTestServer(t, Options{MaxStanzaSize: 1024})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		require.NoError(t, c.send("<message from='cb1.example.com' to='a@example.com'><body>"+string(bytes.Repeat([]byte("x"), 2000))+"</body></message>"))
		_, err = c.next()
		require.ErrorIs(t, err, stream.PolicyViolation)
		require.NoError(t, conn.WaitClosed(testCtx(t)))
		assert.Equal(t, "policy-violation", conn.Info().Condition)
	})
	t.Run("oversize stanza to component", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		require.ErrorIs(t, conn.SendOversize(testCtx(t), 10), ErrBadStanza)
		require.NoError(t, conn.SendOversize(testCtx(t), 300<<10))
		el, err := c.next()
		require.ErrorIs(t, err, xstream.ErrTooLarge, "len %d", len(el.Raw))
		big := xstream.NewDecoder(bytes.NewReader(nil), 0, 0)
		_ = big
		require.NoError(t, conn.SendOversize(testCtx(t), 128))
	})
	t.Run("exact size", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		require.NoError(t, conn.SendOversize(testCtx(t), 5000))
		el, err := c.next()
		require.NoError(t, err)
		assert.Len(t, el.Raw, 5000)
	})
	t.Run("invalid namespace", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := dialClient(srv, "")
		require.NoError(t, err)
		defer c.abort()
		require.NoError(t, c.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>"))
		_, err = c.dec.ReadHeader()
		require.NoError(t, err)
		_, err = c.next()
		require.ErrorIs(t, err, stream.InvalidNamespace)
	})
	t.Run("handshake timeout", func(t *testing.T) {
		srv := newTestServer(t, Options{HandshakeTimeout: 300 * time.Millisecond})
		c, err := dialClient(srv, "")
		require.NoError(t, err)
		defer c.abort()
		require.NoError(t, c.start("cb1.example.com"))
		_, err = c.next()
		require.ErrorIs(t, err, stream.ConnectionTimeout)
	})
	t.Run("idle timeout", func(t *testing.T) {
		srv := newTestServer(t, Options{IdleTimeout: 300 * time.Millisecond})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		defer c.abort()
		// Keepalives hold the link open past the idle limit...
		for range 4 {
			time.Sleep(100 * time.Millisecond)
			require.NoError(t, c.send(" "))
		}
		conn, err := srv.WaitConn(testCtx(t), "cb1.example.com")
		require.NoError(t, err)
		// ...and silence ends it.
		_, err = c.next()
		require.ErrorIs(t, err, stream.ConnectionTimeout)
		require.NoError(t, conn.WaitClosed(testCtx(t)))
	})
	t.Run("stanza before handshake", func(t *testing.T) {
		srv := newTestServer(t, Options{})
		c, err := dialClient(srv, "")
		require.NoError(t, err)
		defer c.abort()
		require.NoError(t, c.start("cb1.example.com"))
		require.NoError(t, c.send("<message from='cb1.example.com' to='a@example.com'/>"))
		_, err = c.next()
		require.ErrorIs(t, err, stream.NotAuthorized)
	})
}

func TestFaultFunc(t *testing.T) {
	// Duplicates accepted: each client closes without waiting for the
	// server to see it, and this test is about faults, not conflicts.
	srv := newTestServer(t, Options{AcceptDuplicates: true, Faults: func(i int) []Fault {
		if i%2 == 0 {
			return []Fault{{Phase: PhaseHeader, Action: ActionStreamError, Err: stream.SystemShutdown}}
		}
		return nil
	}})
	for i := range 4 {
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		if i%2 == 0 {
			require.ErrorIs(t, err, stream.SystemShutdown, "conn %d", i)
			continue
		}
		require.NoError(t, err, "conn %d", i)
		c.close()
	}
	srv.SetFaultFunc(nil)
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	c.close()
	assert.EqualValues(t, 2, srv.Stats().HandshakesFailed["system-shutdown"])
}

func TestRestart(t *testing.T) {
	srv := newTestServer(t, Options{})
	addr := srv.Addr()
	c, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	defer c.abort()
	srv.Stop()
	srv.CloseClientConnections()
	_, err = c.next()
	assert.True(t, isClosed(err), "%v", err)
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "stopped server still accepts")
	require.NoError(t, srv.Start())
	require.ErrorIs(t, srv.Start(), ErrRunning)
	assert.Equal(t, addr, srv.Addr())
	c2, err := connect(t, srv, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	c2.close()

	// A new server on the address of a closed one.
	srv.Close()
	require.ErrorIs(t, srv.Start(), ErrServerClosed)
	srv2 := newTestServer(t, Options{Addr: addr})
	assert.Equal(t, addr, srv2.Addr())
	c3, err := connect(t, srv2, "cb1.example.com", "s3cret")
	require.NoError(t, err)
	c3.close()
}
