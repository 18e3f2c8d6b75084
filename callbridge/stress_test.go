package callbridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
)

// TestLifecycleStress races everything a long-lived bridge goes through:
// links dropped, reset and closed by the servers, a server stopping and
// coming back (failover and fail-back), Updates, subscribers that come,
// go or never read, senders on the bridge, join requests from web users
// on both servers, and finally Close in the middle of it all. It checks
// that every join request got exactly one reply or failed with a typed
// error, that every call returned, and that no connection of a link is
// left open or in use (goleak checks the rest at the end of the package).
func TestLifecycleStress(t *testing.T) {
	r := newRig(t, 10, 20)
	cfg := r.config()
	cfg.FailBack = true
	cfg.FailBackInterval = 20 * time.Millisecond
	cfg.PingInterval = 50 * time.Millisecond
	cfg.PingTimeout = 500 * time.Millisecond
	cfg.DrainTimeout = 100 * time.Millisecond
	cfg.ParallelAfter = 50 * time.Millisecond
	cfg.Workers = 4
	cfg.Backoff = Backoff{Base: 2 * time.Millisecond, Max: 20 * time.Millisecond, ResetAfter: time.Millisecond}
	conns := &connTracker{}
	cfg.Dialer = conns
	b, err := New(cfg)
	require.NoError(t, err)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if rand.IntN(4) == 0 {
			_ = b.Send(ctx, component.Message{To: req.From, Payload: component.RawXML("<body>welcome</body>")})
		}
		select {
		case <-time.After(time.Duration(rand.IntN(2000)) * time.Microsecond):
			return &component.JoinResult{Session: "s-" + req.ID}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})

	// Everything below must finish: a watchdog fails the test otherwise.
	watchdog := time.AfterFunc(90*time.Second, func() { panic("TestLifecycleStress: a call did not return") })
	defer watchdog.Stop()

	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(context.Background()) }()
	awaitStatus(t, b, 10*time.Second, "first connection", func(st Status) bool { return st.State == Connected })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var (
		joinsSent, joinsReplied, joinsFailed atomic.Int64
		badErrs                              sync.Map
	)
	note := func(what string, err error) { badErrs.Store(what+": "+err.Error(), true) }
	var joinSeq atomic.Int64

	// Web users on both servers.
	for _, srv := range r.servers {
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					conn, err := srv.WaitConn(ctx, testAddr)
					cancel()
					if err != nil {
						continue // no link to this server right now
					}
					id := fmt.Sprint("join-", joinSeq.Add(1))
					joinsSent.Add(1)
					ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
					reply, err := conn.SendIQ(ctx, joinIQ(id, "1"))
					cancel()
					switch {
					case err == nil && (strings.Contains(string(reply), "type='result'") || strings.Contains(string(reply), "type='error'")):
						joinsReplied.Add(1)
					case err == nil:
						note("join reply", fmt.Errorf("neither result nor error: %s", reply))
					case errors.Is(err, componenttest.ErrConnClosed), errors.Is(err, componenttest.ErrServerClosed):
						joinsFailed.Add(1) // the link went away under it: a typed error
					default:
						note("join", err)
					}
				}
			})
		}
	}

	// Senders through the bridge.
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := b.Send(ctx, component.Message{To: jid.MustParse("u@example.com"), Payload: component.RawXML("<body>hi</body>")})
				if err == nil {
					_, err = b.SendIQ(ctx, component.IQ{Type: stanza.GetIQ, Payload: component.RawXML("<ping xmlns='urn:xmpp:ping'/>")})
					var se stanza.Error
					if errors.As(err, &se) {
						err = nil
					}
				}
				cancel()
				if err != nil && !typedSendError(err) {
					note("send", err)
				}
				_ = b.Status()
				_ = b.Stats()
			}
		})
	}

	// Subscribers that read a little and leave, or never read.
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			events, cancel := b.Subscribe()
			if i%3 != 0 {
				select {
				case <-events:
				case <-time.After(5 * time.Millisecond):
				}
			}
			cancel()
		}
	})
	for range 2 {
		_, cancelSub := b.Subscribe() // never read: Close must not wait for them
		defer cancelSub()             // (their goroutines end within a second of the stop anyway)
	}

	// The servers misbehave; the settings change.
	chaos := func(i int) {
		srv := r.servers[rand.IntN(len(r.servers))]
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		switch i % 6 {
		case 0:
			if c, err := srv.WaitConn(ctx, testAddr); err == nil {
				c.Reset()
			}
		case 1:
			if c, err := srv.WaitConn(ctx, testAddr); err == nil {
				_ = c.CloseStream(ctx)
			}
		case 2:
			r.servers[0].Stop() // failover to xmpp2
			r.servers[0].CloseClientConnections()
		case 3:
			_ = r.servers[0].Start() // fail-back
		case 4:
			if err := b.Update(cfg); err != nil && !errors.Is(err, ErrClosed) {
				note("update", err)
			}
		case 5:
			if c, err := srv.WaitConn(ctx, testAddr); err == nil {
				_ = c.SendStreamError(ctx, stream.SystemShutdown)
			}
		}
	}
	for i := range 60 {
		chaos(i)
		// Let some traffic through between faults.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		b.WaitForStateChange(ctx, b.Status().State)
		cancel()
	}

	// Close in the middle of the traffic, then stop the traffic.
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	assert.ErrorIs(t, <-runErr, ErrClosed)
	close(stop)
	wg.Wait()
	conns.assertAllDone(t)

	badErrs.Range(func(k, _ any) bool {
		t.Errorf("untyped or unexpected error: %s", k)
		return true
	})
	assert.Equal(t, joinsSent.Load(), joinsReplied.Load()+joinsFailed.Load(), "every join request returned once")
	// No request was answered twice: a second reply would have reached
	// the server as a stanza nobody waits for.
	for _, srv := range r.servers {
		for _, c := range srv.Conns() {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				st, err := c.Next(ctx)
				cancel()
				if err != nil {
					break
				}
				if raw := string(st.Raw); strings.HasPrefix(raw, "<iq") && strings.Contains(raw, "join-") {
					t.Errorf("a join request answered twice (or after its sender gave up): %s", raw)
				}
			}
		}
	}
	t.Logf("joins: %d sent, %d answered, %d failed with the link; stats %+v",
		joinsSent.Load(), joinsReplied.Load(), joinsFailed.Load(), b.Stats())
	assert.Positive(t, joinsReplied.Load())
}

// typedSendError reports whether err is one a sender is documented to get
// while links come and go.
func typedSendError(err error) bool {
	for _, target := range []error{ErrNotConnected, ErrClosed, component.ErrClosed, component.ErrDisconnected,
		component.ErrTooManyPending, context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
