package component

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/internal/xstream"
)

type body struct {
	XMLName xml.Name `xml:"body"`
	Text    string   `xml:",chardata"`
}

func TestSendStampsFrom(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	ctx := context.Background()
	user := jid.MustParse("guest@example.com/web")
	cases := []struct {
		name     string
		st       Outgoing
		wantFrom string
		wantErr  error
	}{
		{"message, from empty", Message{To: user, Type: stanza.ChatMessage, Payload: body{Text: "hi <&> 'x'"}}, testAddr, nil},
		{"presence, from empty", Presence{To: user}, testAddr, nil},
		{"iq, from empty", IQ{To: user, Type: stanza.ResultIQ, ID: "r1"}, testAddr, nil},
		{"from inside the domain", Message{From: jid.MustParse("room1@cb1.example.com/x"), To: user}, "room1@cb1.example.com/x", nil},
		{"from is the address", Presence{From: jid.MustParse("cb1.example.com"), To: user}, testAddr, nil},
		{"foreign from", Message{From: jid.MustParse("evil.example.com"), To: user}, "", ErrForeignFrom},
		{"server domain from", Message{From: jid.MustParse("a@example.com"), To: user}, "", ErrForeignFrom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Send(ctx, tc.st)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			got := p.nextStanza()
			assert.Equal(t, tc.wantFrom, attr(t, got, "from"))
			assert.Equal(t, user.String(), attr(t, got, "to"))
		})
	}
	// Rejected stanzas were never written: the next element is the probe.
	require.NoError(t, s.Send(ctx, Message{ID: "probe"}))
	assert.Equal(t, "probe", attr(t, p.nextStanza(), "id"))
}

func TestSendEscapes(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	to := jid.MustParse("obrien@example.com/a'b&c<d")
	require.NoError(t, s.Send(context.Background(), Message{ID: "x'\"<>&", To: to, Payload: body{Text: "</message><evil/>"}}))
	got := p.nextStanza()
	assert.Equal(t, "x'\"<>&", attr(t, got, "id"))
	assert.Equal(t, to.String(), attr(t, got, "to"))
	var m struct {
		Body string `xml:"body"`
	}
	require.NoError(t, xml.Unmarshal([]byte(got), &m))
	assert.Equal(t, "</message><evil/>", m.Body)
}

func TestConcurrentSenders(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	const n, each = 8, 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for j := range each {
				assert.NoError(t, s.Send(context.Background(), Message{ID: fmt.Sprintf("%d-%d", i, j)}))
			}
		})
	}
	seen := map[string]bool{}
	for range n * each {
		seen[attr(t, p.nextStanza(), "id")] = true
	}
	wg.Wait()
	assert.Len(t, seen, n*each)
	assert.EqualValues(t, n*each, s.Stats().StanzasOut)
}

func TestIncomingPingFastPath(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	p.write(`<iq type='get' id='p1' from='example.com' to='cb1.example.com'><ping xmlns='urn:xmpp:ping'/></iq>`)
	assert.Equal(t, `<iq type='result' id='p1' from='cb1.example.com' to='example.com'/>`, p.nextStanza())
	// Double-quoted values holding an apostrophe are re-escaped.
	p.write(`<iq type="get" id="it's" from="example.com"><ping xmlns="urn:xmpp:ping"/></iq>`)
	assert.Equal(t, `<iq type='result' id='it&apos;s' from='cb1.example.com' to='example.com'/>`, p.nextStanza())
	assert.EqualValues(t, 2, s.Stats().PingsAnswered)
}

func TestUnhandledIQ(t *testing.T) {
	for _, withMux := range []bool{false, true} {
		t.Run(fmt.Sprint("mux=", withMux), func(t *testing.T) {
			cfg := testConfig(nil)
			if withMux {
				cfg.Handler = NewMux()
				cfg.Handler.HandleIQ("query", "urn:other", func(context.Context, *Stanza) (any, error) { return nil, nil })
			}
			_, p := startSession(t, cfg)
			p.write(`<iq type='get' id='q1' from='u@example.com/r' to='cb1.example.com'><query xmlns='jabber:iq:version'/></iq>`)
			got := p.nextStanza()
			assert.Equal(t, "error", attr(t, got, "type"))
			assert.Equal(t, "q1", attr(t, got, "id"))
			assert.Equal(t, "u@example.com/r", attr(t, got, "to"))
			assert.Equal(t, testAddr, attr(t, got, "from"))
			assert.Contains(t, got, "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>")
		})
	}
}

func TestHandlerErrorsAndPanics(t *testing.T) {
	logs := &logBuf{}
	mux := NewMux()
	mux.HandleIQ("q", "urn:test", func(ctx context.Context, iq *Stanza) (any, error) {
		var p struct {
			Mode string `xml:"mode,attr"`
		}
		if err := iq.DecodePayload(&p); err != nil {
			return nil, err
		}
		switch p.Mode {
		case "stanza":
			return nil, fmt.Errorf("wrapped: %w", stanza.Error{Type: stanza.Auth, Condition: stanza.Forbidden})
		case "plain":
			return nil, errors.New("database password is hunter2")
		case "panic":
			panic("boom")
		}
		return RawXML("<ok xmlns='urn:test'/>"), nil
	})
	cfg := testConfig(logs)
	cfg.Handler = mux
	s, p := startSession(t, cfg)
	cases := []struct{ mode, typ, cond string }{
		{"stanza", "error", "forbidden"},
		{"plain", "error", "internal-server-error"},
		{"panic", "error", "internal-server-error"},
		{"ok", "result", ""},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			p.write(`<iq type='set' id='` + tc.mode + `' from='u@example.com/r' to='cb1.example.com'><q xmlns='urn:test' mode='` + tc.mode + `'/></iq>`)
			got := p.nextStanza()
			assert.Equal(t, tc.typ, attr(t, got, "type"))
			assert.Equal(t, tc.mode, attr(t, got, "id"))
			assert.Equal(t, "u@example.com/r", attr(t, got, "to"))
			if tc.cond != "" {
				assert.Contains(t, got, "<"+tc.cond+" ")
				assert.NotContains(t, got, "hunter2", "private error text must not leave")
			} else {
				assert.Contains(t, got, "<ok xmlns='urn:test'/>")
			}
		})
	}
	st := s.Stats()
	assert.EqualValues(t, 1, st.HandlerPanics)
	assert.EqualValues(t, 2, st.HandlerErrors)
	assert.Nil(t, s.Err(), "handler failures must not end the link")
	assert.Contains(t, logs.String(), "boom")
	// A stanza error is the handler's answer, logged at DEBUG; any other
	// error is a fault, a WARN.
	assert.Contains(t, logs.String(), `level=DEBUG msg="IQ refused by its handler" component=cb1.example.com payload="urn:test q" from=u@example.com/r answer=forbidden`)
	assert.Contains(t, logs.String(), `level=WARN msg="IQ handler error" component=cb1.example.com payload="urn:test q" from=u@example.com/r answer=internal-server-error`)
	assert.Equal(t, 1, strings.Count(logs.String(), "IQ handler error"))
}

func TestMuxPanicsAtSetup(t *testing.T) {
	h := func(context.Context, *Stanza) (any, error) { return nil, nil }
	m := NewMux()
	assert.Panics(t, func() { m.HandleIQ("q", "ns", nil) })
	m.HandleIQ("q", "ns", h)
	assert.Panics(t, func() { m.HandleIQ("q", "ns", h) })
	assert.Panics(t, func() { m.HandleJoin(nil) })
	m.HandleMessage(func(context.Context, *Stanza) {})
	assert.Panics(t, func() { m.HandleMessage(func(context.Context, *Stanza) {}) })
	cfg := testConfig(nil)
	cfg.Handler = m
	startSession(t, cfg)
	assert.Panics(t, func() { m.HandleIQ("other", "ns", h) }, "registration after use")
}

func TestMessageAndPresenceHandlers(t *testing.T) {
	got := make(chan *Stanza, 2)
	mux := NewMux()
	mux.HandleMessage(func(ctx context.Context, st *Stanza) { got <- st })
	mux.HandlePresence(func(ctx context.Context, st *Stanza) { got <- st })
	cfg := testConfig(nil)
	cfg.Handler = mux
	_, p := startSession(t, cfg)
	p.write(`<message from='u@example.com/r' to='cb1.example.com' type='chat' id='m1'><body>hé &amp; co</body></message><presence from='u@example.com/r' to='cb1.example.com'/>`)
	m, pr := <-got, <-got
	if m.Kind != KindMessage {
		m, pr = pr, m
	}
	assert.Equal(t, KindMessage, m.Kind)
	assert.Equal(t, "chat", m.Type)
	assert.Equal(t, "m1", m.ID)
	assert.Equal(t, "u@example.com/r", m.From.String())
	assert.Equal(t, testAddr, m.To.String())
	name, _ := m.Payload()
	assert.Equal(t, "body", name)
	var b body
	require.NoError(t, m.DecodePayload(&b))
	assert.Equal(t, "hé & co", b.Text)
	assert.Equal(t, KindPresence, pr.Kind)
}

// TestStanzaAttributesEscaped: attribute values holding references are
// unescaped whichever of them do, beside plain ones sharing a string.
func TestStanzaAttributesEscaped(t *testing.T) {
	got := make(chan *Stanza, 2)
	mux := NewMux()
	mux.HandleMessage(func(ctx context.Context, st *Stanza) { got <- st })
	cfg := testConfig(nil)
	cfg.Handler = mux
	_, p := startSession(t, cfg)
	p.write(`<message from='u@example.com/r&amp;s' to='cb1.example.com' type='chat' id='m&lt;1'><x:body xmlns:x='urn:a&amp;b'/></message>`)
	p.write(`<message from="u@example.com/r's" to='cb1.example.com' id='m2'><body xmlns='urn:plain'/></message>`)
	m, m2 := <-got, <-got // handlers run at once: either may come first
	if m.ID == "m2" {
		m, m2 = m2, m
	}
	assert.Equal(t, "m<1", m.ID)
	assert.Equal(t, "chat", m.Type)
	assert.Equal(t, "u@example.com/r&s", m.From.String())
	assert.Equal(t, testAddr, m.To.String())
	name, ns := m.Payload()
	assert.Equal(t, "body", name)
	assert.Equal(t, "urn:a&b", ns)
	m = m2
	assert.Equal(t, "m2", m.ID)
	assert.Equal(t, "", m.Type)
	assert.Equal(t, "u@example.com/r's", m.From.String())
	name, ns = m.Payload()
	assert.Equal(t, "body", name)
	assert.Equal(t, "urn:plain", ns)
}

func TestOrderPerSender(t *testing.T) {
	const senders, each = 4, 30
	var mu sync.Mutex
	seen := map[string][]int{}
	var wg sync.WaitGroup
	wg.Add(senders * each)
	mux := NewMux()
	mux.HandleMessage(func(ctx context.Context, st *Stanza) {
		defer wg.Done()
		var n int
		fmt.Sscan(st.ID, &n)
		if n%3 == 0 {
			time.Sleep(time.Millisecond) // uneven handler times
		}
		mu.Lock()
		seen[st.From.String()] = append(seen[st.From.String()], n)
		mu.Unlock()
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	cfg.OrderPerSender = true
	cfg.Workers = 4
	_, p := startSession(t, cfg)
	var sb strings.Builder
	for i := range each {
		for u := range senders {
			fmt.Fprintf(&sb, "<message from='u%d@example.com/r' id='%d'/>", u, i)
		}
	}
	p.write(sb.String())
	wg.Wait()
	require.Len(t, seen, senders)
	for u, ids := range seen {
		for i, n := range ids {
			require.Equal(t, i, n, "order of %s", u)
		}
	}
}

func TestSendIQMatchesSender(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	to := jid.MustParse("conf.example.com")
	type res struct {
		st  *Stanza
		err error
	}
	out := make(chan res, 1)
	go func() {
		st, err := s.SendIQ(context.Background(), IQ{Type: stanza.GetIQ, To: to, ID: "req1", Payload: RawXML("<query xmlns='urn:test'/>")})
		out <- res{st, err}
	}()
	req := p.nextStanza()
	assert.Equal(t, "req1", attr(t, req, "id"))
	assert.Equal(t, testAddr, attr(t, req, "from"))
	// A result from the wrong sender with the right id is ignored.
	p.write(`<iq type='result' id='req1' from='evil.example.com' to='cb1.example.com'><fake/></iq>`)
	p.write(`<iq type='result' id='req1' to='cb1.example.com'/>`)
	select {
	case r := <-out:
		t.Fatalf("delivered a reply from the wrong sender: %s %v", r.st.Raw, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	p.write(`<iq type='result' id='req1' from='conf.example.com' to='cb1.example.com'><real xmlns='urn:test'/></iq>`)
	r := <-out
	require.NoError(t, r.err)
	name, _ := r.st.Payload()
	assert.Equal(t, "real", name)
	assert.Equal(t, "conf.example.com", r.st.From.String())
	assert.EqualValues(t, 2, s.Stats().Dropped)
}

func TestSendIQErrorReply(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	go func() {
		req := p.nextStanza()
		p.write(`<iq type='error' id='` + attr(t, req, "id") + `' from='example.com'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	}()
	st, err := s.SendIQ(context.Background(), IQ{Type: stanza.GetIQ, Payload: RawXML("<q xmlns='urn:x'/>")})
	require.Error(t, err)
	assert.ErrorIs(t, err, stanza.Error{Condition: stanza.ItemNotFound})
	require.NotNil(t, st)
	assert.Equal(t, "error", st.Type)
}

func TestSendIQTimeoutAndBounds(t *testing.T) {
	cfg := testConfig(nil)
	cfg.MaxPendingIQ = 1
	s, p := startSession(t, cfg)
	// Long enough to hold the one slot while the second IQ is refused,
	// even on a loaded machine; the test waits it out once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := s.SendIQ(ctx, IQ{Type: stanza.GetIQ, ID: "slow"})
		errc <- err
	}()
	p.nextStanza()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	_, err := s.SendIQ(ctx2, IQ{Type: stanza.GetIQ, ID: "second"})
	assert.ErrorIs(t, err, ErrTooManyPending)
	err = <-errc
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = s.SendIQ(context.Background(), IQ{Type: stanza.ResultIQ})
	assert.Error(t, err)
}

func TestPendingIQsFailOnDisconnect(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	const n = 5
	errc := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.SendIQ(context.Background(), IQ{Type: stanza.GetIQ, ID: fmt.Sprint("d", i)})
			errc <- err
		}()
	}
	for range n {
		p.nextStanza()
	}
	p.conn.Close()
	for range n {
		select {
		case err := <-errc:
			assert.ErrorIs(t, err, ErrDisconnected)
		case <-time.After(5 * time.Second):
			t.Fatal("pending IQ not released")
		}
	}
	err := waitDone(t, s)
	assert.Error(t, err)
}

func TestHandlerMaySendSynchronously(t *testing.T) {
	mux := NewMux()
	mux.HandleIQ("q", "urn:test", func(ctx context.Context, iq *Stanza) (any, error) {
		s, ok := SessionFromContext(ctx)
		if !ok {
			return nil, errors.New("no session")
		}
		// A nested request answered by the server, waited for here, on the
		// only worker.
		if _, err := s.SendIQ(ctx, IQ{Type: stanza.GetIQ, ID: "nested", Payload: RawXML("<n xmlns='urn:test'/>")}); err != nil {
			return nil, err
		}
		return nil, s.Send(ctx, Message{ID: "side", To: iq.From})
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	cfg.Workers = 1
	_, p := startSession(t, cfg)
	p.write(`<iq type='get' id='outer' from='u@example.com/r'><q xmlns='urn:test'/></iq>`)
	nested := p.nextStanza()
	require.Equal(t, "nested", attr(t, nested, "id"))
	p.write(`<iq type='result' id='nested' from='example.com'/>`)
	assert.Equal(t, "side", attr(t, p.nextStanza(), "id"))
	final := p.nextStanza()
	assert.Equal(t, "outer", attr(t, final, "id"))
	assert.Equal(t, "result", attr(t, final, "type"))
}

func TestKeepaliveWhenIdle(t *testing.T) {
	const idle = 40 * time.Millisecond
	cfg := testConfig(nil)
	cfg.KeepaliveIdle = idle
	s, p := startSession(t, cfg)
	el := p.next()
	assert.True(t, el.Keepalive, "expected a whitespace keepalive, got %q", el.Raw)
	assert.GreaterOrEqual(t, s.Stats().KeepalivesOut, uint64(1))
	// Traffic postpones keepalives: after a write, the next keepalive
	// leaves no sooner than idle later. (A lower bound: load can only
	// delay it further.)
	for range 3 {
		sent := time.Now()
		require.NoError(t, s.Send(context.Background(), Presence{}))
		for {
			el := p.next()
			if !el.Keepalive {
				break // the presence; keepalives before it were due earlier
			}
		}
		el := p.next()
		require.True(t, el.Keepalive, "only keepalives on an idle link, got %q", el.Raw)
		assert.GreaterOrEqual(t, time.Since(sent), idle, "a keepalive came sooner than idle after a write")
	}
}

func TestBlackholeDetected(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*Config)
	}{
		{"read timeout", func(c *Config) { c.ReadTimeout = 150 * time.Millisecond }},
		{"ping timeout", func(c *Config) {
			c.PingInterval = 30 * time.Millisecond
			c.PingTimeout = 100 * time.Millisecond
			c.ReadTimeout = -1
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(nil)
			tc.cfg(&cfg)
			start := time.Now()
			s, _ := startSession(t, cfg) // the peer reads but never answers
			err := waitDone(t, s)
			assert.ErrorIs(t, err, ErrTimeout)
			assert.Less(t, time.Since(start), 2*time.Second)
		})
	}
}

func TestPingsKeepLinkAlive(t *testing.T) {
	cfg := testConfig(nil)
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PingTimeout = 2 * time.Second // the next ping waits for the answer
	s, p := startSession(t, cfg)
	for i := range 4 {
		req := p.nextStanza()
		require.Equal(t, "example.com", attr(t, req, "to"))
		require.Contains(t, req, "urn:xmpp:ping")
		if i%2 == 0 {
			p.write(`<iq type='result' id='` + attr(t, req, "id") + `' from='example.com'/>`)
		} else { // service-unavailable proves the server alive too
			p.write(`<iq type='error' id='` + attr(t, req, "id") + `' from='example.com'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
		}
	}
	assert.Nil(t, s.Err())
	assert.Positive(t, s.Stats().LastPingRTT)
	go func() {
		req := p.nextStanza()
		p.write(`<iq type='error' id='` + attr(t, req, "id") + `' from='example.com'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	}()
	_, err := s.Ping(context.Background())
	assert.NoError(t, err)
}

func TestOversizeStanza(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  string
		cause error
	}{
		{"size", "<message><body>" + strings.Repeat("x", 4096) + "</body></message>", ErrTooLarge},
		{"depth", strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20), ErrTooDeep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(nil)
			cfg.MaxStanzaSize = 1024
			cfg.MaxDepth = 8
			s, p := startSession(t, cfg)
			go p.write(tc.data)
			got := p.nextStanza()
			assert.Equal(t, "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", got)
			assert.ErrorIs(t, p.end(), xstream.ErrStreamEnd)
			err := waitDone(t, s)
			assert.ErrorIs(t, err, tc.cause)
			assert.ErrorIs(t, err, stream.PolicyViolation)
			var se *StreamError
			require.ErrorAs(t, err, &se)
			assert.True(t, se.Local)
		})
	}
}

func TestCloseClientSide(t *testing.T) {
	cfg := testConfig(nil)
	cfg.CloseTimeout = 10 * time.Second // far beyond any scheduling delay
	s, p := startSession(t, cfg)
	go func() {
		if p.end() == xstream.ErrStreamEnd {
			p.write("</stream:stream>")
		}
	}()
	start := time.Now()
	require.NoError(t, s.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "Close must not wait for CloseTimeout when the server answers")
	require.NoError(t, s.Close(), "idempotent")
	s.Abort()
	assert.ErrorIs(t, s.Err(), ErrClosed)
	assert.ErrorIs(t, s.Send(context.Background(), Message{}), ErrClosed)
	_, err := s.SendIQ(context.Background(), IQ{Type: stanza.GetIQ})
	assert.ErrorIs(t, err, ErrClosed)
}

func TestCloseServerSide(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	p.write("</stream:stream>")
	err := waitDone(t, s)
	assert.ErrorIs(t, err, ErrPeerClosed)
	assert.ErrorIs(t, p.end(), xstream.ErrStreamEnd, "the client answers with its closing tag")
}

func TestConcurrentClose(t *testing.T) {
	s, _ := startSession(t, testConfig(nil))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _ = s.Close() })
		wg.Go(s.Abort)
		wg.Go(func() { _ = s.Send(context.Background(), Message{}) })
	}
	wg.Wait()
	<-s.Done()
	assert.ErrorIs(t, s.Err(), ErrClosed)
}

func TestCloseWaitsForHandlers(t *testing.T) {
	started := make(chan struct{})
	var finished bool
	mux := NewMux()
	mux.HandleMessage(func(ctx context.Context, st *Stanza) {
		close(started)
		<-ctx.Done() // handlers see the link end
		time.Sleep(10 * time.Millisecond)
		finished = true
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	s, p := startSession(t, cfg)
	p.write("<message from='u@example.com'/>")
	<-started
	s.Abort()
	assert.True(t, finished)
}

func TestOverloadedHandlersDoNotDeadlock(t *testing.T) {
	release := make(chan struct{})
	mux := NewMux()
	mux.HandleIQ("q", "urn:test", func(ctx context.Context, iq *Stanza) (any, error) {
		s, _ := SessionFromContext(ctx)
		if iq.ID == "first" {
			// Wait for a reply the reader must deliver while the queue is full.
			_, err := s.SendIQ(ctx, IQ{Type: stanza.GetIQ, ID: "nested"})
			return nil, err
		}
		<-release
		return nil, nil
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	cfg.Workers, cfg.OrderPerSender = 1, true // one sender: one waits, the rest are shed
	cfg.QueueSize = 1
	s, p := startSession(t, cfg)
	p.write(`<iq type='set' id='first' from='u@example.com'><q xmlns='urn:test'/></iq>`)
	require.Equal(t, "nested", attr(t, p.nextStanza(), "id"))
	// Fill the queue (1) and overflow it (2 more) before answering.
	for _, id := range []string{"a", "b", "c"} {
		p.write(`<iq type='set' id='` + id + `' from='u@example.com'><q xmlns='urn:test'/></iq>`)
	}
	p.write(`<iq type='result' id='nested' from='example.com'/>`)
	close(release)
	got := map[string]string{}
	for range 4 {
		st := p.nextStanza()
		got[attr(t, st, "id")] = attr(t, st, "type")
	}
	assert.Equal(t, "result", got["first"])
	assert.Equal(t, "result", got["a"])
	assert.Contains(t, []string{"error", "result"}, got["b"])
	assert.Contains(t, []string{"error", "result"}, got["c"])
	assert.Positive(t, s.Stats().Dropped, "at least one request was shed")
}

// TestPingFastPathAllocs checks that answering a ping on the reader
// allocates nothing: the decoder, routing and the reply batch reuse their
// buffers.
func TestPingFastPathAllocs(t *testing.T) {
	set, err := testConfig(nil).resolve()
	require.NoError(t, err)
	w := xstream.NewWriter(io.Discard, 0, 0)
	defer w.Close(context.Background(), nil)
	s := &Session{&sessionState{cfg: set, w: w, ctx: context.Background(), quit: make(chan struct{})}}
	ping := []byte(`<iq type='get' id='p1' from='example.com' to='cb1.example.com'><ping xmlns='urn:xmpp:ping'/></iq>`)
	dec := xstream.NewDecoder(io.MultiReader(strings.NewReader(srvHeader), &repeater{b: ping}), 0, 0)
	_, err = dec.ReadHeader()
	require.NoError(t, err)
	step := func() {
		el, err := dec.Next()
		if err != nil {
			t.Fatal(err)
		}
		s.route(&el)
		s.flushReplies()
	}
	for range 100 { // warm up buffers
		step()
	}
	allocs := testing.AllocsPerRun(1000, step)
	assert.Zero(t, allocs)
	assert.EqualValues(t, 100+1+1000, s.Stats().PingsAnswered) // AllocsPerRun warms up once
}

// repeater returns b over and over.
type repeater struct {
	b   []byte
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// TestSendIQIDNeedingEscapes: an id with characters XML escapes on the
// wire still matches its reply.
func TestSendIQIDNeedingEscapes(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	for _, id := range []string{"a&b", "x<y", `q"'>`, "&amp;"} {
		res := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := s.SendIQ(ctx, IQ{Type: stanza.GetIQ, ID: id})
			res <- err
		}()
		sent := p.nextStanza()
		wire := sent[strings.Index(sent, "id='")+4:]
		wire = wire[:strings.IndexByte(wire, '\'')] // as escaped on the wire
		assert.Equal(t, id, attr(t, sent, "id"))
		p.write(`<iq type='result' id='` + wire + `' from='example.com' to='cb1.example.com'/>`)
		assert.NoError(t, <-res, "id %q", id)
	}
}

// TestOrderPerSenderSlowSenderDoesNotStarveOthers: with OrderPerSender a
// sender whose handler blocks fills its own worker's share of the queue,
// not the whole queue: another sender is still served.
func TestOrderPerSenderSlowSenderDoesNotStarveOthers(t *testing.T) {
	release := make(chan struct{})
	mux := NewMux()
	mux.HandleIQ("q", "urn:test", func(ctx context.Context, iq *Stanza) (any, error) {
		if iq.From.Localpart() == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil, nil
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	cfg.OrderPerSender = true
	cfg.Workers, cfg.QueueSize = 8, 16
	_, p := startSession(t, cfg)
	defer close(release)
	var sb strings.Builder
	for i := range 17 {
		fmt.Fprintf(&sb, "<iq type='get' from='slow@example.com/r' to='cb1.example.com' id='s%d'><q xmlns='urn:test'/></iq>", i)
	}
	p.write(sb.String())
	// A sender on another worker than slow's (senders are hashed with
	// FNV-1a to the workers).
	lane := func(from string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(from))
		return h.Sum32() % 8
	}
	fast := "fast@example.com/r"
	for i := 0; lane(fast) == lane("slow@example.com/r"); i++ {
		fast = fmt.Sprintf("fast%d@example.com/r", i)
	}
	p.write("<iq type='get' from='" + fast + "' to='cb1.example.com' id='f1'><q xmlns='urn:test'/></iq>")
	// One of slow's runs, its share of the queue waits, the rest is shed.
	shed := 0
	for {
		got := p.nextStanza()
		if strings.Contains(got, "id='f1'") {
			assert.Contains(t, got, "type='result'")
			break
		}
		require.Contains(t, got, "resource-constraint")
		shed++
	}
	assert.GreaterOrEqual(t, shed, 17-1-16/8)
}

// TestJoinAnswerBytes: a join's answer is <joined/> with the session
// escaped, or without it; a *JoinResult returned by another IQ handler is
// a payload like any other (nil: an empty result).
func TestJoinAnswerBytes(t *testing.T) {
	mux := NewMux()
	mux.HandleJoin(func(ctx context.Context, req *JoinRequest) (*JoinResult, error) {
		if req.Call == "none" {
			return &JoinResult{}, nil
		}
		return &JoinResult{Session: "s&'1"}, nil
	})
	mux.HandleIQ("q", "urn:test", func(ctx context.Context, iq *Stanza) (any, error) {
		return (*JoinResult)(nil), nil
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	_, p := startSession(t, cfg)
	p.write("<iq type='set' from='u@example.com/r' to='cb1.example.com' id='j1'><join xmlns='urn:cblink:join:0' call='1'/></iq>")
	assert.Equal(t, "<iq type='result' id='j1' from='cb1.example.com' to='u@example.com/r'><joined xmlns='urn:cblink:join:0' session='s&amp;&apos;1'/></iq>", p.nextStanza())
	p.write("<iq type='set' from='u@example.com/r' to='cb1.example.com' id='j2'><join xmlns='urn:cblink:join:0' call='none'/></iq>")
	assert.Equal(t, "<iq type='result' id='j2' from='cb1.example.com' to='u@example.com/r'><joined xmlns='urn:cblink:join:0'/></iq>", p.nextStanza())
	p.write("<iq type='get' from='u@example.com/r' to='cb1.example.com' id='q1'><q xmlns='urn:test'/></iq>")
	assert.Equal(t, "<iq type='result' id='q1' from='cb1.example.com' to='u@example.com/r'/>", p.nextStanza())
}

// TestNilContext: every call that takes a context refuses a nil one with
// ErrNilContext and leaves the session as it was.
func TestNilContext(t *testing.T) {
	s, p := startSession(t, testConfig(nil))
	var nilCtx context.Context
	assert.ErrorIs(t, s.Send(nilCtx, Message{To: jid.MustParse("u@example.com")}), ErrNilContext)
	_, err := s.SendIQ(nilCtx, IQ{Type: stanza.GetIQ})
	assert.ErrorIs(t, err, ErrNilContext)
	_, err = s.Ping(nilCtx)
	assert.ErrorIs(t, err, ErrNilContext)
	assert.ErrorIs(t, s.Wait(nilCtx), ErrNilContext)
	assert.ErrorIs(t, s.Shutdown(nilCtx), ErrNilContext)
	_, ok := SessionFromContext(nilCtx)
	assert.False(t, ok)
	require.NoError(t, s.Err(), "the session is still up")

	// Still usable: a ping goes out and is answered.
	go func() {
		req := p.nextStanza()
		p.write(`<iq type='result' id='` + attr(t, req, "id") + `' from='example.com'/>`)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = s.Ping(ctx)
	require.NoError(t, err)

	c, _ := net.Pipe()
	_, err = Handshake(nilCtx, c, testConfig(nil))
	assert.ErrorIs(t, err, ErrNilContext)
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "Handshake closed the conn it was given")
}
