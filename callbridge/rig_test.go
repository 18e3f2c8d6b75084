package callbridge

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery/dnstest"
)

func TestMain(m *testing.M) {
	if handshakeChild() {
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

const (
	testDomain = "example.com"
	testAddr   = "cb1.example.com"
)

// logSink collects every log line of every bridge in the package's tests,
// so that TestSecretNeverLogged can search them all.
var logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type syncWriter struct{}

func (syncWriter) Write(p []byte) (int, error) {
	logSink.mu.Lock()
	defer logSink.mu.Unlock()
	return logSink.buf.Write(p)
}

// errSink collects every error text the tests saw.
var errSink struct {
	mu    sync.Mutex
	texts []string
}

func noteErr(err error) {
	if err == nil {
		return
	}
	errSink.mu.Lock()
	errSink.texts = append(errSink.texts, err.Error(), fmt.Sprintf("%+v %#v", err, err))
	errSink.mu.Unlock()
}

// rig is componenttest's Lab (XMPP servers sharing one CA behind one DNS
// server, all on loopback) with the names the tests use.
type rig struct {
	*componenttest.Lab
	t       *testing.T
	dns     *dnstest.Server
	servers []*componenttest.Server
	names   []string
}

// newRig starts one server per SRV priority given; server i is
// xmpp<i+1>.example.com.
func newRig(t *testing.T, prios ...int) *rig {
	t.Helper()
	var servers []componenttest.LabServer
	for i, p := range prios {
		servers = append(servers, componenttest.LabServer{Name: fmt.Sprintf("xmpp%d.example.com", i+1), Priority: uint16(p), Weight: 10})
	}
	lab, err := componenttest.NewLab(componenttest.LabOptions{
		Domain: testDomain, Name: "cb1", Secret: testSecret, Servers: servers, Logf: t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(lab.Close)
	return &rig{Lab: lab, t: t, dns: lab.DNS, servers: lab.Servers, names: lab.Names}
}

// config is a Config for the rig with fast timers.
func (r *rig) config() Config {
	return Config{
		Name:        "cb1",
		Domain:      testDomain,
		Secret:      component.NewSecret(testSecret),
		RootCAs:     r.Pool(),
		NameServers: []string{r.dns.Addr()},
		DialTimeout: 2 * time.Second,
		Tuning:      component.Tuning{HandshakeTimeout: 3 * time.Second, PingInterval: -1},
		Backoff:     Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond, ResetAfter: time.Minute, NoJitter: true},
		Logger:      slog.New(slog.NewTextHandler(syncWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// running is a bridge whose Run executes in the background.
type running struct {
	*Bridge
	events []Event
	mu     sync.Mutex
	errc   chan error
	cancel context.CancelFunc
	subEnd chan struct{}
	evSig  chan struct{} // signalled after each event is appended
}

// start builds a bridge with a join handler and runs it until the test ends.
func (r *rig) start(cfg Config, setup ...func(*Bridge)) *running {
	r.t.Helper()
	b, err := New(cfg)
	require.NoError(r.t, err)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if req.Passcode != "1234" {
			return nil, component.ErrJoinForbidden
		}
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	for _, f := range setup {
		f(b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rb := &running{Bridge: b, errc: make(chan error, 1), cancel: cancel, subEnd: make(chan struct{}), evSig: make(chan struct{}, 1)}
	events, _ := b.Subscribe()
	go func() {
		defer close(rb.subEnd)
		for ev := range events {
			noteErr(ev.Status.LastErr)
			rb.mu.Lock()
			rb.events = append(rb.events, ev)
			rb.mu.Unlock()
			select {
			case rb.evSig <- struct{}{}:
			default:
			}
		}
	}()
	go func() { rb.errc <- b.Run(ctx) }()
	r.t.Cleanup(func() { rb.stop(r.t) })
	return rb
}

// stop cancels Run and checks that it returns.
func (rb *running) stop(t *testing.T) error {
	rb.cancel()
	select {
	case err := <-rb.errc:
		rb.errc <- err // keep it for a second stop
		<-rb.subEnd
		noteErr(err)
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// waitState waits until the bridge is in state want and returns the status.
func (rb *running) waitState(t *testing.T, want State, within time.Duration) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		st := rb.Status()
		if st.State == want {
			// Subscribers get events asynchronously: wait for this one
			// too, so that eventList agrees with the status returned.
			rb.waitEvent(t, within, func(ev Event) bool { return ev.To == want })
			return st
		}
		if !rb.WaitForStateChange(ctx, st.State) {
			t.Fatalf("state %s not reached within %v; now %s (last error: %v)", want, within, st.State, st.LastErr)
		}
	}
}

// waitConnectedTo waits until the bridge is connected to server name, and
// its subscriber has received that event.
func (rb *running) waitConnectedTo(t *testing.T, name string, within time.Duration) Status {
	t.Helper()
	deadline := time.After(within)
	for {
		st := rb.Status()
		if st.State == Connected && st.Server == name {
			rb.waitEvent(t, within, func(ev Event) bool { return ev.To == Connected && ev.Status.Server == name })
			return st
		}
		// Every change, a fail-back from Connected to Connected included,
		// reaches the subscriber, which signals evSig.
		select {
		case <-rb.evSig:
		case <-deadline:
			t.Fatalf("not connected to %s within %v; %s to %q (last error: %v)", name, within, st.State, st.Server, st.LastErr)
		}
	}
}

// waitEvent waits until the subscriber has received an event for which ok
// holds.
func (rb *running) waitEvent(t *testing.T, within time.Duration, ok func(Event) bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, ev := range rb.eventList() {
			if ok(ev) {
				return
			}
		}
		select {
		case <-rb.evSig:
		case <-deadline:
			t.Fatalf("the subscriber did not receive the event within %v; events: %v", within, rb.eventList())
		}
	}
}

// backoffWaits waits until the bridge has backed off at least n times and
// returns the waits, in order.
func (rb *running) backoffWaits(t *testing.T, n int) []time.Duration {
	t.Helper()
	var waits []time.Duration
	require.Eventually(t, func() bool {
		waits = waits[:0]
		for _, ev := range rb.eventList() {
			if ev.To == BackingOff {
				waits = append(waits, ev.Status.Backoff)
			}
		}
		return len(waits) >= n
	}, 20*time.Second, time.Millisecond)
	return waits
}

func (rb *running) eventList() []Event {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return append([]Event(nil), rb.events...)
}

// join plays a web user's join request through srv and returns the reply.
func join(t *testing.T, srv *componenttest.Server, call, passcode string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := srv.WaitConn(ctx, testAddr)
	require.NoError(t, err)
	reply, err := conn.SendIQ(ctx, component.MarshalJoinIQ(&component.JoinRequest{
		From: jid.MustParse("guest@example.com/web"), ID: "j-" + call, Call: call, Passcode: passcode, DisplayName: "Guest",
	}, jid.MustParse(testAddr)))
	require.NoError(t, err)
	return string(reply)
}
