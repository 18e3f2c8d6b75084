package component

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/testhelp"
	"github.com/cblink/cblink/internal/xstream"
)

// reqIQ is a request for the urn:test handler, from a web user.
func reqIQ(id string) string {
	return `<iq type='set' id='` + id + `' from='u@example.com/web' to='cb1.example.com'><q xmlns='urn:test'/></iq>`
}

// pumped is what a pump saw of the client's side of the stream.
type pumped struct {
	stanzas chan string   // everything but keepalives and pings to the server
	pings   atomic.Int64  // pings to the server seen
	ended   chan struct{} // closed when the client's stream ended
	endErr  error         // why (xstream.ErrStreamEnd for </stream:stream>)
}

// pump reads the client's stanzas in the background (after p.start, which
// startSession calls). Pings to the server
// are answered when answerPings is set; onPing, if set, runs for each.
func (p *peer) pump(answerPings bool, onPing func()) *pumped {
	out := &pumped{stanzas: make(chan string, 4096), ended: make(chan struct{})}
	go func() {
		defer close(out.ended)
		for el := range p.els {
			if el.Keepalive {
				continue
			}
			raw := string(el.Raw)
			if strings.Contains(raw, "urn:xmpp:ping") && strings.Contains(raw, "to='example.com'") {
				out.pings.Add(1)
				if answerPings {
					p.write(`<iq type='result' id='` + el.AttrString("id") + `' from='example.com' to='cb1.example.com'/>`)
				}
				if onPing != nil {
					onPing()
				}
				continue
			}
			out.stanzas <- raw
		}
		out.endErr = <-p.done
	}()
	return out
}

// next returns the next stanza, failing the test after 10 s.
func (o *pumped) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-o.stanzas:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a stanza from the client")
	}
	return ""
}

// rest returns every stanza up to the end of the client's stream.
func (o *pumped) rest(t *testing.T) []string {
	t.Helper()
	select {
	case <-o.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's stream did not end")
	}
	var all []string
	for {
		select {
		case s := <-o.stanzas:
			all = append(all, s)
		default:
			return all
		}
	}
}

// replies maps each IQ reply's id to its type and error condition, failing
// on a second reply to the same id.
func replies(t *testing.T, stanzas []string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, raw := range stanzas {
		if !strings.HasPrefix(raw, "<iq") {
			continue
		}
		id, typ := attr(t, raw, "id"), attr(t, raw, "type")
		if typ != "result" && typ != "error" {
			continue
		}
		if prev, dup := got[id]; dup {
			t.Errorf("request %s answered twice: %s, then %s", id, prev, raw)
		}
		v := typ
		if typ == "error" {
			for _, c := range []string{"service-unavailable", "resource-constraint", "internal-server-error"} {
				if strings.Contains(raw, "<"+c) {
					v += ":" + c
				}
			}
			if strings.Contains(raw, "type='wait'") {
				v += ":wait"
			}
		}
		got[id] = v
	}
	return got
}

// untilCancelled is a Mux whose handler signals inHandler, then waits for
// its context to end and returns its error.
func untilCancelled(inHandler chan<- struct{}) *Mux {
	return testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		inHandler <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
}

// untilReleased is a Mux whose handler waits until release is closed (or
// its context ends), then answers with an empty result.
func untilReleased(release <-chan struct{}) *Mux {
	return testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
}

func testMux(h IQHandler) *Mux {
	m := NewMux()
	m.HandleIQ("q", "urn:test", h)
	return m
}

// TestNoHeadOfLineBlocking: a quick request that arrives together with a
// slow one must not wait behind it while a worker could start.
func TestNoHeadOfLineBlocking(t *testing.T) {
	var mu sync.Mutex
	release := map[string]chan struct{}{}
	gate := func(id string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if release[id] == nil {
			release[id] = make(chan struct{})
		}
		return release[id]
	}
	cfg := testConfig(nil)
	cfg.Workers = 4
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		if strings.HasPrefix(iq.ID, "slow") {
			select {
			case <-gate(iq.ID):
			case <-ctx.Done():
			}
		}
		return nil, nil
	})
	for round := range 20 {
		s, p := startSession(t, cfg)
		out := p.pump(false, nil)
		// One worker, now idle: the case where both requests used to go
		// to it.
		p.write(reqIQ("warm-up"))
		require.Equal(t, "warm-up", attr(t, out.next(t), "id"))
		slow, quick := fmt.Sprint("slow", round), fmt.Sprint("quick", round)
		p.write(reqIQ(slow) + reqIQ(quick)) // they arrive together
		require.Equal(t, quick, attr(t, out.next(t), "id"), "round %d: the quick request waited behind the slow one", round)
		close(gate(slow))
		require.Equal(t, slow, attr(t, out.next(t), "id"))
		s.Abort()
	}
}

// TestCloseAnswersEveryRequest: Close answers what is queued and running
// with service-unavailable, each exactly once, before its closing tag.
func TestCloseAnswersEveryRequest(t *testing.T) {
	inHandler := make(chan struct{}, 1)
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 1, true // one sender: r1-r4 wait behind r0
	cfg.Handler = untilCancelled(inHandler)
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	for i := range 5 {
		p.write(reqIQ(fmt.Sprint("r", i)))
	}
	<-inHandler
	require.Eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 4 }, 5*time.Second, time.Millisecond)
	require.NoError(t, s.Close())
	got := replies(t, out.rest(t))
	assert.ErrorIs(t, out.endErr, xstream.ErrStreamEnd, "the replies come before the closing tag")
	require.Len(t, got, 5, "every request answered: %v", got)
	for i := range 5 { // r0's handler returned ctx.Err(): cut by the stop all the same
		assert.Equal(t, "error:service-unavailable:wait", got[fmt.Sprint("r", i)])
	}
	assert.EqualValues(t, 5, s.Stats().Refused, "%v %+v", got, s.Stats())
}

// TestShutdownDrains: Shutdown lets queued and running requests finish
// with their normal context (SendIQ still works), refuses new ones, then
// closes the stream.
func TestShutdownDrains(t *testing.T) {
	gate := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 1, true // one sender: r1-r3 wait behind r0
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		switch iq.ID {
		case "r0":
			inHandler <- struct{}{}
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case "r1":
			// A handler draining may still wait for a reply.
			s, _ := SessionFromContext(ctx)
			if _, err := s.SendIQ(ctx, IQ{Type: stanza.GetIQ, ID: "nested"}); err != nil {
				return nil, err
			}
		}
		return nil, ctx.Err()
	})
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	for i := range 4 {
		p.write(reqIQ(fmt.Sprint("r", i)))
	}
	<-inHandler
	require.Eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 3 }, 5*time.Second, time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool {
		s.pool.mu.Lock()
		defer s.pool.mu.Unlock()
		return s.pool.closed
	}, 5*time.Second, time.Millisecond)
	p.write(reqIQ("late"))
	assert.Equal(t, "late", attr(t, out.next(t), "id"), "a request during the drain is answered at once")
	close(gate)
	require.Equal(t, "r0", attr(t, out.next(t), "id"))
	nested := out.next(t)
	require.Equal(t, "nested", attr(t, nested, "id"))
	p.write(`<iq type='result' id='nested' from='example.com' to='cb1.example.com'/>`)
	require.NoError(t, testhelp.Recv(t, shut))
	got := replies(t, out.rest(t))
	got["late"] = "error:service-unavailable:wait" // read above
	got["r0"] = "result"
	assert.ErrorIs(t, out.endErr, xstream.ErrStreamEnd)
	assert.Equal(t, map[string]string{
		"r0": "result", "r1": "result", "r2": "result", "r3": "result",
		"late": "error:service-unavailable:wait",
	}, got)
}

// TestShutdownGraceExpires: when the drain's ctx ends, handlers are
// cancelled and what is left is answered; Shutdown says the grace ran out.
func TestShutdownGraceExpires(t *testing.T) {
	inHandler := make(chan struct{}, 1)
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 1, true // one sender: r1, r2 wait behind r0
	cfg.Handler = untilCancelled(inHandler)
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	p.write(reqIQ("r0") + reqIQ("r1") + reqIQ("r2"))
	<-inHandler
	require.Eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 2 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	got := replies(t, out.rest(t))
	assert.Len(t, got, 3, "every request answered once: %v", got)
	assert.Equal(t, "error:service-unavailable:wait", got["r1"])
	assert.Equal(t, "error:service-unavailable:wait", got["r2"])
}

// TestBurstShedsWithoutKillingLink: a burst beyond the queue is shed at
// once with resource-constraint; the reader keeps reading, so the
// server's pongs are seen and the link stays up.
func TestBurstShedsWithoutKillingLink(t *testing.T) {
	release := make(chan struct{})
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 1, true // one sender: up to QueueSize wait
	cfg.QueueSize = 4
	cfg.PingInterval = 20 * time.Millisecond
	// A ping unanswered (pongs not read) for 2 s ends the link; an
	// answered one lets the next go after the 20 ms interval.
	cfg.PingTimeout = 2 * time.Second
	cfg.Handler = untilReleased(release)
	s, p := startSession(t, cfg)
	out := p.pump(true, nil)
	var burst strings.Builder
	for i := range 40 {
		burst.WriteString(reqIQ(fmt.Sprint("b", i)))
	}
	p.write(burst.String())
	// One job runs (or is about to), QueueSize wait, the rest are shed at
	// once, without waiting for room.
	require.Eventually(t, func() bool { // all 40 routed
		st := s.Stats()
		return int(st.Shed)+st.Queued+st.Running == 40
	}, 10*time.Second, time.Millisecond)
	n := int(s.Stats().Shed)
	require.GreaterOrEqual(t, n, 35)
	require.LessOrEqual(t, n, 36)
	var shed []string
	for range n {
		shed = append(shed, out.next(t))
	}
	for _, v := range replies(t, shed) {
		assert.Equal(t, "error:resource-constraint:wait", v)
	}
	// The link lives through several ping rounds while the handler blocks.
	base := out.pings.Load()
	require.Eventually(t, func() bool { return out.pings.Load() >= base+5 }, 10*time.Second, time.Millisecond)
	require.NoError(t, s.Err(), "the link must stay up")
	close(release)
	var rest []string
	for range 40 - n {
		rest = append(rest, out.next(t))
	}
	for _, v := range replies(t, rest) {
		assert.Equal(t, "result", v)
	}
	assert.Len(t, replies(t, append(shed, rest...)), 40, "every request answered once")
	assert.NoError(t, s.Err())
}

// TestTrafficProvesServerAlive: a late pong does not end a link over
// which the server keeps sending; silence does.
func TestTrafficProvesServerAlive(t *testing.T) {
	var chatty atomic.Bool
	chatty.Store(true)
	cfg := testConfig(nil)
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PingTimeout = 300 * time.Millisecond
	cfg.ReadTimeout = -1 // the ping alone decides
	s, p := startSession(t, cfg)
	out := p.pump(false, func() {
		if chatty.Load() {
			p.write(`<message from='u@example.com/web' to='cb1.example.com'/>`)
		}
	})
	require.Eventually(t, func() bool { return out.pings.Load() >= 3 }, 10*time.Second, time.Millisecond)
	require.NoError(t, s.Err(), "pongs are late but the server is sending: alive")
	chatty.Store(false)
	err := waitDoneWithin(t, s, 10*time.Second)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "ping")
}

func waitDoneWithin(t *testing.T, s *Session, d time.Duration) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(d):
		t.Fatalf("session did not end within %v", d)
	}
	return nil
}

// TestCloseBoundedWhenServerStopsReading: Close returns after about
// CloseTimeout even when a write is blocked on a server that does not
// read, whatever the write timeout.
func TestCloseBoundedWhenServerStopsReading(t *testing.T) {
	c, p := newPeer(t)
	go p.accept()
	cfg := testConfig(nil)
	cfg.WriteTimeout = time.Hour
	cfg.CloseTimeout = 100 * time.Millisecond
	s, err := NewSession(context.Background(), c, cfg)
	require.NoError(t, err)
	// The peer never reads again: the write of this message blocks.
	require.NoError(t, s.Send(context.Background(), Message{Payload: RawXML("<body>hello</body>")}))
	require.Eventually(t, func() bool { return s.w.Pending() == 0 }, 5*time.Second, time.Millisecond, "the writer is blocked in its write")
	start := time.Now()
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Logf("Close took %v (CloseTimeout %v, write timeout %v)", time.Since(start).Round(time.Millisecond), cfg.CloseTimeout, cfg.WriteTimeout)
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a write blocked on a server that does not read")
	}
}

// TestHandlerMayCloseItsSession: a handler stops its own session with
// Shutdown and its ctx (or a ctx derived from it, on another goroutine)
// without waiting for itself, or with go s.Close(); a synchronous Close or
// Abort waits for the handler until CloseTimeout, then returns.
func TestHandlerMayCloseItsSession(t *testing.T) {
	for _, how := range []string{"Shutdown", "Shutdown on another goroutine", "go Close", "Close", "Abort"} {
		t.Run(how, func(t *testing.T) {
			returned := make(chan error, 1)
			logs := &logBuf{}
			cfg := testConfig(logs)
			cfg.CloseTimeout = time.Hour // only the two synchronous calls wait for the handler
			if how == "Close" || how == "Abort" {
				cfg.CloseTimeout = 50 * time.Millisecond
			}
			cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
				s, _ := SessionFromContext(ctx)
				switch how {
				case "Shutdown":
					returned <- s.Shutdown(ctx)
				case "Shutdown on another goroutine":
					done := make(chan error)
					go func() {
						dctx, cancel := context.WithTimeout(ctx, time.Hour)
						defer cancel()
						done <- s.Shutdown(dctx)
					}()
					returned <- <-done
				case "go Close":
					go s.Close()
					returned <- nil
				case "Close":
					returned <- s.Close()
				case "Abort":
					s.Abort()
					returned <- nil
				}
				return nil, nil
			})
			s, p := startSession(t, cfg)
			go func() {
				for range p.els { // until the client's stream ends
				}
				p.write("</stream:stream>") // the close itself takes no time
			}()
			p.write(reqIQ("bye"))
			assert.NoError(t, testhelp.Recv(t, returned))
			<-s.Done()
			assert.ErrorIs(t, s.Err(), ErrClosed)
			if how == "Close" || how == "Abort" {
				assert.Contains(t, logs.String(), "handler still running", "the wait for the handler is logged")
			}
		})
	}
}

// TestSharedMuxCloseWaitsForHandler: a handler of session S1 that shuts
// down S2 (sharing S1's Mux) with its own ctx is still a running request
// of S1: S1's Shutdown waits for it, and its reply goes out.
func TestSharedMuxCloseWaitsForHandler(t *testing.T) {
	mux := NewMux()
	var s2 *Session
	inHandler, release := make(chan struct{}), make(chan struct{})
	mux.HandleIQ("q", "urn:test", func(ctx context.Context, iq *Stanza) (any, error) {
		if iq.ID != "closer" {
			return nil, nil
		}
		require.NoError(t, s2.Shutdown(ctx))
		close(inHandler)
		<-release
		return nil, nil
	})
	cfg := testConfig(nil)
	cfg.Handler = mux
	s1, p1 := startSession(t, cfg)
	s2, _ = startSession(t, cfg)
	out := p1.pump(false, nil)
	p1.write(reqIQ("closer"))
	<-inHandler
	<-s2.Done()
	shut := make(chan error, 1)
	go func() { shut <- s1.Shutdown(context.Background()) }()
	// Once S1 refuses new requests its drain has begun; the handler runs.
	for i := 0; ; i++ {
		id := fmt.Sprint("probe", i)
		p1.write(reqIQ(id))
		if r := out.next(t); attr(t, r, "id") == id && strings.Contains(r, "service-unavailable") {
			break
		}
	}
	close(release)
	assert.NoError(t, testhelp.Recv(t, shut))
	got := replies(t, out.rest(t))
	assert.Equal(t, "result", got["closer"], "S1 waited for its handler and sent its reply")
}

// TestStuckHandlerDoesNotHoldClose: a handler that ignores its context
// cannot hold Close past CloseTimeout; its request is answered for it.
func TestStuckHandlerDoesNotHoldClose(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{})
	logs := &logBuf{}
	cfg := testConfig(logs)
	cfg.CloseTimeout = 100 * time.Millisecond
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		close(inHandler)
		<-release // ignores ctx
		return nil, nil
	})
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	p.write(reqIQ("stuck"))
	<-inHandler
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a handler that ignores its context")
	}
	assert.Equal(t, map[string]string{"stuck": "error:service-unavailable:wait"}, replies(t, out.rest(t)))
	assert.Contains(t, logs.String(), "handler still running after its context was cancelled")
	close(release)
	require.Eventually(t, func() bool {
		s.pool.mu.Lock()
		defer s.pool.mu.Unlock()
		return s.pool.running == 0
	}, 5*time.Second, time.Millisecond, "the worker exits once the handler returns")
}

// TestHandshakeDispatchesNothingBeforeStart: Handshake authenticates but
// reads nothing until Start, so a program can publish the session before
// its first handler runs.
func TestHandshakeDispatchesNothingBeforeStart(t *testing.T) {
	got := make(chan string, 1)
	mux := NewMux()
	mux.HandleMessage(func(ctx context.Context, st *Stanza) { got <- st.ID })
	cfg := testConfig(nil)
	cfg.Handler = mux
	c, p := newPeer(t)
	go func() {
		p.accept()
		p.write(`<message id='early' from='u@example.com/web' to='cb1.example.com'/>`)
	}()
	s, err := Handshake(context.Background(), c, cfg)
	require.NoError(t, err)
	t.Cleanup(s.Abort)
	select {
	case id := <-got:
		t.Fatalf("handler ran for %s before Start", id)
	default:
	}
	assert.Zero(t, s.Stats().StanzasIn)
	s.Start()
	assert.Equal(t, "early", testhelp.Recv(t, got))
}

// TestCloseUnstartedSession: a session that never started (a connection
// race's loser) closes its stream cleanly and promptly.
func TestCloseUnstartedSession(t *testing.T) {
	c, p := newPeer(t)
	go p.accept()
	cfg := testConfig(nil)
	cfg.CloseTimeout = 5 * time.Second
	s, err := Handshake(context.Background(), c, cfg)
	require.NoError(t, err)
	p.start()
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	assert.ErrorIs(t, p.end(), xstream.ErrStreamEnd, "the stream is closed with </stream:stream>")
	select {
	case <-closed:
	case <-time.After(4 * time.Second):
		t.Fatal("Close of an unstarted session waited for a reader that never ran")
	}
}

// fillWriteQueue sends until the write queue is over its bound (a Send
// waits), on a server that does not read.
func fillWriteQueue(t *testing.T, s *Session) {
	t.Helper()
	big := RawXML("<body>" + strings.Repeat("x", 16<<10) + "</body>")
	for range 64 << 10 { // at most 1 GiB: the loop ends long before
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := s.Send(ctx, Message{Payload: big})
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return
		}
	}
	t.Fatal("the write queue never filled")
}

// TestPingTimesOutWhileWriteQueueFull: the ping timeout ends a link whose
// server stopped reading, even while senders have filled the write queue;
// the write timeout (an hour here) is not what ends it.
func TestPingTimesOutWhileWriteQueueFull(t *testing.T) {
	c, p := newPeer(t)
	go p.accept()
	cfg := testConfig(nil)
	cfg.WriteTimeout = time.Hour
	cfg.PingInterval = 200 * time.Millisecond
	cfg.PingTimeout = 100 * time.Millisecond
	cfg.ReadTimeout = -1
	s, err := NewSession(context.Background(), c, cfg)
	require.NoError(t, err)
	t.Cleanup(s.Abort)
	fillWriteQueue(t, s) // the peer never reads again
	start := time.Now()
	err = waitDoneWithin(t, s, 10*time.Second)
	t.Logf("link ended %v after the write queue filled (ping every %v, timeout %v, write timeout %v): %v",
		time.Since(start).Round(time.Millisecond), cfg.PingInterval, cfg.PingTimeout, cfg.WriteTimeout, err)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "ping")
}

// readAllUntil reads everything the client sends, answering its closing
// tag with the server's, until closed; then it closes the peer's end and
// returns what it read.
func readAllUntil(p *peer, closed <-chan struct{}) string {
	var all strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		answered := false
		for {
			n, err := p.conn.Read(buf)
			all.Write(buf[:n])
			if !answered && strings.Contains(all.String(), "</stream:stream>") {
				answered = true
				go p.write("</stream:stream>")
			}
			if err != nil {
				return
			}
		}
	}()
	<-closed
	p.conn.Close()
	<-done
	return all.String()
}

// TestReplyNotLostWhenCloseMeetsFullQueue: a handler that answers as soon
// as Close cancels it, while the send queue is full, must still have its
// request answered before the closing tag (by the teardown, when its own
// reply cannot be queued).
func TestReplyNotLostWhenCloseMeetsFullQueue(t *testing.T) {
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprint("teardown held=", hold), func(t *testing.T) {
			inHandler := make(chan struct{})
			cfg := testConfig(nil)
			cfg.CloseTimeout = 5 * time.Second
			cfg.WriteTimeout = time.Hour
			cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
				close(inHandler)
				<-ctx.Done()
				return nil, ctx.Err() // a cooperative handler: answers at once
			})
			c, p := newPeer(t)
			go p.accept()
			s, err := NewSession(context.Background(), c, cfg)
			require.NoError(t, err)
			t.Cleanup(s.Abort)
			p.write(reqIQ("r1"))
			<-inHandler
			fillWriteQueue(t, s) // the peer does not read
			if hold {
				// Keep the teardown busy until the handler has returned
				// and its reply has failed to be queued.
				s.routeMu.Lock()
			}
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			if hold {
				require.Eventually(t, func() bool {
					s.pool.mu.Lock()
					defer s.pool.mu.Unlock()
					return s.pool.running == 0 // returned, its reply not queued
				}, 5*time.Second, time.Millisecond)
				s.routeMu.Unlock()
			}
			out := readAllUntil(p, closed) // the server reads again
			require.True(t, strings.Contains(out, "</stream:stream>"), "the stream was not closed cleanly")
			assert.True(t, strings.Contains(out, "id='r1'"), "r1 got no reply although the stream carried </stream:stream>")
		})
	}
}

// TestReaderRepliesNotLostOnClose: replies the reader batched (here
// service-unavailable for an unhandled namespace) while it waited for room
// in a full send queue still go out before the closing tag.
func TestReaderRepliesNotLostOnClose(t *testing.T) {
	cfg := testConfig(nil)
	cfg.CloseTimeout = 5 * time.Second
	cfg.WriteTimeout = time.Hour
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) { return nil, nil })
	c, p := newPeer(t)
	go p.accept()
	s, err := NewSession(context.Background(), c, cfg)
	require.NoError(t, err)
	t.Cleanup(s.Abort)
	fillWriteQueue(t, s) // the peer does not read
	p.write(`<iq type='get' id='u1' from='u@example.com/web' to='cb1.example.com'><x xmlns='urn:unknown'/></iq>`)
	// Once the reader has routed the request, its reply is in the batch:
	// the reader queues it (waiting for room) or, if Close's teardown
	// takes the stream first, the teardown does. Either way it goes out
	// before the closing tag.
	require.Eventually(t, func() bool { return s.Stats().StanzasIn == 1 }, 5*time.Second, time.Millisecond)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	out := readAllUntil(p, closed)
	require.True(t, strings.Contains(out, "</stream:stream>"), "the stream was not closed cleanly")
	assert.True(t, strings.Contains(out, "id='u1'"), "u1 got no reply although the stream carried </stream:stream>")
}

// TestNoWorkerOutlivesClose: even when Close used its whole CloseTimeout
// (the server never answers the closing tag), the workers it woke have
// exited when it returns.
func TestNoWorkerOutlivesClose(t *testing.T) {
	for range 20 {
		cfg := testConfig(nil)
		cfg.CloseTimeout = 20 * time.Millisecond
		cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) { return nil, nil })
		s, p := startSession(t, cfg)
		out := p.pump(false, nil)
		p.write(reqIQ("a"))
		out.next(t)
		s.Close() // the peer never sends </stream:stream>
		s.pool.mu.Lock()
		w := s.pool.running
		s.pool.mu.Unlock()
		require.Zero(t, w, "Close returned with handler goroutines alive")
	}
}

// TestSelfShutdownWithJobQueuedBehind: a handler that calls Shutdown with
// its ctx while a request of the same sender waits behind it
// (OrderPerSender) does not wait for that request, which only runs after
// it: it is answered service-unavailable.
func TestSelfShutdownWithJobQueuedBehind(t *testing.T) {
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 4, true
	gate := make(chan struct{})
	returned := make(chan error, 1)
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		if iq.ID == "bye" {
			<-gate
			s, _ := SessionFromContext(ctx)
			returned <- s.Shutdown(ctx)
		}
		return nil, nil
	})
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	p.write(reqIQ("bye") + reqIQ("next")) // same sender: "next" waits behind "bye"
	require.Eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 1 }, 5*time.Second, time.Millisecond)
	close(gate)
	assert.NoError(t, testhelp.Recv(t, returned))
	got := replies(t, out.rest(t))
	assert.Equal(t, "error:service-unavailable:wait", got["next"])
}

// TestQueueBoundedByBytes: with the defaults, large stanzas of one sender
// (OrderPerSender) wait up to MaxQueuedBytes (4 MiB), not QueueSize (256)
// of them: the rest are shed.
func TestQueueBoundedByBytes(t *testing.T) {
	release := make(chan struct{})
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 1, true
	cfg.Handler = untilReleased(release)
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	defer close(release)
	pad := strings.Repeat("x", 200<<10)
	const n = 40 // 8 MiB in all
	for i := range n {
		p.write(`<iq type='set' id='big` + fmt.Sprint(i) + `' from='u@example.com/web' to='cb1.example.com'><q xmlns='urn:test'>` + pad + `</q></iq>`)
	}
	require.Eventually(t, func() bool { // all routed
		st := s.Stats()
		return int(st.Shed)+st.Queued+st.Running == n
	}, 10*time.Second, time.Millisecond)
	st := s.Stats()
	t.Logf("%d running, %d queued, %d shed", st.Running, st.Queued, st.Shed)
	assert.LessOrEqual(t, st.Queued, DefaultMaxQueuedBytes/(200<<10), "queued bytes stay within MaxQueuedBytes")
	assert.GreaterOrEqual(t, int(st.Shed), n-1-DefaultMaxQueuedBytes/(200<<10))
	for range st.Shed {
		assert.Contains(t, out.next(t), "resource-constraint")
	}
}

// TestLargeJoinFloodMemory: a server flooding the link with large joins
// to a handler that waits holds about MaxQueuedBytes of them, running or
// waiting, not Workers of them: the rest are shed at once.
func TestLargeJoinFloodMemory(t *testing.T) {
	release := make(chan struct{})
	mux := NewMux()
	mux.HandleJoin(func(ctx context.Context, req *JoinRequest) (*JoinResult, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	cfg := testConfig(nil) // the defaults: Workers 256, MaxQueuedBytes 4 MiB
	cfg.Handler = mux
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	defer close(release)

	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := live()
	const n, size = 400, 200 << 10
	name := strings.Repeat("x", size)
	go func() {
		for i := range n {
			p.write(string(MarshalJoinIQ(&JoinRequest{
				From: jid.MustParse("u@example.com/web"), ID: fmt.Sprint("j", i), Call: "7", DisplayName: name,
			}, jid.MustParse(testAddr))))
		}
	}()
	require.Eventually(t, func() bool { st := s.Stats(); return int(st.Shed)+st.Running+st.Queued == n }, 30*time.Second, time.Millisecond)
	for range s.Stats().Shed {
		out.next(t) // the replies the reader sent, so that none is held for the peer
	}
	held := int64(live()) - int64(before)
	st := s.Stats()
	t.Logf("%d running, %d shed; live heap %.1f MiB above the idle link's", st.Running, st.Shed, float64(held)/(1<<20))
	assert.LessOrEqual(t, st.Running, DefaultMaxQueuedBytes/size+1, "admitted requests stay within MaxQueuedBytes")
	assert.LessOrEqual(t, held, int64(12<<20), "a flood of large joins holds at most about MaxQueuedBytes")
}

// TestRefusedCountsWhatWasSent: requests the server sends after the
// client's closing tag are read but cannot be answered: they are not
// counted as refused (answered service-unavailable).
func TestRefusedCountsWhatWasSent(t *testing.T) {
	logs := &logBuf{}
	cfg := testConfig(logs)
	cfg.CloseTimeout = 5 * time.Second
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) { return nil, nil })
	s, p := startSession(t, cfg)
	go func() {
		for range p.els { // until the client's closing tag
		}
		for i := range 5 {
			p.write(reqIQ(fmt.Sprint("late", i)))
		}
		p.write("</stream:stream>")
	}()
	require.NoError(t, s.Close())
	st := s.Stats()
	assert.EqualValues(t, 5, st.StanzasIn, "the late requests were read")
	assert.Zero(t, st.Refused, "nothing was answered after the closing tag")
	assert.Zero(t, st.StanzasOut, "nothing was sent")
	assert.EqualValues(t, 5, st.Unanswered, "what could not be answered is counted")
	assert.Contains(t, logs.String(), `level=WARN msg="requests left unanswered: the stream could no longer carry an answer" component=cb1.example.com unanswered=5`)
}

// TestUnansweredWhenServerEndsStream: requests waiting behind a running
// one when the server ends the stream cannot be answered: they are
// counted, once each, and logged; the running one gets one verdict too.
func TestUnansweredWhenServerEndsStream(t *testing.T) {
	logs := &logBuf{}
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	cfg := testConfig(logs)
	cfg.Workers, cfg.OrderPerSender = 1, true
	release := make(chan struct{})
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	s, p := startSession(t, cfg)
	p.write(reqIQ("a") + reqIQ("b") + reqIQ("c"))
	require.Eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 2 }, 5*time.Second, time.Millisecond)
	p.write("</stream:stream>")
	<-s.Done()
	close(release)
	// The two queued cannot be answered. The one running is answered
	// service-unavailable if its handler returns (its ctx ended) before our
	// closing tag, else it is counted unanswered: one verdict each.
	st := s.Stats()
	assert.EqualValues(t, 3, st.Unanswered+st.Refused, "one verdict per request")
	assert.GreaterOrEqual(t, st.Unanswered, uint64(2))
	assert.Contains(t, logs.String(), fmt.Sprintf(`unanswered=%d why="the server ended the stream, or the connection failed, before their answers"`, st.Unanswered))
}

// TestSelfShutdownOnAnotherGoroutineLeavesLane: a handler that starts
// Shutdown with its ctx on another goroutine and returns does not make
// the drain wait for its sender's request queued behind it, which then
// runs (until its ctx ends) or is answered service-unavailable.
func TestSelfShutdownOnAnotherGoroutineLeavesLane(t *testing.T) {
	cfg := testConfig(nil)
	cfg.Workers, cfg.OrderPerSender = 4, true
	gate := make(chan struct{})
	returned := make(chan error, 1)
	cfg.Handler = testMux(func(ctx context.Context, iq *Stanza) (any, error) {
		if iq.ID == "bye" {
			<-gate
			s, _ := SessionFromContext(ctx)
			go func() { returned <- s.Shutdown(ctx) }()
			return nil, nil
		}
		<-ctx.Done() // a long poll: ends when the session stops
		return nil, ctx.Err()
	})
	s, p := startSession(t, cfg)
	out := p.pump(false, nil)
	p.write(reqIQ("bye") + reqIQ("next"))
	require.Eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Queued == 1 }, 5*time.Second, time.Millisecond)
	close(gate)
	select {
	case err := <-returned:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		s.Close()
		t.Fatal("Shutdown with the handler's ctx waited for the request queued behind it")
	}
	got := replies(t, out.rest(t))
	assert.Equal(t, "error:service-unavailable:wait", got["next"])
}

// TestRunningMessageNotCountedDropped: a message whose handler runs when
// Close comes is its handler's, not dropped.
func TestRunningMessageNotCountedDropped(t *testing.T) {
	cfg := testConfig(nil)
	in, release := make(chan struct{}), make(chan struct{})
	m := NewMux()
	m.HandleMessage(func(ctx context.Context, st *Stanza) {
		close(in)
		<-ctx.Done()
		<-release // finishing up after the cancellation
	})
	cfg.Handler = m
	cfg.CloseTimeout = time.Hour
	s, p := startSession(t, cfg)
	go func() {
		for range p.els {
		}
		p.write("</stream:stream>")
	}()
	p.write(`<message from='u@example.com/web' to='cb1.example.com' id='m1'><body>hi</body></message>`)
	<-in
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	require.Eventually(t, func() bool { return s.Err() != nil }, 5*time.Second, time.Millisecond)
	close(release)
	<-closed
	assert.Zero(t, s.Stats().Dropped, "a message its handler received is not dropped")
}

// TestRepliesBeforeServerStreamEnd: the reader's replies (a pong, an
// unhandled request's error) to stanzas that came in one write with the
// server's closing tag still go out before ours: the stream can carry
// them. After our own closing tag, a ping that comes with the server's is
// counted unanswered, not answered.
func TestRepliesBeforeServerStreamEnd(t *testing.T) {
	ping := `<iq type='get' id='p1' from='example.com' to='cb1.example.com'><ping xmlns='urn:xmpp:ping'/></iq>`
	t.Run("the server ends the stream", func(t *testing.T) {
		s, p := startSession(t, testConfig(nil))
		go p.write(ping + `<iq type='get' id='u1' from='u@example.com/r' to='cb1.example.com'><nothing xmlns='urn:x'/></iq></stream:stream>`)
		assert.Equal(t, "p1", attr(t, p.nextStanza(), "id"))
		assert.Equal(t, "u1", attr(t, p.nextStanza(), "id"))
		assert.ErrorIs(t, p.end(), xstream.ErrStreamEnd)
		waitDone(t, s)
		st := s.Stats()
		assert.EqualValues(t, 1, st.PingsAnswered)
		assert.EqualValues(t, 2, st.StanzasOut)
		assert.Zero(t, st.Unanswered)
	})
	t.Run("after our closing tag", func(t *testing.T) {
		cfg := testConfig(nil)
		cfg.CloseTimeout = 5 * time.Second
		s, p := startSession(t, cfg)
		go func() {
			for range p.els { // until the client's closing tag
			}
			p.write(ping + "</stream:stream>")
		}()
		require.NoError(t, s.Close())
		st := s.Stats()
		assert.EqualValues(t, 1, st.StanzasIn)
		assert.Zero(t, st.PingsAnswered, "nothing was sent")
		assert.EqualValues(t, 1, st.Unanswered)
	})
}
