package wstest_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/component/componenttest/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	domain = "example.com"
	addr   = "cb1.example.com"
	secret = "s3cret"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bridge is a component on a componenttest server, with a join handler
// that knows call 100 (passcode 1234) and records who asked.
type bridge struct {
	srv  *componenttest.Server
	sess *component.Session
	mu   sync.Mutex
	from []string
	msgs []string
	hold chan struct{} // call "hold" waits for it (closed at cleanup)
	held chan struct{} // receives when a "hold" handler starts
}

func startBridge(t *testing.T, connect bool) *bridge {
	t.Helper()
	srv, err := componenttest.NewServer(componenttest.Options{Domain: domain, Plain: true,
		Components: map[string]string{addr: secret}})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	b := &bridge{srv: srv, hold: make(chan struct{}), held: make(chan struct{}, 4)}
	t.Cleanup(func() { close(b.hold) })
	if !connect {
		return b
	}
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		b.mu.Lock()
		b.from = append(b.from, req.From.String())
		b.mu.Unlock()
		switch {
		case req.Call == "hold":
			select {
			case b.held <- struct{}{}:
			default:
			}
			select {
			case <-b.hold:
			case <-ctx.Done():
			}
			return &component.JoinResult{Session: "held"}, nil
		case req.Call != "100":
			return nil, component.ErrJoinUnknownCall
		case req.Passcode != "1234":
			return nil, component.ErrJoinForbidden
		}
		return &component.JoinResult{Session: "s-1"}, nil
	})
	mux.HandleMessage(func(ctx context.Context, st *component.Stanza) {
		b.mu.Lock()
		b.msgs = append(b.msgs, st.From.String())
		b.mu.Unlock()
	})
	nc, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	b.sess, err = component.NewSession(testCtx(t), nc, component.Config{Name: "cb1", Domain: domain,
		Secret: component.NewSecret(secret), Handler: mux})
	require.NoError(t, err)
	t.Cleanup(func() { b.sess.Abort() })
	_, err = srv.WaitConn(testCtx(t), addr)
	require.NoError(t, err)
	return b
}

func startWS(t *testing.T, o wstest.Options) *wstest.Server {
	t.Helper()
	if o.Domain == "" {
		o.Domain = domain
	}
	ws, err := wstest.New(o)
	require.NoError(t, err)
	t.Cleanup(ws.Close)
	return ws
}

// client is a minimal RFC 7395 client.
type client struct {
	t   *testing.T
	c   *websocket.Conn
	jid string
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	c, _, err := websocket.Dial(testCtx(t), url, &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.CloseNow() })
	return &client{t: t, c: c}
}

func (c *client) send(s string) {
	c.t.Helper()
	require.NoError(c.t, c.c.Write(testCtx(c.t), websocket.MessageText, []byte(s)))
}

func (c *client) recv() string {
	c.t.Helper()
	_, b, err := c.c.Read(testCtx(c.t))
	require.NoError(c.t, err)
	return string(b)
}

// expect reads a frame and checks that it holds every fragment.
func (c *client) expect(frags ...string) string {
	c.t.Helper()
	got := c.recv()
	for _, f := range frags {
		require.Contains(c.t, got, f)
	}
	return got
}

const (
	open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"
)

func (c *client) login() {
	c.t.Helper()
	c.send(open)
	c.expect("<open ", "from='example.com'")
	c.expect("<mechanism>ANONYMOUS</mechanism>")
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
	c.expect("<success")
	c.send(open)
	c.expect("<open ")
	c.expect("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
	c.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>")
	got := c.expect("type='result'", "id='b1'", "<jid>")
	i, j := strings.Index(got, "<jid>"), strings.Index(got, "</jid>")
	c.jid = got[i+5 : j]
	require.True(c.t, strings.HasSuffix(c.jid, "@example.com/web"), c.jid)
}

func join(id, call, passcode string) string {
	return string(component.MarshalJoinIQ(&component.JoinRequest{ID: id, Call: call, Passcode: passcode, DisplayName: "Ann"},
		jid.MustParse(addr)))
}

// expectClosed reads until the connection ends and returns the WebSocket
// close status.
func (c *client) expectClosed() websocket.StatusCode {
	c.t.Helper()
	for {
		_, _, err := c.c.Read(testCtx(c.t))
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func TestJoinAnswers(t *testing.T) {
	b := startBridge(t, true)
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}})
	c := dial(t, ws.URL())
	c.login()
	tests := []struct {
		name, call, passcode string
		want                 []string
	}{
		{"accepted", "100", "1234", []string{"type='result'", "session='s-1'"}},
		{"forbidden", "100", "0000", []string{"type='error'", "<forbidden "}},
		{"item-not-found", "300", "", []string{"type='error'", "<item-not-found "}},
		{"bad-request", "", "", []string{"type='error'", "<bad-request "}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "j" + string(rune('a'+i))
			c.send(join(id, tc.call, tc.passcode))
			c.expect(append(tc.want, "id='"+id+"'", "from='cb1.example.com'", "to='"+c.jid+"'", "xmlns='jabber:client'")...)
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	require.NotEmpty(t, b.from)
	for _, f := range b.from {
		assert.Equal(t, c.jid, f, "the endpoint stamps the user's full JID")
	}
}

func TestJoinSpoofedFromIsStamped(t *testing.T) {
	b := startBridge(t, true)
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}})
	c := dial(t, ws.URL())
	c.login()
	c.send("<iq xmlns='jabber:client' type='set' id='x' from='admin@example.com/x' to='cb1.example.com'><join xmlns='urn:cblink:join:0' call='100' passcode='1234'/></iq>")
	c.expect("type='result'", "id='x'")
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Equal(t, []string{c.jid}, b.from)
}

func TestServerAnswers(t *testing.T) {
	b := startBridge(t, false) // cb1 registered, not connected
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}})
	c := dial(t, ws.URL())
	c.login()
	c.send(join("u", "100", "1234"))
	c.expect("type='error'", "id='u'", "<remote-server-timeout ", "component unavailable")
	c.send(strings.Replace(join("n", "100", "1234"), "cb1.example.com", "cb9.example.net", 1))
	c.expect("type='error'", "id='n'", "<remote-server-not-found ")
	c.send("<iq xmlns='jabber:client' type='get' id='p' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.expect("type='result'", "id='p'", "from='example.com'")
	c.send("<iq xmlns='jabber:client' type='get' id='v' to='example.com'><query xmlns='jabber:iq:version'/></iq>")
	c.expect("type='error'", "id='v'", "<service-unavailable ")
	c.send("<presence xmlns='jabber:client'/>") // ignored
	c.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
	c.expect("<close ")
	assert.Equal(t, websocket.StatusNormalClosure, c.expectClosed())
}

func TestMessagesBothWays(t *testing.T) {
	b := startBridge(t, true)
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}})
	c := dial(t, ws.URL())
	c.login()
	c.send("<message xmlns='jabber:client' to='cb1.example.com' id='m1'><body>hi</body></message>")
	// The component answers with a message to the user: it arrives after
	// the user's message was handled.
	c.send(join("sync", "100", "1234"))
	c.expect("id='sync'")
	b.mu.Lock()
	assert.Equal(t, []string{c.jid}, b.msgs)
	b.mu.Unlock()
	require.NoError(t, b.sess.Send(testCtx(t), component.Message{To: jid.MustParse(c.jid), Type: "chat",
		Payload: component.RawXML("<body>welcome</body>")}))
	c.expect("<message ", "xmlns='jabber:client'", "<body>welcome</body>", "from='cb1.example.com'")
}

func TestPendingIQsBounded(t *testing.T) {
	b := startBridge(t, true)
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}, MaxPendingIQs: 1})
	c := dial(t, ws.URL())
	c.login()
	c.send(join("h1", "hold", ""))
	c.send(join("h2", "hold", ""))
	c.expect("id='h2'", "<resource-constraint ")
}

func TestRefusals(t *testing.T) {
	b := startBridge(t, true)
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}, MaxFrameSize: 4096})
	tests := []struct {
		name  string
		login bool
		frame string
		want  string // stream error condition
	}{
		{"stanza before open", false, "<iq type='get' id='1'/>", "not-authorized"},
		{"wrong domain", false, strings.Replace(open, "example.com", "example.org", 1), "host-unknown"},
		{"two elements in a frame", false, open + open, "not-well-formed"},
		{"not xml", false, "hello", "not-well-formed"},
		{"not utf-8 in content", true, "<message xmlns='jabber:client' to='cb1.example.com'><body>\xff\xfe</body></message>", "not-well-formed"},
		{"control character in content", true, "<message xmlns='jabber:client' to='cb1.example.com'><body>\x01</body></message>", "not-well-formed"},
		{"unknown element", true, "<foo xmlns='jabber:client'/>", "unsupported-stanza-type"},
		{"other namespace", true, "<message xmlns='jabber:server' to='cb1.example.com'/>", "invalid-namespace"},
		{"iq without id", true, "<iq xmlns='jabber:client' type='get' to='example.com'/>", "invalid-xml"},
		{"open again", true, open, "policy-violation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ws.URL())
			if tc.login {
				c.login()
			}
			c.send(tc.frame)
			for {
				got := c.recv()
				if strings.HasPrefix(got, "<stream:error") {
					assert.Contains(t, got, "<"+tc.want+" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
					break
				}
			}
			c.expect("<close ")
			assert.Equal(t, websocket.StatusNormalClosure, c.expectClosed())
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		c := dial(t, ws.URL())
		require.NoError(t, c.c.Write(testCtx(t), websocket.MessageBinary, []byte(open)))
		c.expect("<unsupported-encoding ")
	})
	t.Run("frame too big", func(t *testing.T) {
		c := dial(t, ws.URL())
		c.login()
		_ = c.c.Write(testCtx(t), websocket.MessageText, []byte("<message xmlns='jabber:client'><body>"+strings.Repeat("x", 5000)+"</body></message>"))
		assert.Equal(t, websocket.StatusMessageTooBig, c.expectClosed())
	})
	t.Run("no xmpp sub-protocol", func(t *testing.T) {
		_, resp, err := websocket.Dial(testCtx(t), ws.URL(), nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusNotImplemented, resp.StatusCode)
	})
	t.Run("unknown mechanism", func(t *testing.T) {
		c := dial(t, ws.URL())
		c.send(open)
		c.expect("<open ")
		c.expect("<mechanisms ")
		for range 3 {
			c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
			c.expect("<failure ", "<invalid-mechanism/>")
		}
		c.expect("<policy-violation ")
	})
}

func TestMaxSessions(t *testing.T) {
	ws := startWS(t, wstest.Options{MaxSessions: 1})
	c := dial(t, ws.URL())
	c.send(open)
	c.expect("<open ")
	_, resp, err := websocket.Dial(testCtx(t), ws.URL(), &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

// TestCloseLeavesNothing ends an endpoint with sessions in every state,
// one with an IQ waiting for the component: every session, connection and
// goroutine is gone when Close returns (TestMain checks the goroutines).
func TestCloseLeavesNothing(t *testing.T) {
	b := startBridge(t, true)
	ws, err := wstest.New(wstest.Options{Domain: domain, Servers: []*componenttest.Server{b.srv}})
	require.NoError(t, err)
	idle := dial(t, ws.URL())
	half := dial(t, ws.URL())
	half.send(open)
	half.expect("<open ")
	busy := dial(t, ws.URL())
	busy.login()
	busy.send(join("h", "hold", ""))
	conn, err := b.srv.WaitConn(testCtx(t), addr)
	require.NoError(t, err)
	select { // the IQ reached the component's handler
	case <-b.held:
	case <-testCtx(t).Done():
		t.Fatal("the join did not reach the component")
	}
	assert.Equal(t, 3, ws.Sessions())
	ws.Close()
	assert.Equal(t, 0, ws.Sessions())
	assert.Equal(t, 0, ws.Conns())
	for _, c := range []*client{idle, half, busy} {
		for {
			_, _, err := c.c.Read(testCtx(t))
			if err != nil {
				require.False(t, errors.Is(err, context.DeadlineExceeded), "the connection was left open")
				break
			}
		}
	}
	ws.Close() // idempotent
	// The server's router is gone: a message to the user is queued for
	// the test again.
	require.NoError(t, b.sess.Send(testCtx(t), component.Message{To: jid.MustParse(busy.jid), Type: "chat"}))
	st, err := conn.Next(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, busy.jid, st.To)
}

func TestUserToUser(t *testing.T) {
	ws := startWS(t, wstest.Options{})
	a, b := dial(t, ws.URL()), dial(t, ws.URL())
	a.login()
	b.login()
	a.send("<message xmlns='jabber:client' to='" + b.jid + "' from='spoofed@example.com/x'><body>hi</body></message>")
	b.expect("<body>hi</body>", "from='"+a.jid+"'")
	a.send("<iq xmlns='jabber:client' type='get' id='q' to='nobody@example.com/x'><query xmlns='jabber:iq:version'/></iq>")
	a.expect("id='q'", "<service-unavailable ")
}

// TestComponentLostDuringIQ: the component's link drops while a join
// waits for its answer; the user gets remote-server-timeout at once.
func TestComponentLostDuringIQ(t *testing.T) {
	b := startBridge(t, true)
	ws := startWS(t, wstest.Options{Servers: []*componenttest.Server{b.srv}})
	c := dial(t, ws.URL())
	c.login()
	c.send(join("h", "hold", ""))
	select {
	case <-b.held:
	case <-testCtx(t).Done():
		t.Fatal("the join did not reach the component")
	}
	b.srv.CloseClientConnections()
	c.expect("id='h'", "<remote-server-timeout ", "component unavailable")
}

// TestSilentConnectionsAreClosed: a connection that does not log in
// within LoginTimeout is closed and frees its place, so silent clients
// cannot hold MaxSessions.
func TestSilentConnectionsAreClosed(t *testing.T) {
	ws := startWS(t, wstest.Options{MaxSessions: 1, LoginTimeout: 50 * time.Millisecond})
	silent, _, err := websocket.Dial(testCtx(t), ws.URL(), &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	require.NoError(t, err)
	defer silent.CloseNow()
	_, _, err = silent.Read(testCtx(t)) // returns once the endpoint closes it
	require.Error(t, err)
	require.Eventually(t, func() bool { // its place is freed once its session has ended
		c, _, err := websocket.Dial(testCtx(t), ws.URL(), &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
		if err != nil {
			return false
		}
		c.CloseNow()
		return true
	}, 5*time.Second, 5*time.Millisecond)
}
