package callbridge

import (
	"context"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery"
)

func testEndpoint(name string, prio uint16) discovery.Endpoint {
	return discovery.Endpoint{Target: name, Port: 5223, Priority: prio, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
}

var (
	errRefused   = &ConnectError{Server: "x", Step: Connecting, Err: syscall.ECONNREFUSED}
	errWrongAuth = &ConnectError{Server: "x", Step: Authenticating, Err: &component.StreamError{Err: stream.NotAuthorized}}
)

// TestPacerVerdictMixedFailures: a cycle's failure is permanent only when
// every endpoint's last failure was, in whatever order they failed.
func TestPacerVerdictMixedFailures(t *testing.T) {
	a, b := testEndpoint("xmpp1.example.com", 10), testEndpoint("xmpp2.example.com", 20)
	bo := Backoff{Base: 20 * time.Millisecond, TransientMax: 40 * time.Millisecond, Max: time.Hour, NoJitter: true}.withDefaults()
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		errA   error
		errB   error
		wait   time.Duration
		permOK bool
	}{
		{"preferred down, backup wrong secret", errRefused, errWrongAuth, 20 * time.Millisecond, false},
		{"preferred wrong secret, backup down", errWrongAuth, errRefused, 20 * time.Millisecond, false},
		{"both down", errRefused, errRefused, 20 * time.Millisecond, false},
		{"both wrong secret", errWrongAuth, errWrongAuth, time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPacer()
			p.bo = bo
			eps := p.order([]discovery.Endpoint{a, b})
			p.attemptFailed(eps[0], tc.errA)
			p.attemptFailed(eps[1], tc.errB)
			wait, perm := p.next(now)
			assert.Equal(t, tc.wait, wait)
			assert.Equal(t, tc.permOK, perm)
		})
	}
}

// TestPacerHealthIsShownByTheServer: a link is healthy when the server
// answered a ping, or it lived ResetAfter; a link that did neither (the
// server sent an IQ, the bridge answered, the server dropped it) is a
// failure of its server, backed off from the second drop on.
func TestPacerHealthIsShownByTheServer(t *testing.T) {
	a := testEndpoint("xmpp1.example.com", 10)
	p := newPacer()
	p.bo = Backoff{Base: 20 * time.Millisecond, TransientMax: 80 * time.Millisecond, ResetAfter: time.Minute, NoJitter: true}.withDefaults()
	now := time.Unix(1000, 0)
	var waits []time.Duration
	for range 4 {
		p.order([]discovery.Endpoint{a})
		p.connected()
		p.dropped(a, linkEnd{lived: time.Second}, now) // traffic both ways, but no ping
		w, perm := p.next(now)
		assert.False(t, perm)
		waits = append(waits, w)
	}
	assert.Equal(t, []time.Duration{0, 40, 80, 80}, scale(waits, time.Millisecond))

	for _, healthy := range []linkEnd{{pingAnswered: true}, {lived: time.Minute}} {
		p.order([]discovery.Endpoint{a})
		p.connected()
		p.dropped(a, healthy, now)
		w, _ := p.next(now)
		assert.Zero(t, w, "%+v: a healthy link's drop is retried at once", healthy)
		assert.Zero(t, p.eps[key(a)].fails, "%+v: and clears the failures", healthy)
	}
}

// TestPacerSpacing: whatever the links do (here each one answers a ping
// and drops at once, so every drop is healthy and retried at once),
// attempts on one endpoint start at least Backoff.spacing apart: about
// one a second by default, Base when it is shorter.
func TestPacerSpacing(t *testing.T) {
	for _, bo := range []Backoff{{}, {Base: 100 * time.Millisecond}, {Base: time.Minute}} {
		p := newPacer()
		p.bo = bo.withDefaults()
		a := testEndpoint("xmpp1.example.com", 10)
		start := time.Unix(1000, 0)
		now := start
		attempts := 0
		for now.Sub(start) < 10*time.Second {
			p.order([]discovery.Endpoint{a})
			now = now.Add(p.start(a, now)) // the attempt waits
			attempts++
			now = now.Add(time.Millisecond) // connected
			p.connected()
			p.dropped(a, linkEnd{lived: time.Millisecond, pingAnswered: true}, now)
			w, _ := p.next(now)
			now = now.Add(w)
		}
		spacing := min(p.bo.Base, time.Second)
		assert.LessOrEqual(t, attempts, int(10*time.Second/spacing)+1, "Base %v", bo.Base)
		assert.GreaterOrEqual(t, attempts, int(10*time.Second/spacing)-1, "Base %v: healthy drops are retried as soon as the spacing allows", bo.Base)
	}
}

// TestMixedFailureIsTransient: the preferred server restarting (refused)
// and a backup refusing the secret (permanent), in either order, is a
// transient failure: short waits, a status that does not say permanent,
// and Run with StopOnPermanentError does not give up; the bridge connects as soon as the server that was down
// is back.
func TestMixedFailureIsTransient(t *testing.T) {
	for _, tc := range []struct {
		name       string
		down, auth int // server indexes
	}{
		{"preferred down, backup wrong secret", 0, 1},
		{"preferred wrong secret, backup down", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 10, 20)
			r.servers[tc.down].Stop()
			r.servers[tc.auth].AddComponent(testAddr, "another-"+testSecret)
			cfg := r.config()
			cfg.StopOnPermanentError = true
			cfg.Backoff = Backoff{Base: 20 * time.Millisecond, TransientMax: 40 * time.Millisecond, Max: time.Hour, ResetAfter: time.Minute, NoJitter: true}
			rb := r.start(cfg)
			waits := rb.backoffWaits(t, 3)
			for _, w := range waits {
				assert.LessOrEqual(t, w, 40*time.Millisecond, "a transient wait, not Backoff.Max")
			}
			// The status tells the verdict, not the last server's error.
			for _, ev := range rb.eventList() {
				if ev.To == BackingOff {
					assert.False(t, ev.Status.Permanent, "backing off after %v", ev.Status.LastErr)
				}
			}
			select {
			case err := <-rb.errc:
				rb.errc <- err
				t.Fatalf("Run gave up while a server was only down: %v", err)
			default:
			}
			require.NoError(t, r.servers[tc.down].Start())
			rb.waitConnectedTo(t, r.names[tc.down], 10*time.Second)
		})
	}
}

// TestFlappingThatLooksHealthyIsPaced: servers that accept the bridge,
// send it an IQ, read its answer and drop the link, again and again, get
// about one connection a second each at most. Stanzas both ways do not
// make such a link healthy (the answer is the bridge's own), and attempts
// on one endpoint are spaced whatever the server does. (Before, it got
// thousands of connections in a few seconds.)
func TestFlappingThatLooksHealthyIsPaced(t *testing.T) {
	r := newRig(t, 10, 20)
	iq := []byte("<iq type='get' id='flap' from='example.com' to='" + testAddr + "'><ping xmlns='urn:xmpp:ping'/></iq>")
	for _, srv := range r.servers {
		srv.SetFaultFunc(func(int) []componenttest.Fault {
			return []componenttest.Fault{
				{Phase: componenttest.PhaseHandshake, Action: componenttest.ActionSend, Bytes: iq},
				{Phase: componenttest.PhaseStanzas, After: 1, Action: componenttest.ActionClose},
			}
		})
	}
	cfg := r.config()
	cfg.Backoff = Backoff{} // the defaults an operator gets: one second of spacing
	rb := r.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := r.servers[0].WaitAccepted(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, first.WaitClosed(ctx))
	require.Positive(t, first.Info().StanzasIn, "the bridge answered the IQ before the drop")
	const window = 2 * time.Second
	<-time.After(window) // the window measured, not a synchronisation
	for i, srv := range r.servers {
		n := srv.Stats().Accepted
		t.Logf("%s: %d connections in the first %v", r.names[i], n, window)
		assert.LessOrEqual(t, n, int64(window/time.Second)+2, "%s: at most about one connection a second", r.names[i])
	}
	assert.Positive(t, rb.Stats().Connects)
}

// TestPacerPersistentConflictIsPermanent: conflict is transient while it
// may be the bridge's own stale link; refused on one server over three
// attempts or more spanning 30 s, it is a DuplicateNameError, permanent.
// Another failure in between, or a link up, starts the count again.
func TestPacerPersistentConflictIsPermanent(t *testing.T) {
	errConflict := &ConnectError{Server: "xmpp1.example.com", Step: Authenticating, Err: &component.StreamError{Err: stream.Conflict}}
	a := testEndpoint("xmpp1.example.com", 10)
	t0 := time.Unix(1000, 0)
	// attempt starts an attempt at t0+at and fails it with err; it returns
	// the error the pacer reports and its verdict.
	attempt := func(p *pacer, at time.Duration, err error) (error, bool) {
		p.order([]discovery.Endpoint{a})
		p.start(a, t0.Add(at))
		got := p.attemptFailed(a, err)
		_, perm := p.next(t0.Add(at))
		return got, perm
	}
	newP := func() *pacer {
		p := newPacer()
		p.bo = Backoff{Base: time.Second, Max: time.Minute, NoJitter: true}.withDefaults()
		return p
	}

	p := newP()
	for _, at := range []time.Duration{0, 2 * time.Second, 10 * time.Second, 29 * time.Second} {
		err, perm := attempt(p, at, errConflict)
		assert.Equal(t, KindConflict, Classify(err), "at %v: may be a stale link", at)
		assert.False(t, perm)
	}
	err, perm := attempt(p, 31*time.Second, errConflict)
	var dup *DuplicateNameError
	require.ErrorAs(t, err, &dup)
	assert.Equal(t, KindDuplicateName, Classify(err))
	assert.True(t, perm, "permanent: waits Backoff.Max, or stops with StopOnPermanentError")
	assert.Equal(t, 5, dup.Attempts)
	assert.Equal(t, 31*time.Second, dup.For)
	assert.Contains(t, err.Error(), "another Call Bridge uses this name")

	// Two attempts 40 s apart are not enough; a refusal of another kind in
	// between starts again; so does a link that came up.
	p = newP()
	attempt(p, 0, errConflict)
	err, _ = attempt(p, 40*time.Second, errConflict)
	assert.Equal(t, KindConflict, Classify(err), "two attempts")
	attempt(p, 41*time.Second, errRefused)
	attempt(p, 42*time.Second, errConflict)
	err, _ = attempt(p, 80*time.Second, errConflict)
	assert.Equal(t, KindConflict, Classify(err), "the count started again at 42 s")
	p.connected()
	err, _ = attempt(p, 90*time.Second, errConflict)
	assert.Equal(t, KindConflict, Classify(err), "a link came up at 85 s")
}

// TestDuplicateNameStopsTheBridge: a second bridge with the name of a
// connected one is refused with conflict again and again; once that has
// lasted 30 s (played with a test clock) it is a permanent
// DuplicateNameError: the status says so, and with StopOnPermanentError
// Run gives up with it.
func TestDuplicateNameStopsTheBridge(t *testing.T) {
	r := newRig(t, 10)
	first := r.start(r.config())
	first.waitConnectedTo(t, "xmpp1.example.com", 10*time.Second)

	cfg := r.config()
	cfg.StopOnPermanentError = true
	var calls atomic.Int64
	second := r.start(cfg, func(b *Bridge) {
		t0 := time.Now()
		b.now = func() time.Time { return t0.Add(time.Duration(calls.Add(1)) * 11 * time.Second) }
	})
	var err error
	select {
	case err = <-second.errc:
		second.errc <- err
	case <-time.After(10 * time.Second):
		t.Fatalf("the second bridge did not give up; status %+v", second.Status())
	}
	var perm *PermanentError
	require.ErrorAs(t, err, &perm)
	var dup *DuplicateNameError
	require.ErrorAs(t, err, &dup)
	assert.GreaterOrEqual(t, dup.Attempts, 3)
	assert.GreaterOrEqual(t, dup.For, 30*time.Second)
	st := second.Status()
	assert.Equal(t, KindDuplicateName, st.LastErrKind)
	assert.True(t, st.Permanent)
	assert.Equal(t, uint64(1), second.Stats().ConnectFailures[KindDuplicateName])
	assert.Equal(t, Connected, first.Status().State, "the first bridge keeps its link")
}
