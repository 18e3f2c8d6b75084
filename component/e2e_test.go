package component_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/internal/testhelp"
)

const (
	secret = "e2e-s3cr3t-Sh4red"
	addr   = "cb1.example.com"
)

var hexDigest = regexp.MustCompile(`[0-9a-fA-F]{40}`)

type env struct {
	t    *testing.T
	srv  *componenttest.Server
	logs *testhelp.Buffer
}

func newEnv(t *testing.T, opts componenttest.Options) *env {
	t.Helper()
	if opts.Components == nil {
		opts.Components = map[string]string{addr: secret}
	}
	srv, err := componenttest.NewServer(opts)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, logs: &testhelp.Buffer{}}
}

func (e *env) config() component.Config {
	return component.Config{
		Name: "cb1", Domain: "example.com", Secret: component.NewSecret(secret),
		Tuning: component.Tuning{CloseTimeout: 500 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (e *env) dial() net.Conn {
	e.t.Helper()
	var (
		c   net.Conn
		err error
	)
	if cfg := e.srv.ClientTLSConfig(); cfg != nil {
		c, err = tls.Dial("tcp", e.srv.Addr(), cfg)
	} else {
		c, err = net.Dial("tcp", e.srv.Addr())
	}
	require.NoError(e.t, err)
	return c
}

func (e *env) session(cfg component.Config) (*component.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := component.NewSession(ctx, e.dial(), cfg)
	if err == nil {
		e.t.Cleanup(func() { s.Abort() })
	}
	return s, err
}

// connect returns an established session and the server's side of it.
func (e *env) connect(cfg component.Config) (*component.Session, *componenttest.Conn) {
	e.t.Helper()
	s, err := e.session(cfg)
	require.NoError(e.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.srv.WaitConn(ctx, addr)
	require.NoError(e.t, err)
	return s, c
}

// noSecret checks that neither the secret nor the digest of any stream id
// the server used leaked into errors or logs.
func (e *env) noSecret(texts ...string) {
	e.t.Helper()
	texts = append(texts, e.logs.String())
	for _, s := range texts {
		require.NotContains(e.t, s, secret)
		// A handshake digest (40 hex digits) must not appear either.
		require.False(e.t, hexDigest.MatchString(s), "digest-like value in %q", s)
	}
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestE2ESuccessTLSAndPlain(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprint("plain=", plain), func(t *testing.T) {
			e := newEnv(t, componenttest.Options{Plain: plain})
			s, c := e.connect(e.config())
			assert.Equal(t, addr, s.Addr().String())
			rtt, err := s.Ping(ctx5(t))
			require.NoError(t, err)
			assert.Positive(t, rtt)
			_, err = c.Ping(ctx5(t))
			require.NoError(t, err)
			require.NoError(t, s.Close())
			assert.ErrorIs(t, s.Err(), component.ErrClosed)
			require.NoError(t, c.WaitClosed(ctx5(t)))
			assert.True(t, c.ClosedByPeer(), "the component closed its stream cleanly")
			e.noSecret()
		})
	}
}

func TestE2EHandshakeFailures(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *env, cfg *component.Config)
		want  error
		noHS  bool
		extra func(t *testing.T, e *env)
	}{
		{name: "wrong secret", setup: func(e *env, cfg *component.Config) { cfg.Secret = component.NewSecret("not-" + secret) },
			want: stream.NotAuthorized},
		{name: "unknown name", setup: func(e *env, cfg *component.Config) { cfg.Name = "cb9" },
			want: stream.HostUnknown},
		{name: "duplicate", setup: func(e *env, cfg *component.Config) {
			_, _ = e.connect(e.config())
		}, want: stream.Conflict},
		{name: "missing id", setup: func(e *env, cfg *component.Config) {
			e.srv.SetFault(componenttest.Fault{Header: componenttest.HeaderTweak{OmitID: true}})
		}, want: component.ErrNoStreamID, noHS: true},
		{name: "empty id", setup: func(e *env, cfg *component.Config) {
			e.srv.SetFault(componenttest.Fault{Header: componenttest.HeaderTweak{EmptyID: true}})
		}, want: component.ErrNoStreamID, noHS: true},
		{name: "other from", setup: func(e *env, cfg *component.Config) {
			e.srv.SetFault(componenttest.Fault{Header: componenttest.HeaderTweak{From: "cb2.example.com"}})
		}, want: component.ErrWrongAddress, noHS: true},
		{name: "client namespace", setup: func(e *env, cfg *component.Config) {
			e.srv.SetFault(componenttest.Fault{Header: componenttest.HeaderTweak{Namespace: "jabber:client"}})
		}, want: stream.InvalidNamespace, noHS: true},
		{name: "system shutdown instead of success", setup: func(e *env, cfg *component.Config) {
			e.srv.SetFault(componenttest.Fault{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionStreamError, Err: stream.SystemShutdown})
		}, want: stream.SystemShutdown},
		{name: "connection dropped", setup: func(e *env, cfg *component.Config) {
			e.srv.SetFault(componenttest.Fault{Phase: componenttest.PhaseHeader, Action: componenttest.ActionClose})
		}, want: nil},
		{name: "server stalls", setup: func(e *env, cfg *component.Config) {
			cfg.HandshakeTimeout = 100 * time.Millisecond
			e.srv.SetFault(componenttest.Fault{Phase: componenttest.PhaseClientHeader, Action: componenttest.ActionBlackhole})
		}, want: component.ErrTimeout, noHS: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, componenttest.Options{})
			cfg := e.config()
			tc.setup(e, &cfg)
			s, err := e.session(cfg)
			require.Error(t, err)
			require.Nil(t, s)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			conns := e.srv.Conns()
			last := conns[len(conns)-1]
			last.Close()
			require.NoError(t, last.WaitClosed(ctx5(t)))
			if tc.noHS {
				assert.NotContains(t, string(last.RawReceived()), "<handshake")
			}
			e.noSecret(err.Error())
		})
	}
}

func TestE2EHandshakeTolerance(t *testing.T) {
	cases := []struct {
		name  string
		fault componenttest.Fault
	}{
		{"xml declaration with newlines", componenttest.Fault{Phase: componenttest.PhaseClientHeader, Action: componenttest.ActionSend, Bytes: []byte("<?xml version='1.0' encoding='UTF-8'?>\n\r\n")}},
		{"whitespace before handshake reply", componenttest.Fault{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionSend, Bytes: []byte(" \n\t ")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, componenttest.Options{})
			e.srv.SetFault(tc.fault)
			s, _ := e.connect(e.config())
			require.NoError(t, s.Close())
		})
	}
}

func TestE2EStreamErrors(t *testing.T) {
	cases := []struct {
		err stream.Error
	}{
		{stream.NotAuthorized},
		{stream.HostUnknown},
		{stream.Conflict},
		{stream.InvalidNamespace},
		{stream.ImproperAddressing},
		{stream.InvalidFrom},
		{stream.PolicyViolation},
		{stream.Error{Err: "see-other-host", Content: "xmpp2.example.com:5223"}},
		{stream.SystemShutdown},
		{stream.ConnectionTimeout},
		{stream.InternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.err.Err, func(t *testing.T) {
			e := newEnv(t, componenttest.Options{})
			s, c := e.connect(e.config())
			se := tc.err
			se.Text = []struct{ Lang, Value string }{{"", "operator note"}}
			require.NoError(t, c.SendStreamError(ctx5(t), se))
			err := s.Wait(ctx5(t))
			require.ErrorIs(t, err, tc.err)
			var got *component.StreamError
			require.ErrorAs(t, err, &got)
			assert.Equal(t, "operator note", got.Text())
			host, ok := got.OtherHost()
			assert.Equal(t, tc.err.Content != "", ok)
			assert.Equal(t, tc.err.Content, host)
			assert.True(t, c.ClosedByPeer(), "the component answers with its closing tag")
			e.noSecret(err.Error())
		})
	}
}

func TestE2EFromStamping(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	s, c := e.connect(e.config())
	user := jid.MustParse("guest123@example.com/webrtc")
	require.NoError(t, s.Send(ctx5(t), component.Message{To: user, ID: "m1"}))
	require.NoError(t, s.Send(ctx5(t), component.Presence{To: user, From: jid.MustParse("room@cb1.example.com")}))
	err := s.Send(ctx5(t), component.Message{To: user, From: jid.MustParse("example.com")})
	require.ErrorIs(t, err, component.ErrForeignFrom)
	st, err := c.Next(ctx5(t))
	require.NoError(t, err)
	assert.Equal(t, addr, st.From)
	assert.Equal(t, "m1", st.ID)
	st, err = c.Next(ctx5(t))
	require.NoError(t, err)
	assert.Equal(t, "room@cb1.example.com", st.From)
	assert.Equal(t, "presence", st.Name)
	// Still up: the server never saw the foreign stanza.
	_, err = c.Ping(ctx5(t))
	require.NoError(t, err)
	assert.Nil(t, s.Err())
}

func TestE2EUnhandledIQ(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	_, c := e.connect(e.config())
	reply, err := c.SendIQ(ctx5(t), []byte(`<iq type='get' id='v1' from='guest@example.com/web' to='cb1.example.com'><query xmlns='jabber:iq:version'/></iq>`))
	require.NoError(t, err)
	var iq struct {
		Type  string        `xml:"type,attr"`
		From  string        `xml:"from,attr"`
		To    string        `xml:"to,attr"`
		Error *stanza.Error `xml:"error"`
	}
	require.NoError(t, xml.Unmarshal(reply, &iq))
	assert.Equal(t, "error", iq.Type)
	assert.Equal(t, addr, iq.From)
	assert.Equal(t, "guest@example.com/web", iq.To)
	require.NotNil(t, iq.Error)
	assert.Equal(t, stanza.ServiceUnavailable, iq.Error.Condition)
}

func joinMux(t *testing.T) *component.Mux {
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		switch {
		case req.Call != "1234":
			return nil, component.ErrJoinUnknownCall
		case req.Passcode != "42":
			return nil, component.ErrJoinForbidden
		}
		assert.Equal(t, "guest123@example.com/webrtc", req.From.String())
		return &component.JoinResult{Session: "s-" + req.DisplayName}, nil
	})
	return mux
}

func TestE2EJoin(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	cfg.Handler = joinMux(t)
	s, c := e.connect(cfg)
	from := jid.MustParse("guest123@example.com/webrtc")
	cases := []struct {
		name    string
		req     component.JoinRequest
		raw     string // instead of req
		session string
		want    error
	}{
		{name: "accepted", req: component.JoinRequest{Call: "1234", Passcode: "42", DisplayName: "Ann <& Bob>"}, session: "s-Ann <& Bob>"},
		{name: "wrong passcode", req: component.JoinRequest{Call: "1234", Passcode: "41"}, want: component.ErrJoinForbidden},
		{name: "unknown call", req: component.JoinRequest{Call: "999"}, want: stanza.Error{Condition: stanza.ItemNotFound}},
		{name: "unusual shape decoded by encoding/xml", raw: `<iq type='set' id='cdata' from='guest123@example.com/webrtc' to='cb1.example.com'><join xmlns='urn:cblink:join:0' call='1234' passcode='42'><display-name><![CDATA[Zoë <x>]]></display-name></join></iq>`,
			session: "s-Zoë <x>"},
		{name: "missing call", raw: `<iq type='set' id='nocall' from='guest123@example.com/webrtc' to='cb1.example.com'><join xmlns='urn:cblink:join:0' passcode='42'/></iq>`,
			want: stanza.Error{Condition: stanza.BadRequest}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.raw == "" {
				tc.req.From, tc.req.ID = from, fmt.Sprint("j", i)
				raw = component.MarshalJoinIQ(&tc.req, s.Addr())
			}
			reply, err := c.SendIQ(ctx5(t), raw)
			require.NoError(t, err)
			res, err := component.ParseJoinResponse(reply)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.session, res.Session)
		})
	}
}

func TestE2EKeepaliveWhenIdle(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	cfg.KeepaliveIdle = 30 * time.Millisecond
	s, c := e.connect(cfg)
	require.Eventually(t, func() bool {
		raw := c.RawReceived()
		return bytes.HasSuffix(raw, []byte(" ")) && bytes.Contains(raw, []byte("</handshake>"))
	}, 2*time.Second, 5*time.Millisecond)
	assert.Positive(t, s.Stats().KeepalivesOut)
}

func TestE2EBlackholeDetected(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	cfg.PingInterval = 50 * time.Millisecond
	cfg.PingTimeout = 150 * time.Millisecond
	cfg.ReadTimeout = 300 * time.Millisecond
	s, c := e.connect(cfg)
	c.Blackhole()
	start := time.Now()
	err := s.Wait(ctx5(t))
	assert.ErrorIs(t, err, component.ErrTimeout)
	assert.Less(t, time.Since(start), 1500*time.Millisecond)
}

func TestE2EOversizeStanza(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	cfg.MaxStanzaSize = 2048
	s, c := e.connect(cfg)
	require.NoError(t, c.SendOversize(ctx5(t), 8192))
	err := s.Wait(ctx5(t))
	assert.ErrorIs(t, err, component.ErrTooLarge)
	assert.ErrorIs(t, err, stream.PolicyViolation)
	require.NoError(t, c.WaitClosed(ctx5(t)))
	assert.Contains(t, string(c.RawReceived()), "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
}

func TestE2EServerCloses(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	s, c := e.connect(e.config())
	require.NoError(t, c.CloseStream(ctx5(t)))
	assert.True(t, c.ClosedByPeer())
	err := s.Wait(ctx5(t))
	assert.ErrorIs(t, err, component.ErrPeerClosed)
	assert.ErrorIs(t, s.Send(ctx5(t), component.Message{}), component.ErrDisconnected)
}

func TestE2EPendingIQsFailOnDisconnect(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	s, c := e.connect(e.config())
	errc := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := s.SendIQ(context.Background(), component.IQ{Type: stanza.GetIQ, To: jid.MustParse(fmt.Sprintf("u%d@example.com/r", i))})
			errc <- err
		}()
	}
	for range 3 {
		_, err := c.Next(ctx5(t))
		require.NoError(t, err)
	}
	c.Reset()
	for range 3 {
		select {
		case err := <-errc:
			assert.ErrorIs(t, err, component.ErrDisconnected)
		case <-time.After(5 * time.Second):
			t.Fatal("pending IQ not released")
		}
	}
	assert.Error(t, s.Wait(ctx5(t)), "the link ended with the reset")
}

func TestE2EServerPingFlood(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	s, c := e.connect(e.config())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				_, err := c.Ping(ctx5(t))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	// The counter moves just after the reply is queued.
	require.Eventually(t, func() bool { return s.Stats().PingsAnswered == 800 }, time.Second, time.Millisecond)
}

// TestE2EJoinFlood: JoinFlood's joins all reach the handler and are all
// answered; a refusal is reported.
func TestE2EJoinFlood(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	var calls atomic.Int64
	refuse := atomic.Bool{}
	m := component.NewMux()
	m.HandleJoin(func(_ context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		calls.Add(1)
		if req.Call != "1234" || req.DisplayName != "Guest <1>" || req.From.Domainpart() != "example.com" {
			return nil, component.ErrJoinUnknownCall
		}
		if refuse.Load() {
			return nil, component.ErrJoinForbidden
		}
		return &component.JoinResult{Session: "s"}, nil
	})
	cfg.Handler = m
	_, c := e.connect(cfg)
	req := component.JoinRequest{Call: "1234", DisplayName: "Guest <1>"}
	require.NoError(t, c.JoinFlood(ctx5(t), 300, 16, req))
	assert.EqualValues(t, 300, calls.Load())
	refuse.Store(true)
	assert.ErrorIs(t, c.JoinFlood(ctx5(t), 3, 2, req), componenttest.ErrIQError)
	assert.EqualValues(t, 303, calls.Load())
}

// TestDefaultWorkersServeWaitingHandlers: with default settings, 64 join
// requests whose handlers wait on a backend all run at once (the issue:
// 8 workers served 8 at a time, 739 joins/s with a 10ms backend). Each
// handler waits until all 64 are running, so fewer workers would stall.
func TestDefaultWorkersServeWaitingHandlers(t *testing.T) {
	const n = 64
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	var running atomic.Int64
	all := make(chan struct{})
	m := component.NewMux()
	m.HandleJoin(func(ctx context.Context, _ *component.JoinRequest) (*component.JoinResult, error) {
		if running.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	cfg.Handler = m
	_, c := e.connect(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.JoinFlood(ctx, n, n, component.JoinRequest{Call: "1"}), "%d handlers ran at once", running.Load())
	assert.EqualValues(t, n, running.Load())
}

// TestE2ECloseWithServerNotReading: over TLS, a server that stopped
// reading (full socket buffers, a write blocked) holds Close no longer
// than about CloseTimeout: neither the write timeout nor TLS's own
// close_notify wait apply.
func TestE2ECloseWithServerNotReading(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	cfg := e.config()
	cfg.WriteTimeout = time.Hour
	cfg.CloseTimeout = 300 * time.Millisecond
	s, c := e.connect(cfg)
	c.Blackhole()
	big := component.RawXML("<body>" + strings.Repeat("x", 16<<10) + "</body>")
	full := false
	for range 64 << 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := s.Send(ctx, component.Message{Payload: big})
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			full = true
			break
		}
	}
	require.True(t, full, "the socket buffers and the write queue never filled")
	start := time.Now()
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Logf("Close over TLS with the server not reading took %v (CloseTimeout %v, write timeout %v)", time.Since(start).Round(time.Millisecond), cfg.CloseTimeout, cfg.WriteTimeout)
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a server that does not read")
	}
}

// TestE2EServerTextBounded: a stream error whose text is huge and holds a
// newline (which could forge a line in a tool's output) comes out bounded
// and on one line.
func TestE2EServerTextBounded(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	s, c := e.connect(e.config())
	text := "first line\nOK    result  -  would work " + strings.Repeat("A", 200<<10)
	go func() {
		_ = c.SendStreamError(context.Background(), stream.Error{Err: "undefined-condition", Text: []struct{ Lang, Value string }{{"en", text}}})
	}()
	err := s.Wait(ctx5(t))
	var se *component.StreamError
	require.ErrorAs(t, err, &se)
	msg := err.Error()
	assert.NotContains(t, msg, "\n")
	assert.Less(t, len(msg), 1024, "bounded: %d bytes", len(msg))
	assert.Contains(t, msg, `first line\nOK`)
	assert.Contains(t, msg, "[cut ")
}
