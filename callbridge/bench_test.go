package callbridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/internal/testpki"
)

// BenchmarkFailover measures the time from the connected server dropping
// every connection and refusing new ones (RST) to the bridge being
// connected to the other server. The
// baseline, measured in the same run, is a cold start: New to Connected.
func BenchmarkFailover(b *testing.B) {
	t := &testing.T{}
	r := newRig(t, 10, 10) // equal priority: either may be the active one
	defer func() {
		for _, s := range r.servers {
			s.Close()
		}
		r.dns.Close()
	}()
	cfg := r.config()
	// Default backoff, except that every link counts as having held: the
	// loop kills links milliseconds apart, which the bridge would otherwise
	// (rightly) treat as a flapping server and back off from.
	cfg.Backoff = Backoff{ResetAfter: time.Nanosecond}
	cfg.Logger = nil

	b.Run("cold-connect", func(b *testing.B) {
		for b.Loop() {
			br, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- br.Run(ctx) }()
			waitFor(b, br, func(s Status) bool { return s.State == Connected })
			b.StopTimer()
			cancel()
			<-errc
			b.StartTimer()
		}
	})

	b.Run("failover", func(b *testing.B) {
		br, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- br.Run(ctx) }()
		defer func() { cancel(); <-errc }()
		waitFor(b, br, func(s Status) bool { return s.State == Connected })
		for b.Loop() {
			cur := br.Status().Addr
			var victim *componenttest.Server
			for _, s := range r.servers {
				if s.Addr() == cur {
					victim = s
				}
			}
			victim.Stop()
			victim.CloseClientConnections()
			waitFor(b, br, func(s Status) bool { return s.State == Connected && s.Addr != cur })
			b.StopTimer()
			if err := victim.Start(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

func waitFor(b *testing.B, br *Bridge, ok func(Status) bool) {
	deadline := time.Now().Add(20 * time.Second)
	for !ok(br.Status()) {
		if time.Now().After(deadline) {
			b.Fatalf("condition not reached; status %+v", br.Status())
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkIdleBridge measures what an idle connected bridge costs: heap
// bytes, goroutine stack bytes and goroutines per bridge, with many
// bridges in one process against one componenttest server. The baselines
// are the same number of bare TLS connections held open with a read
// pending (tls-conn: the connection's own cost) and of bare component
// sessions (no supervisor). Server-side costs are in all three, so
// differences between them are the client's.
func BenchmarkIdleBridge(b *testing.B) {
	const n = 200
	ca := testpki.MustCA(testpki.Template{})
	comps := map[string]string{}
	for i := range n {
		comps[fmt.Sprintf("cb%d.example.com", i)] = testSecret
	}
	srv, err := componenttest.NewServer(componenttest.Options{
		Domain: testDomain, DNSNames: []string{testDomain, "localhost"},
		CACert: ca.Cert, CAKey: ca.Key, Components: comps, MaxRawLog: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Addr())

	measure := func(b *testing.B, start func(i int) (stop func())) {
		for b.Loop() {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			g0 := runtime.NumGoroutine()
			stops := make([]func(), n)
			for i := range n {
				stops[i] = start(i)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			g1 := runtime.NumGoroutine()
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/conn")
			b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/conn")
			b.ReportMetric(float64(g1-g0)/n, "goroutines/conn")
			b.StopTimer()
			for _, s := range stops {
				s()
			}
			b.StartTimer()
		}
	}

	b.Run("client=tls-conn", func(b *testing.B) {
		measure(b, func(int) func() {
			conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: testDomain})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				var p [1]byte
				_, _ = conn.Read(p[:])
			}()
			return func() { conn.Close(); <-done }
		})
	})

	b.Run("client=component-session", func(b *testing.B) {
		measure(b, func(i int) func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: testDomain})
			if err != nil {
				b.Fatal(err)
			}
			s, err := component.NewSession(ctx, conn, component.Config{
				Name: fmt.Sprintf("cb%d", i), Domain: testDomain, Secret: component.NewSecret(testSecret), Handler: component.NewMux(),
			})
			if err != nil {
				b.Fatal(err)
			}
			return func() { s.Close() }
		})
	})

	b.Run("client=bridge", func(b *testing.B) {
		measure(b, func(i int) func() {
			br, err := New(Config{
				Name: fmt.Sprintf("cb%d", i), Domain: testDomain, Secret: component.NewSecret(testSecret),
				Server: "127.0.0.1:" + port, ServerName: "localhost", RootCAs: ca.Pool(),
			})
			if err != nil {
				b.Fatal(err)
			}
			br.HandleJoin(func(context.Context, *component.JoinRequest) (*component.JoinResult, error) { return nil, nil })
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- br.Run(ctx) }()
			waitFor(b, br, func(s Status) bool { return s.State == Connected })
			return func() { cancel(); <-errc }
		})
	})
}
