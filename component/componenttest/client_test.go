package componenttest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cblink/cblink/internal/xstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client is a tiny hand-rolled XEP-0114 client for these tests.
type client struct {
	conn net.Conn
	dec  *xstream.Decoder
	w    *xstream.Writer
	hdr  xstream.Header // the server's header
}

// dialClient connects (TLS unless the server is plain) without speaking XMPP.
func dialClient(srv *Server, sni string) (*client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", srv.Addr())
	if err != nil {
		return nil, err
	}
	conn := nc
	if conf := srv.ClientTLSConfig(); conf != nil {
		if sni != "" {
			conf.ServerName = sni
		}
		tc := tls.Client(nc, conf)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			_ = nc.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		conn = tc
	}
	return &client{
		conn: conn,
		dec:  xstream.NewDecoder(conn, 0, 0),
		w:    xstream.NewWriter(conn, 0, 5*time.Second),
	}, nil
}

func (c *client) send(s string) error { return c.w.Write(context.Background(), []byte(s)) }

// start sends the client's header and reads the server's.
func (c *client) start(name string) error {
	if err := c.send(string(xstream.AppendHeader(nil, xstream.Header{To: name}))); err != nil {
		return err
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := c.dec.ReadHeader()
	c.hdr = h
	return err
}

// next reads the next element, skipping keepalives; a stream error is
// returned as a stream.Error.
func (c *client) next() (xstream.Element, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		el, err := c.dec.Next()
		if err != nil {
			return el, err
		}
		if el.Keepalive {
			continue
		}
		if string(el.Name()) == "stream:error" {
			se, perr := xstream.ParseStreamError(el.Raw)
			if perr != nil {
				return el, perr
			}
			return el, se
		}
		return el, nil
	}
}

var errNotHandshake = errors.New("expected <handshake/>")

// handshake sends the digest and waits for the answer.
func (c *client) handshake(secret string) error {
	d := xstream.HandshakeDigest(c.hdr.ID, secret)
	if err := c.send("<handshake>" + string(d[:]) + "</handshake>"); err != nil {
		return err
	}
	el, err := c.next()
	if err != nil {
		return err
	}
	if string(el.Name()) != "handshake" {
		return fmt.Errorf("%w, got %s", errNotHandshake, el.Raw)
	}
	return nil
}

// close ends the stream cleanly and closes the connection.
func (c *client) close() {
	_ = c.w.Close(context.Background(), []byte(xstream.StreamEnd))
	_ = c.conn.Close()
}

// abort closes the connection at once.
func (c *client) abort() {
	c.w.Abort(nil)
	_ = c.conn.Close()
	<-c.w.Done()
}

// connect dials, starts and authenticates; the error is a stream.Error when
// the server refused.
func connect(t testing.TB, srv *Server, name, secret string) (*client, error) {
	t.Helper()
	c, err := dialClient(srv, "")
	require.NoError(t, err)
	if err := c.start(name); err != nil {
		c.abort()
		return nil, err
	}
	if err := c.handshake(secret); err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// answerPings answers every ping IQ until the stream ends, echoing other
// IQ gets with an empty result; it returns the first read error.
func (c *client) answerPings(from string) error {
	_ = c.conn.SetReadDeadline(time.Time{})
	for {
		el, err := c.dec.Next()
		if err != nil {
			return err
		}
		if el.Keepalive || string(el.Name()) != "iq" {
			continue
		}
		typ, _ := el.Attr("type")
		if !bytes.Equal(typ, []byte("get")) {
			continue
		}
		id, _ := el.Attr("id")
		to, _ := el.Attr("from")
		err = c.w.Append(context.Background(), func(b []byte) []byte {
			b = append(b, "<iq type='result' id='"...)
			b = append(b, id...)
			b = append(b, "' from='"...)
			b = append(b, from...)
			b = append(b, "' to='"...)
			b = append(b, to...)
			return append(b, "'/>"...)
		})
		if err != nil {
			return err
		}
	}
}

func newTestServer(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Logf == nil {
		if tt, ok := t.(*testing.T); ok {
			o.Logf = tt.Logf
		}
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 200 * time.Millisecond
	}
	if o.Components == nil {
		o.Components = map[string]string{"cb1.example.com": "s3cret"}
	}
	srv, err := NewServer(o)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
