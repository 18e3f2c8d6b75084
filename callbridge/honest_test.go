package callbridge

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// counters lists every counter of Stats by name.
func counters(st Stats) map[string]uint64 {
	m := map[string]uint64{
		"connects": st.Connects, "stanzas_in": st.StanzasIn, "stanzas_out": st.StanzasOut,
		"joins_handled": st.JoinsHandled, "joins_refused": st.JoinsRefused,
		"requests_shed": st.RequestsShed, "requests_refused": st.RequestsRefused,
		"requests_unanswered": st.RequestsUnanswered,
	}
	for k, v := range st.Disconnects {
		m["disconnects_"+string(k)] = v
	}
	for k, v := range st.ConnectFailures {
		m["connect_failures_"+string(k)] = v
	}
	return m
}

// sampler reads Stats in a tight loop and records every counter that
// went back.
type sampler struct {
	stop, done chan struct{}
	mu         sync.Mutex
	backwards  []string
	samples    int
}

func sample(b *Bridge) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		prev := counters(b.Stats())
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			cur := counters(b.Stats())
			s.mu.Lock()
			s.samples++
			for k, v := range prev {
				if cur[k] < v {
					s.backwards = append(s.backwards, fmt.Sprintf("%s %d -> %d", k, v, cur[k]))
				}
			}
			s.mu.Unlock()
			prev = cur
		}
	}()
	return s
}

func (s *sampler) end() (backwards []string, samples int) {
	close(s.stop)
	<-s.done
	return s.backwards, s.samples
}

// TestStatsNeverGoBack: every counter of Stats only grows, sampled
// without pause across a fail-back (the old link draining), an Update,
// a dropped link and Close.
func TestStatsNeverGoBack(t *testing.T) {
	r := newRig(t, 10, 20)
	r.servers[0].Stop()
	cfg := r.config()
	cfg.FailBack = true
	cfg.FailBackInterval = 20 * time.Millisecond
	cfg.DrainTimeout = 200 * time.Millisecond
	rb := r.start(cfg)
	rb.waitConnectedTo(t, r.names[1], 10*time.Second)
	s := sample(rb.Bridge)
	for i := range 3 {
		assert.Contains(t, join(t, r.servers[1], fmt.Sprint("b", i), "1234"), "joined")
	}
	require.NoError(t, r.servers[0].Start())
	rb.waitConnectedTo(t, r.names[0], 10*time.Second) // fail-back: xmpp2's link drains
	assert.Contains(t, join(t, r.servers[0], "f", "1234"), "joined")
	require.NoError(t, rb.Update(cfg))
	rb.waitEvent(t, 10*time.Second, func(ev Event) bool { return ev.From == Draining })
	rb.waitState(t, Connected, 10*time.Second)
	assert.Contains(t, join(t, r.servers[0], "u", "1234"), "joined")
	r.servers[0].CloseClientConnections() // dropped
	rb.waitEvent(t, 10*time.Second, func(ev Event) bool { return ev.From == Connected && ev.To == Resolving })
	rb.waitState(t, Connected, 10*time.Second)
	assert.Contains(t, join(t, r.servers[0], "d", "1234"), "joined")
	require.NoError(t, rb.Close())
	backwards, n := s.end()
	t.Logf("%d samples", n)
	assert.Empty(t, backwards, "counters went back")
	st := rb.Stats()
	assert.EqualValues(t, 6, st.JoinsHandled)
	assert.GreaterOrEqual(t, st.StanzasIn, uint64(6))
	assert.GreaterOrEqual(t, st.StanzasOut, uint64(6))
	assert.Equal(t, 0, st.Running)
}

// blockingJoins runs a bridge whose join handler blocks until release is
// closed or its ctx ends (then it returns ctx's error, as a cooperative
// handler does), connected to the rig's first server.
func blockingJoins(t *testing.T, r *rig, cfg Config, release <-chan struct{}) (*Bridge, func() error, *componenttest.Conn, chan string) {
	t.Helper()
	b, err := New(cfg)
	require.NoError(t, err)
	started := make(chan string, 16)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		started <- req.ID
		select {
		case <-release:
			return &component.JoinResult{Session: "s-" + req.ID}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	wait, conn := runConnected(t, r, b)
	return b, wait, conn, started
}

// drainingUpdate runs a bridge of blockingJoins with a long DrainTimeout,
// starts join j1 on its link and calls Update: it returns once the old
// link drains (state Draining) with j1 running, with that link's server
// side and j1's reply to come.
func drainingUpdate(t *testing.T, r *rig, release <-chan struct{}) (*Bridge, *componenttest.Conn, <-chan [2]string) {
	t.Helper()
	cfg := r.config()
	cfg.DrainTimeout = time.Minute
	b, _, conn, started := blockingJoins(t, r, cfg, release)
	replies := sendJoins(conn, "j1")
	<-started
	require.NoError(t, b.Update(cfg))
	require.Equal(t, Draining, b.Status().State, "Update returns once the old link refuses new requests")
	return b, conn, replies
}

// TestUpdateDrainIsNotConnected: while Update's old link finishes its
// requests the state is Draining (not ready) and the link refuses new
// joins; waiting for Connected then means the new link.
func TestUpdateDrainIsNotConnected(t *testing.T) {
	r := newRig(t, 10)
	release := make(chan struct{})
	b, conn, replies := drainingUpdate(t, r, release)
	late := collect(t, sendJoins(conn, "late"), 1)
	assert.Contains(t, late["late"], "service-unavailable", "a draining link refuses new joins")
	assert.Equal(t, Draining, b.Status().State, "still draining: j1 runs")
	close(release)
	assert.Contains(t, collect(t, replies, 1)["j1"], "s-j1", "j1 finished on the old link")
	awaitStatus(t, b, 10*time.Second, "connected", func(st Status) bool { return st.State == Connected })
	c, err := r.servers[0].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)
	assert.NotSame(t, conn, c, "Connected again means the new link")
}

// TestShutdownReportsCutUpdateDrain: a Shutdown whose ctx ends while an
// Update's old link still drains cuts that drain short and says so.
func TestShutdownReportsCutUpdateDrain(t *testing.T) {
	r := newRig(t, 10)
	release := make(chan struct{})
	defer close(release)
	b, _, replies := drainingUpdate(t, r, release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, b.Shutdown(ctx), context.DeadlineExceeded, "the deadline cut j1 short")
	assert.Contains(t, collect(t, replies, 1)["j1"], "service-unavailable")
}

// TestStoppingRefusesAtOnce: once Stopping is published, a join that
// arrives is refused (service-unavailable), never run.
func TestStoppingRefusesAtOnce(t *testing.T) {
	for round := range 10 {
		r := newRig(t, 10)
		release := make(chan struct{})
		b, _, conn, started := blockingJoins(t, r, r.config(), release)
		replies := sendJoins(conn, "j1")
		<-started
		shut := make(chan error, 1)
		go func() { shut <- b.Shutdown(context.Background()) }()
		awaitStatus(t, b, 10*time.Second, "stopping", func(st Status) bool { return st.State == Stopping })
		late := collect(t, sendJoins(conn, "late"), 1)
		assert.Contains(t, late["late"], "service-unavailable", "round %d: a join after Stopping is refused", round)
		close(release)
		require.NoError(t, <-shut)
		assert.Contains(t, collect(t, replies, 1)["j1"], "s-j1", "j1 drained")
		select {
		case id := <-started:
			t.Fatalf("round %d: %s ran after Stopping", round, id)
		default:
		}
	}
}

// TestHandlerCutByCloseIsRetryLater: a cooperative handler that returns
// its ctx's error (or wraps it) when Close cuts it is answered
// service-unavailable, type wait, never internal-server-error.
func TestHandlerCutByCloseIsRetryLater(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		t.Run(fmt.Sprint("wrapped=", wrap), func(t *testing.T) {
			r := newRig(t, 10)
			b, err := New(r.config())
			require.NoError(t, err)
			started := make(chan struct{})
			b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
				close(started)
				<-ctx.Done()
				if wrap {
					return nil, fmt.Errorf("backend call: %w", ctx.Err())
				}
				return nil, ctx.Err()
			})
			_, conn := runConnected(t, r, b)
			replies := sendJoins(conn, "j1")
			<-started
			require.NoError(t, b.Close())
			got := collect(t, replies, 1)["j1"]
			assert.Contains(t, got, "service-unavailable")
			assert.Contains(t, got, "type='wait'")
		})
	}
}

// TestSlowSubscriberToldOfGap: a subscriber that falls behind more than
// the queue holds learns how many events it lost, in the event after the
// gap.
func TestSlowSubscriberToldOfGap(t *testing.T) {
	h := newHub()
	events, cancel := h.subscribe()
	defer cancel()
	states := []State{Resolving, Connecting}
	const n = maxQueued + 100
	for i := range n {
		h.update(func(s *Status) { s.State = states[i%2] })
	}
	h.update(func(s *Status) { s.State = Stopped })
	got, dropped := 0, 0
	for ev := range events {
		got++
		dropped += ev.Dropped
	}
	assert.Equal(t, n+1, got+dropped, "every event received or counted as dropped")
	assert.Positive(t, dropped)
}

// TestWaitForStateChangeFromStopped: Stopped is final, so a wait from it
// returns false at once instead of holding the caller until ctx ends.
func TestWaitForStateChangeFromStopped(t *testing.T) {
	h := newHub()
	h.update(func(s *Status) { s.State = Stopped })
	assert.False(t, h.waitChange(context.Background(), Stopped))
	assert.True(t, h.waitChange(context.Background(), Connected))
}

// TestWaitForStateChangeWakesOnMove: a waiter from Connected wakes when
// the link moves to another server (a fail-back), though the state stays
// Connected. The hub moves the link until the waiter has woken: a waiter
// that slept through moves would hold the test to its deadline.
func TestWaitForStateChangeWakesOnMove(t *testing.T) {
	h := newHub()
	h.update(func(s *Status) { s.State, s.Server = Connected, "xmpp2.example.com" })
	connected := h.snapshot().Since
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	woke := make(chan bool, 1)
	go func() { woke <- h.waitChange(ctx, Connected) }()
	for i := 0; ; i++ {
		h.update(func(s *Status) { s.Server = fmt.Sprintf("xmpp%d.example.com", i%2+1) })
		select {
		case ok := <-woke:
			assert.True(t, ok, "woken by a move, not by the deadline")
			st := h.snapshot()
			assert.Equal(t, Connected, st.State)
			assert.True(t, st.Since.After(connected), "Since is the move's time, not the first connection's")
			return
		default:
			runtime.Gosched()
		}
	}
}

// TestHandlerShutdownLeavesFailBackDrain: a handler on the new link that
// stops the bridge with its ctx does not cut the old link's drain (its
// ctx ends with its own link, which is not the caller's deadline).
func TestHandlerShutdownLeavesFailBackDrain(t *testing.T) {
	r := newRig(t, 10, 20)
	r.servers[0].Stop()
	cfg := r.config()
	cfg.FailBack = true
	cfg.FailBackInterval = 20 * time.Millisecond
	cfg.DrainTimeout = time.Minute
	b, err := New(cfg)
	require.NoError(t, err)
	gate, inOld, shut := make(chan struct{}), make(chan struct{}, 1), make(chan error, 1)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if req.Call == "bye" {
			shut <- b.Shutdown(ctx)
			return nil, nil
		}
		inOld <- struct{}{}
		select {
		case <-gate:
			return &component.JoinResult{Session: "s-" + req.ID}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	runBridge(t, b, context.Background())
	awaitStatus(t, b, 10*time.Second, "connected", connectedTo(r.names[1]))
	old, err := r.servers[1].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)
	oldReplies := sendJoins(old, "j0")
	<-inOld
	require.NoError(t, r.servers[0].Start())
	awaitStatus(t, b, 10*time.Second, "failed back", connectedTo(r.names[0]))
	nw, err := r.servers[0].WaitConn(context.Background(), testAddr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { _, _ = nw.SendIQ(ctx, joinIQ("b2", "bye")) }()
	require.NoError(t, nw.WaitClosed(ctx), "the new link closes (the handler's own link ended)")
	close(gate) // only now may the old link's join finish
	assert.Contains(t, collect(t, oldReplies, 1)["j0"], "s-j0", "the old link's drain was not cut")
	select {
	case err := <-shut:
		assert.NoError(t, err, "nothing cut a drain short")
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown from the handler did not return")
	}
}

// TestShutdownDuringUpdateDrainIsStopping: Shutdown while Update's old
// link drains publishes Stopping at once (the link already refuses).
func TestShutdownDuringUpdateDrainIsStopping(t *testing.T) {
	r := newRig(t, 10)
	release := make(chan struct{})
	b, _, replies := drainingUpdate(t, r, release)
	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(context.Background()) }()
	awaitStatus(t, b, 10*time.Second, "stopping while j1 still runs", func(st Status) bool { return st.State == Stopping })
	close(release)
	assert.Contains(t, collect(t, replies, 1)["j1"], "s-j1")
	require.NoError(t, <-shut)
}
