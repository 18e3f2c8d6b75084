package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/component/componenttest/wstest"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/tlsverify"
)

// demoPasscodes are the calls the demo's Call Bridge knows, with their
// passcodes.
var demoPasscodes = map[string]string{"100": "1234", "200": ""}

// printer serialises the demo's output lines from several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// demoOptions are the flags the demo honours.
type demoOptions struct {
	// stay keeps the servers and the bridge up after the scenario until
	// ctx ends, and prints commands that work against them.
	stay bool
	// status, when set, serves the bridge's /status, /metrics, /livez and
	// /readyz.
	status net.Listener
	// web, when set, serves the join page with -stay, the lab answering
	// its XMPP-over-WebSocket side.
	web net.Listener
	// failBack and failBackInterval are the binary's -fail-back (on by
	// default) and -fail-back-interval; an interval of 0 is
	// demoFailBackInterval, short enough to watch.
	failBack         bool
	failBackInterval time.Duration
}

// demoFailBackInterval is how often the demo's bridge probes the
// preferred server while on the backup, unless -fail-back-interval says
// otherwise: the binary's default (a minute) is long to watch.
const demoFailBackInterval = 5 * time.Second

// runDemo runs the self-contained scenario: two XMPP servers and a DNS
// server on loopback, SRV discovery, TLS with the SAN checks, the XEP-0114
// handshake, join requests, a failover, and a clean shutdown.
func runDemo(ctx context.Context, out io.Writer, opts demoOptions) error {
	p := &printer{w: out}
	const name, domain = "cb1", "example.com"
	addr := name + "." + domain
	secret := randomSecret()

	p.printf("cblink demo: a Call Bridge, two XMPP servers and a DNS server, all in this process on loopback")
	// From the repository's root the servers use the committed fixtures,
	// so that the commands -stay prints name testdata/pki/ca.pem; else a
	// fresh in-memory CA.
	cert, caCert, caFile := loadDemoPKI()
	if caFile != "" {
		p.printf("  certificates: %s (the repository's fixtures), server certificate naming example.com, xmpp1.example.com and xmpp2.example.com", filepath.Dir(caFile))
	} else {
		p.printf("  certificates: from a fresh in-memory CA")
	}
	l, err := callbridgetest.NewLab(callbridgetest.Options{
		Certificate: cert,
		CACert:      caCert,
		Domain:      domain,
		Name:        name,
		Secret:      secret,
		Servers: []callbridgetest.Server{
			{Name: "xmpp1.example.com", Priority: 10, Weight: 10},
			{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
		},
	})
	if err != nil {
		return fmt.Errorf("starting the servers: %w", err)
	}
	defer l.Close()
	for i, s := range l.Servers {
		p.printf("  XMPP server %s listening on %s (direct TLS), component %s registered", l.Names[i], s.Addr(), addr)
	}
	p.printf("  DNS server on %s publishing _xmpp-component._tcp.%s", l.DNS.Addr(), domain)

	cfg := callbridge.Config{
		Name:        name,
		Domain:      domain,
		Secret:      component.NewSecret(secret),
		RootCAs:     l.Pool(),
		NameServers: []string{l.DNS.Addr()},
		DialTimeout: 2 * time.Second,
		Tuning:      component.Tuning{HandshakeTimeout: 3 * time.Second},
		Logger:      slog.New(slog.DiscardHandler), // the demo prints the events itself
		// As the binary: back to the preferred server once it is back.
		FailBack:         opts.failBack,
		FailBackInterval: opts.failBackInterval,
	}
	if cfg.FailBack && cfg.FailBackInterval == 0 {
		cfg.FailBackInterval = demoFailBackInterval
	}
	p.printf("")
	p.printf("1. settings (as on CMS's XMPP page): %v, name servers %v", cfg, cfg.NameServers)

	// What the bridge will find, shown up front.
	res, err := (&discovery.Resolver{NameServers: cfg.NameServers}).Lookup(ctx, discovery.Request{Domain: domain})
	if err != nil {
		return fmt.Errorf("SRV lookup: %w", err)
	}
	for _, te := range res.Trace {
		if te.Type == "SRV" {
			p.printf("2. SRV answer for %s (%s from %s):", te.Name, te.Rcode, te.Server)
			for _, a := range te.Answers {
				p.printf("     %s", strings.Join(strings.Fields(a), " "))
			}
		}
	}
	p.printf("3. addresses, in the order to try (RFC 2782: lowest priority first):")
	for i, ep := range res.Endpoints {
		p.printf("     %d. %s port %d (priority %d): %v", i+1, ep.Target, ep.Port, ep.Priority, ep.Addrs)
	}

	b, err := callbridge.New(cfg)
	if err != nil {
		return err
	}
	var joins sync.Mutex
	n := 0
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		want, known := demoPasscodes[req.Call]
		switch {
		case !known:
			p.printf("     bridge: join request from %s for call %s (%q): unknown call, refused", req.From, req.Call, req.DisplayName)
			return nil, component.ErrJoinUnknownCall
		case req.Passcode != want:
			p.printf("     bridge: join request from %s for call %s (%q): wrong passcode, refused", req.From, req.Call, req.DisplayName)
			return nil, component.ErrJoinForbidden
		}
		joins.Lock()
		n++
		session := fmt.Sprintf("s-%s-%d", req.Call, n)
		joins.Unlock()
		p.printf("     bridge: join request from %s for call %s (%q): accepted, session %s", req.From, req.Call, req.DisplayName, session)
		return &component.JoinResult{Session: session}, nil
	})
	b.HandleIQ("query", nsDiscoInfo, discoInfo)
	if opts.status != nil {
		stopStatus := serveStatus(opts.status, statusHandler(b), slog.New(slog.DiscardHandler))
		defer stopStatus()
		p.printf("   status server on http://%s (/status, /metrics, /livez, /readyz)", opts.status.Addr())
	}

	// Print every state change as the bridge goes through the steps, and
	// signal each new link to the scenario below.
	events, _ := b.Subscribe()
	connected := make(chan callbridge.Status, 4)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for ev := range events {
			p.printf("   [bridge] %s", describe(ev, l, addr))
			// The scenario waits for two links; later ones (a fail-back,
			// a crash from the page) are not waited for.
			if ev.To == callbridge.Connected && ev.From != callbridge.Connected {
				select {
				case connected <- ev.Status:
				default:
				}
			}
		}
	}()

	// The bridge runs until ctx ends, but with -stay step 7 finds the
	// link in use before it stops it (so it can show the stream closed
	// cleanly), which the end of ctx must not race.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	stopOnCancel := context.AfterFunc(ctx, stop)
	defer stopOnCancel() // on every path; -stay releases it earlier
	runErr := make(chan error, 1)
	p.printf("4. the bridge starts (callbridge.Bridge.Run):")
	go func() { runErr <- b.Run(runCtx) }()
	finish := func() error {
		stop()
		err := <-runErr
		<-printed
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}

	waitLink := func() (callbridge.Status, error) {
		select {
		case st := <-connected:
			return st, nil
		case <-time.After(10 * time.Second):
			return callbridge.Status{}, errors.New("the bridge did not connect within 10s")
		case err := <-runErr:
			runErr <- err
			return callbridge.Status{}, fmt.Errorf("the bridge stopped: %w", err)
		}
	}
	st, err := waitLink()
	if err != nil {
		finish()
		return err
	}
	first, err := l.Server(st.Server)
	if err != nil {
		finish()
		return err
	}

	p.printf("5. WebRTC users ask to join, through %s:", st.Server)
	for _, u := range []struct{ user, display, call, passcode string }{
		{"alice", "Alice", "100", "1234"},
		{"bob", "Bob", "100", "0000"},
		{"carol", "Carol", "300", ""},
	} {
		if err := webJoin(ctx, p, first, addr, u.user, u.display, u.call, u.passcode); err != nil {
			finish()
			return err
		}
	}

	p.printf("6. %s crashes (listener stopped, connections dropped):", st.Server)
	first.Stop()
	first.CloseClientConnections()
	st2, err := waitLink()
	if err != nil {
		finish()
		return err
	}
	second, err := l.Server(st2.Server)
	if err != nil {
		finish()
		return err
	}
	p.printf("   failover done: now on %s", st2.Server)
	if err := webJoin(ctx, p, second, addr, "dave", "Dave", "200", ""); err != nil {
		finish()
		return err
	}

	if opts.stay {
		if err := l.StartServer(st.Server); err != nil {
			finish()
			return err
		}
		if cfg.FailBack {
			p.printf("   %s is back (restarted on %s); the bridge is on %s and moves back to %s (the preferred server) at its next fail-back probe, within %v (-fail-back-interval)",
				st.Server, first.Addr(), st2.Server, st.Server, cfg.FailBackInterval)
		} else {
			p.printf("   %s is back (restarted on %s); the bridge stays on %s (-fail-back=false)", st.Server, first.Addr(), st2.Server)
		}
		for _, srv := range l.Servers {
			srv.AddComponent("cb2."+domain, secret) // for xmppcheck: cb1 is this bridge's
		}
		dir, err := os.MkdirTemp("", "cblink-demo-")
		if err != nil {
			finish()
			return err
		}
		defer os.RemoveAll(dir)
		if caFile == "" {
			caFile = filepath.Join(dir, "ca.pem")
			if err := os.WriteFile(caFile, l.RootPEM(), 0o600); err != nil {
				finish()
				return err
			}
		}
		secretFile := filepath.Join(dir, "secret")
		if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
			finish()
			return err
		}
		p.printf("")
		p.printf("running until interrupted (Ctrl-C). From the repository's root, in another terminal:")
		p.printf("  check the connection as a Call Bridge would (another name than cb1, which this bridge holds):")
		p.printf("    go run ./examples/xmppcheck -name cb2 -domain %s -dns %s -ca %s -secret-file %s -strict",
			domain, l.DNS.Addr(), caFile, secretFile)
		if opts.web != nil {
			ws, err := wstest.New(wstest.Options{Domain: domain, Servers: l.Servers})
			if err != nil {
				finish()
				return err
			}
			defer ws.Close()
			stopWeb := serveStatus(opts.web, webHandler(webConfig{WS: ws.URL(), Domain: domain, Bridge: addr, Demo: true},
				&webDemo{l: l, b: b, p: p}), slog.New(slog.DiscardHandler))
			defer stopWeb()
			p.printf("  join a call as a web user, and crash the server in use to watch a failover, in a browser (a crashed server")
			p.printf("  restarts when the other one is crashed; the bridge moves back to the preferred one, %s, when fail-back is on):", st.Server)
			p.printf("    http://%s/", opts.web.Addr())
			p.printf("  the lab's XMPP-over-WebSocket endpoint (RFC 7395, anonymous login, domain %s), for other clients:", domain)
			p.printf("    %s", ws.URL())
		} else {
			p.printf("  (add -web 127.0.0.1:8080 to serve a join page for a browser)")
		}
		if opts.status != nil {
			a := opts.status.Addr().String()
			p.printf("  read the bridge's status:")
			p.printf("    curl -s http://%s/status", a)
			p.printf("    curl -s http://%s/metrics | grep ^cblink_", a)
			p.printf("    curl -si http://%s/readyz", a)
		} else {
			p.printf("  (add -status-addr 127.0.0.1:9180 to serve the bridge's status and metrics)")
		}
		stopOnCancel()
		select {
		case <-ctx.Done():
		case err := <-runErr:
			runErr <- err
		}
	}

	p.printf("7. shutting down (context cancelled):")
	// The server in use now: with -stay the link may have moved since.
	var conn *componenttest.Conn
	cur := b.Status().Server
	if srv, err := l.Server(cur); err == nil && b.Status().State == callbridge.Connected {
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, _ = srv.WaitConn(wctx, addr)
		cancel()
	}
	if err := finish(); err != nil {
		return fmt.Errorf("the bridge stopped with an error: %w", err)
	}
	if conn != nil {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = conn.WaitClosed(wctx)
		cancel()
		if conn.ClosedByPeer() {
			p.printf("   %s received </stream:stream>: the link was closed cleanly", cur)
		} else {
			p.printf("   %s did not see the stream closed cleanly", cur)
		}
	}
	s := b.Stats()
	p.printf("   stats: %d connects, %d joins accepted, %d refused", s.Connects, s.JoinsHandled, s.JoinsRefused)
	p.printf("demo finished")
	return nil
}

// demoPKI is where the repository keeps its fixture PKI, relative to the
// root of a clone.
const demoPKI = "testdata/pki"

// loadDemoPKI returns the fixture server certificate, its CA and the CA's
// file when the demo runs from the repository's root; nils and "" else.
func loadDemoPKI() (*tls.Certificate, *x509.Certificate, string) {
	caFile := filepath.Join(demoPKI, "ca.pem")
	cert, ca, err := callbridgetest.LoadPKI(filepath.Join(demoPKI, "server.pem"), filepath.Join(demoPKI, "server-key.pem"), caFile)
	if err != nil {
		return nil, nil, ""
	}
	return cert, ca, caFile
}

// webJoin plays a WebRTC user whose join request the XMPP server forwards
// to the Call Bridge, and prints how it was answered.
func webJoin(ctx context.Context, p *printer, srv *componenttest.Server, addr, user, display, call, passcode string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := srv.WaitConn(ctx, addr)
	if err != nil {
		return fmt.Errorf("no link on the server: %w", err)
	}
	from := jid.MustParse(user + "@example.com/web")
	pc := "no passcode"
	if passcode != "" {
		pc = "passcode " + passcode
	}
	p.printf("   web: %s asks to join call %s (%s)", from, call, pc)
	raw, err := conn.SendIQ(ctx, component.MarshalJoinIQ(&component.JoinRequest{
		From: from, ID: "join-" + user, Call: call, Passcode: passcode, DisplayName: display,
	}, jid.MustParse(addr)))
	if err != nil {
		return fmt.Errorf("join request: %w", err)
	}
	res, err := component.ParseJoinResponse(raw)
	var se stanza.Error
	switch {
	case err == nil:
		p.printf("   web: %s joined, session %s", user, res.Session)
	case errors.As(err, &se):
		p.printf("   web: %s refused: %s", user, se.Condition)
	default:
		return fmt.Errorf("join reply: %w", err)
	}
	return nil
}

// describe explains a state change in the words of the connection steps.
func describe(ev callbridge.Event, l *callbridgetest.Lab, addr string) string {
	st := ev.Status
	switch ev.To {
	case callbridge.Resolving:
		if ev.From == callbridge.Connected {
			return fmt.Sprintf("Resolving: link to %s lost (%s: %v); looking up the servers again", st.Server, st.LastErrKind, st.LastErr)
		}
		return "Resolving: SRV lookup of _xmpp-component._tcp." + l.Domain + ", then A/AAAA of each target"
	case callbridge.Connecting:
		if ev.From != callbridge.Resolving && st.LastErr != nil {
			return fmt.Sprintf("Connecting: TCP to %s (the previous server failed: %v)", st.Server, st.LastErr)
		}
		return "Connecting: TCP to " + st.Server
	case callbridge.TLS:
		return fmt.Sprintf("TLS: TCP connected to %s; TLS handshake from the first byte (SNI %s)", st.Addr, l.Domain)
	case callbridge.Authenticating:
		msg := "Authenticating: certificate checked"
		if cert, err := l.Certificate(st.Server); err == nil {
			sum := tlsverify.Summarize(cert)
			msg = fmt.Sprintf("Authenticating: certificate of %s trusted (issuer %s); SANs %v name both %s (XMPP domain) and %s (server)",
				st.Server, sum.Issuer, sum.DNSNames, l.Domain, st.Server)
		}
		return msg + "; XEP-0114 handshake as " + addr
	case callbridge.Connected:
		if ev.From == callbridge.Connected {
			return fmt.Sprintf("Failed back: to %s (%s), the preferred server, which is back; the link to the backup finishes its requests and closes cleanly", st.Server, st.Addr)
		}
		return fmt.Sprintf("Connected: to %s (%s) as %s; waiting for join requests", st.Server, st.Addr, addr)
	case callbridge.Draining:
		return fmt.Sprintf("Draining: new settings; the link to %s refuses new joins and finishes its own, then reconnects", st.Server)
	case callbridge.BackingOff:
		return fmt.Sprintf("BackingOff: every server failed (%s: %v); next try in %v", st.LastErrKind, st.LastErr, st.Backoff)
	case callbridge.Stopping:
		return fmt.Sprintf("Stopping: requests in progress on %s are answered, then </stream:stream>", st.Server)
	case callbridge.Stopped:
		return "Stopped: stream closed"
	}
	return ev.String()
}

// randomSecret makes the demo's shared secret.
func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
