package callbridgetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/component"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newLab(t *testing.T, opts callbridgetest.Options) *callbridgetest.Lab {
	t.Helper()
	opts.Logf = t.Logf
	l, err := callbridgetest.NewLab(opts)
	require.NoError(t, err)
	t.Cleanup(l.Close)
	return l
}

func newBridge(t *testing.T, cfg callbridge.Config) *callbridge.Bridge {
	t.Helper()
	b, err := callbridge.New(cfg)
	require.NoError(t, err)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	return b
}

// TestWaitStateStopped: a bridge that gave up (wrong secret, told to
// stop) ends the wait at once, with the reason, not when ctx ends.
func TestWaitStateStopped(t *testing.T) {
	l := newLab(t, callbridgetest.Options{})
	cfg := l.Config()
	cfg.Secret = component.NewSecret("wrong")
	cfg.StopOnPermanentError = true
	b := newBridge(t, cfg)
	errc := make(chan error, 1)
	go func() { errc <- b.Run(context.Background()) }()
	ctx := testCtx(t)
	st, err := callbridgetest.WaitState(ctx, b, callbridge.Connected)
	require.ErrorIs(t, err, callbridgetest.ErrStopped)
	assert.ErrorIs(t, err, stream.NotAuthorized, "the reason is kept")
	assert.Equal(t, callbridge.Stopped, st.State)
	assert.NoError(t, ctx.Err(), "failed before ctx ended")
	assert.ErrorIs(t, <-errc, stream.NotAuthorized)

	st, err = callbridgetest.WaitState(ctx, b, callbridge.Stopped)
	require.NoError(t, err, "waiting for Stopped itself succeeds")
	assert.Equal(t, callbridge.Stopped, st.State)
}

// TestStartBridge: the lab runs the bridge; once it stopped, Join,
// StartJoin and WaitLink fail at once; Close of the lab stops what it
// runs (goleak checks nothing is left).
func TestStartBridge(t *testing.T) {
	l := newLab(t, callbridgetest.Options{})
	b := newBridge(t, l.Config())
	errc := l.StartBridge(b)
	ctx := testCtx(t)
	st, err := callbridgetest.WaitState(ctx, b, callbridge.Connected)
	require.NoError(t, err)
	res, err := l.Join(ctx, st.Server, &component.JoinRequest{Call: "1"})
	require.NoError(t, err)
	assert.Equal(t, "s-1", res.Session)

	require.NoError(t, b.Close())
	require.ErrorIs(t, <-errc, callbridge.ErrClosed)
	_, err = l.Join(ctx, st.Server, &component.JoinRequest{Call: "1"})
	require.ErrorIs(t, err, callbridgetest.ErrStopped)
	assert.ErrorIs(t, err, callbridge.ErrClosed, "Run's error is kept")
	_, err = l.StartJoin(ctx, st.Server, &component.JoinRequest{Call: "1"})
	assert.ErrorIs(t, err, callbridgetest.ErrStopped)
	_, err = l.WaitLink(ctx, nil)
	assert.ErrorIs(t, err, callbridgetest.ErrStopped)
	assert.NoError(t, ctx.Err())
}

// TestJoinStopsWaiting: a Join waiting for a link (its server down) ends
// when the bridge stops, not when its ctx does.
func TestJoinStopsWaiting(t *testing.T) {
	l := newLab(t, callbridgetest.Options{Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10, Down: true}}})
	b := newBridge(t, l.Config())
	errc := l.StartBridge(b)
	ctx := testCtx(t)
	joined := make(chan error, 1)
	go func() {
		_, err := l.Join(ctx, "xmpp1.example.com", &component.JoinRequest{Call: "1"})
		joined <- err
	}()
	_, err := callbridgetest.WaitStatus(ctx, b, func(st callbridge.Status) bool { return st.Attempt > 0 })
	require.NoError(t, err)
	require.NoError(t, b.Shutdown(ctx))
	require.ErrorIs(t, <-joined, callbridgetest.ErrStopped)
	require.ErrorIs(t, <-errc, callbridge.ErrClosed)
	assert.NoError(t, ctx.Err())
}

// TestLabCloseStopsBridge: Close returns once Run has.
func TestLabCloseStopsBridge(t *testing.T) {
	l, err := callbridgetest.NewLab(callbridgetest.Options{})
	require.NoError(t, err)
	b := newBridge(t, l.Config())
	errc := l.StartBridge(b)
	_, err = callbridgetest.WaitState(testCtx(t), b, callbridge.Connected)
	require.NoError(t, err)
	l.Close()
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, callbridge.ErrClosed)
	default:
		t.Fatal("Close returned before Run")
	}
	b2 := newBridge(t, l.Config())
	assert.ErrorIs(t, <-l.StartBridge(b2), callbridge.ErrClosed, "nothing runs after Close")
	l.Close()
}

// TestReconnectNewLink: the bridge loses its link; the test waits for the
// new one (not the old, which may still look live) and joins through it;
// the handler's Bridge.Send reaches the web user's inbox.
func TestReconnectNewLink(t *testing.T) {
	l := newLab(t, callbridgetest.Options{Servers: []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10}, {Name: "xmpp2.example.com", Priority: 20},
	}})
	b, err := callbridge.New(l.Config())
	require.NoError(t, err)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if err := b.Send(ctx, component.Message{To: req.From, ID: "hello-" + req.Call}); err != nil {
			return nil, err
		}
		return &component.JoinResult{}, nil
	})
	l.StartBridge(b)
	ctx := testCtx(t)
	old, err := l.WaitLink(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, l.StopServer(old.Server))
	link, err := l.WaitLink(ctx, old.Conn)
	require.NoError(t, err)
	assert.NotEqual(t, old.Server, link.Server)

	alice := jid.MustParse("alice@example.com/web")
	in := l.Inbox(alice.Bare())
	p, err := l.StartJoin(ctx, link.Server, &component.JoinRequest{Call: "7", From: alice})
	require.NoError(t, err)
	_, err = p.Wait(ctx)
	require.NoError(t, err)
	st, err := in.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hello-7", st.ID)
	assert.Equal(t, alice.String(), st.To)
}
