package callbridge

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
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// heapPeak samples the heap in use until stopped and returns the highest
// figure above the level when it started.
type heapPeak struct {
	stop chan struct{}
	done chan struct{}
	base uint64
	peak atomic.Uint64
}

func sampleHeap() *heapPeak {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{}), base: m.HeapInuse}
	go func() {
		defer close(h.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > h.base && m.HeapInuse-h.base > h.peak.Load() {
				h.peak.Store(m.HeapInuse - h.base)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) end() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// sendChunks sends total bytes to the component in chunks: head, then
// filler up to total, without ever holding more than a chunk on the server
// side. It stops when the link ends.
func sendChunks(ctx context.Context, c *componenttest.Conn, head string, filler byte, total int) {
	chunk := []byte(strings.Repeat(string(filler), 64<<10))
	if c.SendRaw(ctx, []byte(head)) != nil {
		return
	}
	for sent := len(head); sent < total; sent += len(chunk) {
		if c.SendRaw(ctx, chunk) != nil {
			return
		}
	}
}

// TestFaultMatrix injects, into a live link to xmpp1, every fault a server
// or the network can produce once the link is up, and measures for each:
// the time until the bridge notices (its state leaves Connected), the time
// until it is connected again (to xmpp1 or to xmpp2), and the peak heap
// above the level before the fault (the in-process servers included).
// Faults that must not end the link (whitespace, spoofed replies) are
// checked to leave it up. docs/reliability.md holds the figures of a run.
func TestFaultMatrix(t *testing.T) {
	type fault struct {
		name   string
		inject func(ctx context.Context, c *componenttest.Conn, r *rig)
		kind   ErrorKind // of the drop; "" when the link must stay up
	}
	streamErr := func(cond string) func(context.Context, *componenttest.Conn, *rig) {
		return func(ctx context.Context, c *componenttest.Conn, r *rig) {
			se := stream.Error{Err: cond}
			if cond == "see-other-host" {
				se.Content = r.servers[1].Addr()
			}
			_ = c.SendStreamError(ctx, se)
		}
	}
	faults := []fault{
		{"TCP reset", func(_ context.Context, c *componenttest.Conn, _ *rig) { c.Reset() }, KindNetwork},
		{"TCP close, no closing tag (a crash)", func(_ context.Context, c *componenttest.Conn, _ *rig) { c.Close() }, KindNetwork},
		{"server hangs (blackhole)", func(_ context.Context, c *componenttest.Conn, _ *rig) { c.Blackhole() }, KindTimeout},
		{"clean close (</stream:stream>)", func(ctx context.Context, c *componenttest.Conn, _ *rig) { _ = c.CloseStream(ctx) }, KindStream},
	}
	for _, f := range []struct {
		cond string
		kind ErrorKind
	}{
		{"system-shutdown", KindShutdown}, {"conflict", KindConflict}, {"see-other-host", KindRedirect},
		{"connection-timeout", KindTimeout}, {"policy-violation", KindStream}, {"internal-server-error", KindStream},
		{"reset", KindStream}, {"host-gone", KindUnknownName}, {"not-authorized", KindAuth},
		{"improper-addressing", KindProtocol}, {"invalid-from", KindProtocol},
	} {
		faults = append(faults, fault{"stream error " + f.cond, streamErr(f.cond), f.kind})
	}
	faults = append(faults,
		fault{"10 MiB stanza", func(ctx context.Context, c *componenttest.Conn, _ *rig) {
			sendChunks(ctx, c, "<message from='u@example.com/w' to='cb1.example.com'><body>", 'x', 10<<20)
		}, KindStream},
		fault{"nesting 100,000 deep", func(ctx context.Context, c *componenttest.Conn, _ *rig) {
			sendChunks(ctx, c, "<message from='u@example.com/w' to='cb1.example.com'>", '<', 0)
			_ = c.SendRaw(ctx, []byte(strings.Repeat("<a>", 100000)))
		}, KindStream},
		fault{"XML bomb (DTD, entities)", func(ctx context.Context, c *componenttest.Conn, _ *rig) {
			_ = c.SendRaw(ctx, []byte(`<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><message>&lol2;</message>`))
		}, KindStream},
		fault{"garbage bytes", func(ctx context.Context, c *componenttest.Conn, _ *rig) {
			_ = c.SendRaw(ctx, []byte("\x00\x01\xffnot xml at all <<<>>>"))
		}, KindStream},
		fault{"64 MiB of whitespace (keepalives: the link stays)", func(ctx context.Context, c *componenttest.Conn, _ *rig) {
			sendChunks(ctx, c, " ", ' ', 64<<20)
		}, ""},
		fault{"spoofed and unknown IQ replies (the link stays)", func(ctx context.Context, c *componenttest.Conn, _ *rig) {
			for i := range 1000 {
				_ = c.SendRaw(ctx, []byte(fmt.Sprintf("<iq type='result' id='nobody-%d' from='evil@example.com' to='cb1.example.com'/>", i)))
			}
		}, ""},
	)

	var table strings.Builder
	fmt.Fprintf(&table, "| fault | kind | detected | connected again | peak heap |\n|---|---|--:|--:|--:|\n")
	var mu sync.Mutex
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			r := newRig(t, 10, 20)
			cfg := r.config()
			cfg.PingInterval = 100 * time.Millisecond
			cfg.PingTimeout = 300 * time.Millisecond
			if f.kind == "" {
				// The link must stay up: what is measured is that the
				// flood does not end it, not how fast a dead server is
				// noticed, so a process starved of CPU for 300 ms (an
				// oversubscribed CI machine under -race) must not end it
				// either.
				cfg.PingTimeout = 3 * time.Second
			}
			cfg.Backoff = Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
			b, err := New(cfg)
			require.NoError(t, err)
			b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
				return &component.JoinResult{Session: "s"}, nil
			})
			events, cancelSub := b.Subscribe()
			defer cancelSub()
			_, conn := runConnected(t, r, b)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			heap := sampleHeap()
			start := time.Now()
			injected := make(chan struct{})
			go func() { defer close(injected); f.inject(ctx, conn, r) }()

			var detected, recovered time.Duration
			var kind ErrorKind
			if f.kind == "" {
				<-injected
				// The link must have survived: still up, and it still
				// answers a join.
				st := b.Status()
				assert.Equal(t, Connected, st.State, "the link ended: %v", st.LastErr)
				assert.Equal(t, "xmpp1.example.com", st.Server)
				assert.Contains(t, join(t, r.servers[0], "1", "1234"), "type='result'")
			} else {
				for ev := range events {
					if detected == 0 && ev.From == Connected && ev.To != Connected {
						detected, kind = time.Since(start), ev.Status.LastErrKind
					}
					if detected != 0 && ev.To == Connected {
						recovered = time.Since(start)
						break
					}
				}
				assert.Equal(t, f.kind, kind, "kind of the drop")
				require.NotZero(t, recovered, "connected again")
			}
			peak := heap.end()
			cancel()
			<-injected
			assert.Less(t, peak, uint64(48<<20), "peak heap")
			show := func(d time.Duration) string {
				if d == 0 {
					return "stays up"
				}
				return d.Round(100 * time.Microsecond).String()
			}
			mu.Lock()
			fmt.Fprintf(&table, "| %s | %s | %s | %s | %.1f MiB |\n", f.name, kind, show(detected), show(recovered), float64(peak)/(1<<20))
			mu.Unlock()
		})
	}
	t.Logf("fault matrix (ping every 100 ms, timeout 300 ms; backoff 20-200 ms):\n%s", table.String())
}
