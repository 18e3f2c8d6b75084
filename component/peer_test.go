package component

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cblink/cblink/internal/testhelp"
	"github.com/cblink/cblink/internal/xstream"
)

func TestMain(m *testing.M) {
	if benchChild() {
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

const (
	testSecret = "s3cr3t-Sh4red"
	testAddr   = "cb1.example.com"
	testID     = "3BF96D32"
	nsHeader   = "xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'"
	srvHeader  = "<stream:stream " + nsHeader + " from='cb1.example.com' id='" + testID + "'>"
)

// testDigest is the handshake value for testID and testSecret.
var testDigest = func() string { d := xstream.HandshakeDigest(testID, testSecret); return string(d[:]) }()

// logBuf collects everything logged by sessions in a test, to check that
// the secret never appears.
type logBuf = testhelp.Buffer

// assertNoSecret fails when the secret or the handshake digest appears in
// any of the strings.
func assertNoSecret(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		require.NotContains(t, s, testSecret)
		require.NotContains(t, s, testDigest)
	}
}

// peer is a scripted server on the other end of a net.Pipe.
type peer struct {
	t    *testing.T
	conn net.Conn
	rec  *testhelp.Buffer // a copy of everything the client wrote
	dec  *xstream.Decoder
	els  chan xstream.Element // copies, after start
	done chan error
}

func newPeer(t *testing.T) (net.Conn, *peer) {
	c, s := net.Pipe()
	p := &peer{t: t, conn: s, rec: &testhelp.Buffer{}, els: make(chan xstream.Element, 1024), done: make(chan error, 1)}
	p.dec = xstream.NewDecoder(io.TeeReader(s, p.rec), 0, 0)
	t.Cleanup(func() { s.Close(); c.Close() })
	return c, p
}

func (p *peer) write(s string) {
	_, err := p.conn.Write([]byte(s))
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		p.t.Errorf("peer write: %v", err)
	}
}

// accept runs the server side of a successful handshake.
func (p *peer) accept() {
	h, err := p.dec.ReadHeader()
	if err != nil {
		p.t.Errorf("peer: read header: %v", err)
		return
	}
	if h.To != testAddr {
		p.t.Errorf("peer: header to %q", h.To)
	}
	p.write(srvHeader)
	el, err := p.dec.Next()
	if err != nil {
		p.t.Errorf("peer: read handshake: %v", err)
		return
	}
	if !xstream.CheckHandshake(testID, testSecret, el.Inner()) {
		p.t.Errorf("peer: bad handshake %q", el.Raw)
	}
	p.write("<handshake/>")
}

// start reads the client's elements in the background.
func (p *peer) start() {
	go func() {
		for {
			el, err := p.dec.Next()
			if err != nil {
				close(p.els)
				p.done <- err
				return
			}
			el.Raw = bytes.Clone(el.Raw)
			p.els <- el
		}
	}()
}

// next returns the next element (keepalives included) the client sent.
func (p *peer) next() xstream.Element {
	p.t.Helper()
	select {
	case el, ok := <-p.els:
		require.True(p.t, ok, "client stream ended")
		return el
	case <-time.After(5 * time.Second):
		p.t.Fatal("timed out waiting for the client")
	}
	return xstream.Element{}
}

// nextStanza skips keepalives.
func (p *peer) nextStanza() string {
	p.t.Helper()
	for {
		el := p.next()
		if !el.Keepalive {
			return string(el.Raw)
		}
	}
}

// end waits for the client's stream to end and returns the reason.
func (p *peer) end() error {
	p.t.Helper()
	for range p.els {
	}
	select {
	case err := <-p.done:
		return err
	case <-time.After(5 * time.Second):
		p.t.Fatal("timed out waiting for the client's stream to end")
	}
	return nil
}

func testConfig(logs *logBuf) Config {
	cfg := Config{Name: "cb1", Domain: "example.com", Secret: NewSecret(testSecret),
		Tuning: Tuning{KeepaliveIdle: -1, PingInterval: -1, CloseTimeout: 300 * time.Millisecond}}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// startSession runs a successful handshake against a scripted peer and
// starts the peer's reader.
func startSession(t *testing.T, cfg Config) (*Session, *peer) {
	t.Helper()
	c, p := newPeer(t)
	go p.accept()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := NewSession(ctx, c, cfg)
	require.NoError(t, err)
	p.start()
	t.Cleanup(func() { s.Abort() })
	return s, p
}

// waitDone waits for the session to end by itself.
func waitDone(t *testing.T, s *Session) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
	return nil
}

func attr(t *testing.T, raw, name string) string {
	t.Helper()
	d := xstream.NewDecoder(strings.NewReader(srvHeader+raw), 0, 0)
	_, err := d.ReadHeader()
	require.NoError(t, err)
	el, err := d.Next()
	require.NoError(t, err)
	return el.AttrString(name)
}
