package componenttest_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

func newLab(t *testing.T, opts componenttest.LabOptions) *componenttest.Lab {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	l, err := componenttest.NewLab(opts)
	require.NoError(t, err)
	t.Cleanup(l.Close)
	return l
}

// dialLab links a component session to one of the lab's servers, as a
// Call Bridge would (direct TLS, the lab CA), and closes it at cleanup.
func dialLab(t *testing.T, l *componenttest.Lab, server string, mux *component.Mux) (*component.Session, error) {
	t.Helper()
	srv, err := l.Server(server)
	require.NoError(t, err)
	conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: l.Pool(), ServerName: server, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	s, err := component.NewSession(recCtx(t), conn, component.Config{
		Name: l.Name, Domain: l.Domain, Secret: l.Secret(), Handler: mux,
	})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, nil
}

func twoServerLab(t *testing.T, opts componenttest.LabOptions) *componenttest.Lab {
	opts.Servers = []componenttest.LabServer{{Name: "xmpp1.example.com", Priority: 10}, {Name: "xmpp2.example.com", Priority: 20}}
	return newLab(t, opts)
}

// TestLabStartJoin: joins in flight, answered out of order; Wait can be
// given up and called again.
func TestLabStartJoin(t *testing.T) {
	l := newLab(t, componenttest.LabOptions{})
	release := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	started := make(chan string, 2)
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		started <- req.Call
		<-release[req.Call]
		if req.Call == "b" {
			return nil, component.ErrJoinUnknownCall
		}
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	_, err := dialLab(t, l, l.Names[0], mux)
	require.NoError(t, err)
	ctx := recCtx(t)

	pa, err := l.StartJoin(ctx, l.Names[0], &component.JoinRequest{Call: "a"})
	require.NoError(t, err)
	pb, err := l.StartJoin(ctx, l.Names[0], &component.JoinRequest{Call: "b", From: jid.MustParse("bob@example.com/w")})
	require.NoError(t, err)
	assert.NotEqual(t, pa.ID, pb.ID)
	assert.Equal(t, "guest@example.com/web", pa.From.String())
	assert.Equal(t, l.Names[0], pa.Server)
	<-started
	<-started // both handlers run: neither answered yet

	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, err = pa.Wait(gone)
	require.ErrorIs(t, err, context.Canceled, "not answered yet")

	close(release["b"])
	_, err = pb.Wait(ctx)
	assert.ErrorIs(t, err, stanza.Error{Condition: component.ErrJoinUnknownCall.Condition})
	close(release["a"])
	res, err := pa.Wait(ctx)
	require.NoError(t, err)
	assert.Equal(t, "s-a", res.Session)
	res2, err := pa.Wait(gone)
	require.NoError(t, err, "an answered join stays answered")
	assert.Same(t, res, res2)
}

// TestLabStartJoinLinkEnds: a join in flight on a link that ends without
// an answer reports ErrConnClosed.
func TestLabStartJoinLinkEnds(t *testing.T) {
	l := newLab(t, componenttest.LabOptions{})
	started := make(chan struct{})
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, err := dialLab(t, l, l.Names[0], mux)
	require.NoError(t, err)
	p, err := l.StartJoin(recCtx(t), l.Names[0], &component.JoinRequest{Call: "a"})
	require.NoError(t, err)
	<-started
	l.Servers[0].CloseClientConnections()
	_, err = p.Wait(recCtx(t))
	assert.ErrorIs(t, err, componenttest.ErrConnClosed)
}

// TestLabWaitLink: the link already up does not count, even while it is
// still live; a later one on any server does.
func TestLabWaitLink(t *testing.T) {
	l := twoServerLab(t, componenttest.LabOptions{})
	ctx := recCtx(t)
	_, err := dialLab(t, l, "xmpp2.example.com", nil)
	require.NoError(t, err)
	first, err := l.WaitLink(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, "xmpp2.example.com", first.Server)

	got := make(chan componenttest.Link, 1)
	errc := make(chan error, 1)
	go func() {
		link, err := l.WaitLink(ctx, first.Conn)
		got <- link
		errc <- err
	}()
	// The old link stays up; the new one comes on the other server.
	_, err = dialLab(t, l, "xmpp1.example.com", nil)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	second := <-got
	assert.Equal(t, "xmpp1.example.com", second.Server)
	assert.NotSame(t, first.Conn, second.Conn)
	assert.False(t, first.Info().Ended, "the old link is still live")

	// A link older than old never counts, a newer one on the old server does.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, err = l.WaitLink(gone, second.Conn)
	assert.ErrorIs(t, err, context.Canceled)
	l.Servers[1].CloseClientConnections()
	_, err = dialLab(t, l, "xmpp2.example.com", nil)
	require.NoError(t, err)
	third, err := l.WaitLink(ctx, second.Conn)
	require.NoError(t, err)
	assert.Equal(t, "xmpp2.example.com", third.Server)
}

// TestLabInbox: what the component sends a web user lands in their inbox,
// on whichever server; the rest still goes to Next.
func TestLabInbox(t *testing.T) {
	l := twoServerLab(t, componenttest.LabOptions{})
	alice := jid.MustParse("alice@example.com/web")
	bob := jid.MustParse("bob@example.com")
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		s, _ := component.SessionFromContext(ctx)
		for _, to := range []string{req.From.String(), "bob@example.com/phone", "carol@example.com/x"} {
			if err := s.Send(ctx, component.Message{To: jid.MustParse(to), ID: req.Call}); err != nil {
				return nil, err
			}
		}
		return &component.JoinResult{}, nil
	})
	inA, inB := l.Inbox(alice), l.Inbox(bob)
	assert.Same(t, inA, l.Inbox(alice))
	assert.Equal(t, alice, inA.User())
	ctx := recCtx(t)
	for _, server := range l.Names {
		_, err := dialLab(t, l, server, mux)
		require.NoError(t, err)
		_, err = l.Join(ctx, server, &component.JoinRequest{Call: server, From: alice})
		require.NoError(t, err)
	}
	for _, server := range l.Names {
		st, err := inA.Next(ctx)
		require.NoError(t, err)
		assert.Equal(t, server, st.ID)
		assert.Equal(t, "message", st.Name)
		st, err = inB.Next(ctx)
		require.NoError(t, err, "a bare JID's inbox gets its resources")
		assert.Equal(t, "bob@example.com/phone", st.To)
		conn, err := l.Servers[0].WaitConn(ctx, l.Addr)
		require.NoError(t, err)
		if server == l.Names[0] {
			st, err = conn.Next(ctx)
			require.NoError(t, err)
			assert.Equal(t, "carol@example.com/x", st.To, "no inbox: Next")
		}
	}
	l.Close()
	_, err := inA.Next(ctx)
	assert.ErrorIs(t, err, componenttest.ErrServerClosed)
}

// TestLabAnswerIQs: the test answers the component's own IQs, to users and
// to the server domain; pings stay the server's.
func TestLabAnswerIQs(t *testing.T) {
	l := newLab(t, componenttest.LabOptions{})
	l.AnswerIQs(func(iq componenttest.Stanza) ([]byte, error) {
		if iq.To == l.Domain {
			return nil, stanza.Error{Type: stanza.Modify, Condition: stanza.BadRequest}
		}
		return []byte(`<v xmlns='urn:example'>` + iq.To + `</v>`), nil
	})
	s, err := dialLab(t, l, l.Names[0], nil)
	require.NoError(t, err)
	ctx := recCtx(t)
	r, err := s.SendIQ(ctx, component.IQ{Type: stanza.GetIQ, To: jid.MustParse("alice@example.com/web"), Payload: component.RawXML(`<q xmlns='urn:example'/>`)})
	require.NoError(t, err)
	assert.Equal(t, "alice@example.com/web", r.From.String())
	assert.Contains(t, string(r.Raw), "<v xmlns='urn:example'>alice@example.com/web</v>")
	_, err = s.SendIQ(ctx, component.IQ{Type: stanza.SetIQ, Payload: component.RawXML(`<q xmlns='urn:example'/>`)})
	assert.ErrorIs(t, err, stanza.Error{Condition: stanza.BadRequest})
	_, err = s.Ping(ctx)
	require.NoError(t, err, "pings are the server's")

	l.AnswerIQs(nil)
	_, err = s.SendIQ(ctx, component.IQ{Type: stanza.SetIQ, Payload: component.RawXML(`<q xmlns='urn:example'/>`)})
	assert.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable}, "the default again")
}

// TestLabServerOptions: per-server options reach every server; the lab's
// own settings win.
func TestLabServerOptions(t *testing.T) {
	for _, dup := range []bool{false, true} {
		l := twoServerLab(t, componenttest.LabOptions{ServerOptions: componenttest.Options{
			AcceptDuplicates: dup,
			Domain:           "ignored.example", Addr: "127.0.0.1:1",
			Components: map[string]string{"cb2.example.com": "other"},
		}})
		assert.Equal(t, "example.com", l.Servers[1].Domain())
		assert.Equal(t, []string{"cb1.example.com", "cb2.example.com"}, l.Servers[0].Components())
		_, err := dialLab(t, l, "xmpp2.example.com", nil)
		require.NoError(t, err)
		_, err = dialLab(t, l, "xmpp2.example.com", nil)
		if dup {
			assert.NoError(t, err, "AcceptDuplicates passed through")
		} else {
			assert.ErrorIs(t, err, stream.Conflict)
		}
	}
}

// TestPendingJoinConcurrentWait: every Wait gets the one answer, whichever
// took it off the link.
func TestPendingJoinConcurrentWait(t *testing.T) {
	l := newLab(t, componenttest.LabOptions{})
	release := make(chan struct{})
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		<-release
		return &component.JoinResult{Session: "s"}, nil
	})
	s, err := dialLab(t, l, l.Names[0], mux)
	require.NoError(t, err)
	ctx := recCtx(t)
	p, err := l.StartJoin(ctx, l.Names[0], &component.JoinRequest{Call: "a"})
	require.NoError(t, err)
	results := make(chan *component.JoinResult, 4)
	for range 4 {
		go func() {
			res, err := p.Wait(ctx)
			assert.NoError(t, err)
			results <- res
		}()
	}
	close(release)
	first := <-results
	for range 3 {
		assert.Same(t, first, <-results)
	}
	require.NoError(t, s.Close())
	res, err := p.Wait(ctx)
	require.NoError(t, err, "the answer outlives the link")
	assert.Same(t, first, res)
}
