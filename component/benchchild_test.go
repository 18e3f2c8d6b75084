package component

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	mcomponent "mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
)

// Environment of the child process that BenchmarkPingCrossProcess starts:
// the component under test runs there, on its own core, as in DESIGN.md's
// measurements, while the server driving the pings runs in the benchmark.
const (
	envBenchChild = "CBLINK_BENCH_CHILD" // "cblink" or "mellium"
	envBenchAddr  = "CBLINK_BENCH_ADDR"  // server address
	envBenchCA    = "CBLINK_BENCH_CA"    // PEM file of the server's CA
)

// benchChild runs the child's component until its stdin closes, when the
// test binary was started as a benchmark child; it reports whether it was.
func benchChild() bool {
	client := os.Getenv(envBenchChild)
	if client == "" {
		return false
	}
	if err := runBenchChild(client); err != nil {
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
		s, err := NewSession(ctx, conn, Config{Name: "cb1", Domain: "example.com", Secret: secret, Tuning: Tuning{KeepaliveIdle: -1, PingInterval: -1}})
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		return s.Close()
	case "mellium":
		s, err := mcomponent.NewSession(ctx, jid.MustParse(addr), []byte(secret), conn)
		if err != nil {
			return err
		}
		go func() { _ = s.Serve(mux.New("jabber:component:accept", ping.Handle())) }()
		_, _ = io.Copy(io.Discard, os.Stdin)
		return s.Close()
	}
	return fmt.Errorf("unknown client %q", client)
}
