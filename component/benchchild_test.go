package component

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"mellium.im/xmlstream"
	mcomponent "mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/handloop"
)

// Environment of the child process that BenchmarkPingCrossProcess starts:
// the component under test runs there, on its own core, as in DESIGN.md's
// measurements, while the server driving the pings runs in the benchmark.
const (
	envBenchChild = "CBLINK_BENCH_CHILD" // "cblink", "mellium" or "handloop"
	envBenchAddr  = "CBLINK_BENCH_ADDR"  // server address
	envBenchCA    = "CBLINK_BENCH_CA"    // PEM file of the server's CA
	// How long the child's join handler waits on its "backend".
	envBenchBackend = "CBLINK_BENCH_BACKEND"
)

// benchChild runs the child's component until its stdin closes, when the
// test binary was started as a benchmark child; it reports whether it was.
func benchChild() bool {
	client := os.Getenv(envBenchChild)
	if client == "" {
		return false
	}
	stop, err := benchProfiles()
	if err == nil {
		err = runBenchChild(client)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		os.Exit(1)
	}
	return true
}

func runBenchChild(client string) error {
	pem, err := os.ReadFile(os.Getenv(envBenchCA))
	if err != nil {
		return err
	}
	backend, err := time.ParseDuration(os.Getenv(envBenchBackend))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", os.Getenv(envBenchAddr), &tls.Config{RootCAs: pool, ServerName: "example.com"})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const addr, secret = "cb1.example.com", "bench-s3cret"
	switch client {
	case "cblink":
		// Default settings but for the link checks, which the server
		// does not need here.
		cfg := Config{Name: "cb1", Domain: "example.com", Secret: NewSecret(secret), Tuning: Tuning{KeepaliveIdle: -1, PingInterval: -1}}
		m := NewMux()
		accepted := &JoinResult{Session: "s"} // shared: the handler allocates nothing
		m.HandleJoin(func(ctx context.Context, req *JoinRequest) (*JoinResult, error) {
			if backend > 0 {
				if err := benchWait(ctx, backend); err != nil {
					return nil, err
				}
			}
			return accepted, nil
		})
		cfg.Handler = m
		s, err := NewSession(ctx, conn, cfg)
		if err != nil {
			return err
		}
		serveStats()
		return s.Close()
	case "handloop":
		rest, err := handloop.Handshake(conn, addr, secret)
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- handloop.ServePings(conn, addr, rest) }()
		serveStats()
		conn.Close()
		<-done
		return nil
	case "mellium":
		s, err := mcomponent.NewSession(ctx, jid.MustParse(addr), []byte(secret), conn)
		if err != nil {
			return err
		}
		join := func(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			var p joinXML
			if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t)).Decode(&p); err != nil {
				return err
			}
			if backend > 0 {
				if err := benchWait(context.Background(), backend); err != nil {
					return err
				}
			}
			joined := xml.StartElement{Name: xml.Name{Space: NSJoin, Local: "joined"}, Attr: []xml.Attr{{Name: xml.Name{Local: "session"}, Value: "s"}}}
			_, err := xmlstream.Copy(t, iq.Result(xmlstream.Wrap(nil, joined)))
			return err
		}
		m := mux.New("jabber:component:accept", ping.Handle(),
			mux.IQFunc(stanza.SetIQ, xml.Name{Space: NSJoin, Local: "join"}, join))
		go func() {
			if err := s.Serve(m); err != nil {
				fmt.Fprintln(os.Stderr, "mellium Serve:", err)
			}
		}()
		serveStats()
		return s.Close()
	}
	return fmt.Errorf("unknown client %q", client)
}

// benchProfiles starts the profiles the environment asks for
// (CBLINK_BENCH_CPUPROFILE, CBLINK_BENCH_MEMPROFILE: files to write, the
// latter with every allocation sampled) and returns what writes them.
func benchProfiles() (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	if name := os.Getenv("CBLINK_BENCH_CPUPROFILE"); name != "" {
		f, err := os.Create(name)
		if err != nil {
			return stop, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return stop, err
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if name := os.Getenv("CBLINK_BENCH_MEMPROFILE"); name != "" {
		runtime.MemProfileRate = 1
		stops = append(stops, func() {
			runtime.GC() // the profile is as of the last GC: include everything
			f, err := os.Create(name)
			if err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		})
	}
	return stop, nil
}

// serveStats answers each line on stdin with the process's count of heap
// allocations so far, until stdin closes.
func serveStats() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(ms.Mallocs)
	}
}

// BenchWait is benchWait for the benchmarks of package component_test.
var BenchWait = benchWait

// benchWait is the benchmarks' backend: a wait of d, cut by ctx.
func benchWait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
