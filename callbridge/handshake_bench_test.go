package callbridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	mcomponent "mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/internal/handloop"
)

// Environment of the child process of BenchmarkHandshakeCrossProcess.
const (
	envHSChild = "CBLINK_HS_CHILD" // the client: handloop, component, callbridge or mellium
	envHSAddr  = "CBLINK_HS_ADDR"  // the server's address
	envHSCA    = "CBLINK_HS_CA"    // PEM file of the server's CA
)

// hsClients are the clients BenchmarkHandshakeCrossProcess compares;
// handloop, the least a client can do, is the baseline.
var hsClients = []string{"handloop", "component", "callbridge", "mellium"}

// BenchmarkHandshakeCrossProcess measures connection set-up as the server
// sees it: from its TCP accept to the first byte it reads (the TLS
// ClientHello), and to the component being authenticated (the server
// queues <handshake/>), over direct TLS on loopback. The component runs in
// a child process with GOMAXPROCS=1, the server here at GOMAXPROCS 1, so
// each has a core of the 2-core machine. Every connection is a full TLS
// handshake (no resumption) with Go's default curves on both sides.
//
// mode=cold: one op is one child process making one connection, the
// first of the process (set-up such as reading the CA file is done before
// it): first-use costs in the client (code run for the first time, stacks
// and heap growing, ...) count, as they do for a Call Bridge that just
// started. mode=warm: one child makes every connection of the
// sub-benchmark, one after the other (after a few untimed ones), so only
// the steady-state work counts.
//
// The metrics are medians over the op's connections, from
// componenttest.Conn.Timing: accept-to-first-byte-ms and accept-to-auth-ms.
// ns/op also counts the teardown, and in cold mode the process start. Most
// of accept-to-first-byte is crypto/tls building the ClientHello (the
// X25519MLKEM768 key share); when the machine is busy and the server is
// scheduled late for the accept, it shrinks, so compare clients measured
// at the same time.
//
// The clients: handloop is crypto/tls's Dial and internal/handloop's
// hand-written XEP-0114 handshake (no XML library), the baseline; component is tls.Dial and
// component.NewSession; callbridge is a Bridge with Server set, from Run
// to Connected; mellium is tls.Dial and mellium.im/xmpp/component's
// NewSession.
func BenchmarkHandshakeCrossProcess(b *testing.B) {
	srv, err := componenttest.NewServer(componenttest.Options{
		Components: map[string]string{testAddr: testSecret}, AcceptDuplicates: true, MaxRawLog: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	caFile := filepath.Join(b.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.RootPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	env := func(client string) []string {
		return append(os.Environ(), "GOMAXPROCS=1", envHSChild+"="+client, envHSAddr+"="+srv.Addr(), envHSCA+"="+caFile)
	}
	for _, mode := range []string{"cold", "warm"} {
		for _, client := range hsClients {
			b.Run("mode="+mode+"/client="+client, func(b *testing.B) {
				var firstByte, auth []time.Duration
				measure := func(op func() error) {
					next := len(srv.Conns())
					if err := op(); err != nil {
						b.Fatal(err)
					}
					fb, au, err := connTimes(srv, next)
					if err != nil {
						b.Fatal(err)
					}
					firstByte, auth = append(firstByte, fb), append(auth, au)
				}
				if mode == "cold" {
					for b.Loop() {
						measure(func() error { return coldConnect(env(client)) })
					}
				} else {
					ch, err := startHSChild(env(client))
					if err != nil {
						b.Fatal(err)
					}
					defer ch.stop()
					for range 5 { // warm up, untimed
						measure(ch.connect)
					}
					firstByte, auth = firstByte[:0], auth[:0]
					for b.Loop() {
						measure(ch.connect)
					}
				}
				b.ReportMetric(medianMs(firstByte), "accept-to-first-byte-ms")
				b.ReportMetric(medianMs(auth), "accept-to-auth-ms")
			})
		}
	}
}

// connTimes waits for the connections accepted from index next on to end
// and returns the set-up times of the one that authenticated.
func connTimes(srv *componenttest.Server, next int) (firstByte, auth time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conns := srv.Conns()
	if len(conns) <= next {
		return 0, 0, errors.New("the child reported a connection the server did not accept")
	}
	var tm componenttest.Timing
	for _, c := range conns[next:] {
		if err := c.WaitClosed(ctx); err != nil {
			return 0, 0, err
		}
		if c.Info().Outcome == componenttest.HandshakeOK {
			tm = c.Timing()
		}
	}
	if tm.Authenticated.IsZero() || tm.FirstByte.IsZero() {
		return 0, 0, errors.New("no connection authenticated")
	}
	return tm.FirstByte.Sub(tm.Accepted), tm.Authenticated.Sub(tm.Accepted), nil
}

func medianMs(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// hsChild is a child process making one connection per line on its stdin
// and answering each with a line on its stdout: "ok" or the error.
type hsChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startHSChild(env []string) (*hsChild, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &hsChild{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}, nil
}

func (ch *hsChild) connect() error {
	if _, err := io.WriteString(ch.stdin, "connect\n"); err != nil {
		return err
	}
	if !ch.out.Scan() {
		return fmt.Errorf("child: no answer (%v)", ch.out.Err())
	}
	if line := ch.out.Text(); line != "ok" {
		return fmt.Errorf("child: %s", line)
	}
	return nil
}

func (ch *hsChild) stop() error {
	ch.stdin.Close()
	return ch.cmd.Wait()
}

// coldConnect runs a child process for one connection.
func coldConnect(env []string) error {
	ch, err := startHSChild(env)
	if err != nil {
		return err
	}
	err = ch.connect()
	if werr := ch.stop(); err == nil {
		err = werr
	}
	return err
}

// handshakeChild serves as the child of BenchmarkHandshakeCrossProcess
// when the test binary was started as one; it reports whether it was.
func handshakeChild() bool {
	client := os.Getenv(envHSChild)
	if client == "" {
		return false
	}
	if err := runHSChild(client, os.Getenv(envHSAddr), os.Getenv(envHSCA)); err != nil {
		fmt.Fprintln(os.Stderr, "handshake bench child:", err)
		os.Exit(1)
	}
	return true
}

func runHSChild(client, addr, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("no CA in " + caFile)
	}
	// Go's defaults but for the roots; the SNI is the domain, as
	// callbridge sends it.
	tlsConf := &tls.Config{RootCAs: pool, ServerName: testDomain}
	var connect func(ctx context.Context) error
	switch client {
	case "handloop":
		connect = func(ctx context.Context) error {
			c, err := tls.Dial("tcp", addr, tlsConf)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = handloop.Handshake(c, testAddr, testSecret)
			return err
		}
	case "component":
		connect = func(ctx context.Context) error {
			c, err := tls.Dial("tcp", addr, tlsConf)
			if err != nil {
				return err
			}
			s, err := component.NewSession(ctx, c, component.Config{Name: "cb1", Domain: testDomain, Secret: component.NewSecret(testSecret)})
			if err != nil {
				return err
			}
			return s.Close()
		}
	case "callbridge":
		connect = func(ctx context.Context) error {
			br, err := New(Config{Name: "cb1", Domain: testDomain, Server: addr, Secret: component.NewSecret(testSecret), RootCAs: pool})
			if err != nil {
				return err
			}
			errc := make(chan error, 1)
			go func() { errc <- br.Run(ctx) }()
			for st := br.Status().State; st != Connected; st = br.Status().State {
				if !br.WaitForStateChange(ctx, st) {
					br.Close()
					return fmt.Errorf("not connected: %v (%v)", ctx.Err(), br.Status().LastErr)
				}
			}
			br.Close()
			if err := <-errc; !errors.Is(err, ErrClosed) {
				return err
			}
			return nil
		}
	case "mellium":
		a := jid.MustParse(testAddr)
		connect = func(ctx context.Context) error {
			c, err := tls.Dial("tcp", addr, tlsConf)
			if err != nil {
				return err
			}
			defer c.Close()
			s, err := mcomponent.NewSession(ctx, a, []byte(testSecret), c)
			if err != nil {
				return err
			}
			return s.Close()
		}
	default:
		return fmt.Errorf("unknown client %q", client)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := connect(ctx)
		cancel()
		answer := "ok"
		if err != nil {
			answer = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		if _, err := fmt.Println(answer); err != nil {
			return err
		}
	}
	return in.Err()
}
