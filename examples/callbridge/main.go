// Command callbridge is a Call Bridge process built on cblink: it keeps the
// XEP-0114 component link to the XMPP server up, logs every state change,
// answers XEP-0199 pings and disco#info, answers join requests (every one
// accepted, or with -calls FILE only those to a listed call with its
// passcode) with a log line, serves its status and metrics over HTTP, and
// with -web ADDR a join page for a web user.
//
// Settings come from flags, each also readable from CBLINK_<FLAG>; the
// shared secret comes from -secret-file or CBLINK_SECRET only, never from
// the command line. With -demo it runs a self-contained scenario on
// loopback instead: in-process XMPP and DNS servers, SRV discovery, TLS,
// the handshake, join requests and a failover.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/examples/internal/buildinfo"
	"github.com/cblink/cblink/examples/internal/calls"
	"github.com/cblink/cblink/examples/internal/logformat"
	"github.com/cblink/cblink/examples/internal/settings"
)

const prog = "callbridge"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its exit status: 0 after a clean stop, 1 when the
// bridge stopped on an error (with -stop-on-permanent, an error an
// operator must fix) or an address could not be listened on, 2 for
// invalid settings (every problem in one line).
func run(args []string, stdout, stderr io.Writer) int {
	// First of all: a reload (SIGHUP) that comes while the process starts
	// must not kill it. One queued HUP is handled once the bridge runs.
	hup := notifyHUP()
	defer signal.Stop(hup)
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings.Settings
	s.Register(fs)
	s.RegisterBridge(fs)
	demo := fs.Bool("demo", false, "run the self-contained demo scenario on loopback and exit")
	stay := fs.Bool("stay", false, "with -demo: keep the servers and the bridge running after the scenario until interrupted, and print commands to try against them")
	statusAddr := fs.String("status-addr", "", "serve GET /status (JSON), /metrics (Prometheus), /livez and /readyz on this `host:port`")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "on SIGTERM or Ctrl-C, how long join requests in progress may take to finish before the rest are refused")
	logFormat := fs.String("log-format", "text", "log format: `text` or json (durations in seconds, under keys ending in _seconds)")
	callsFile := fs.String("calls", "", "the call directory `file`: one call per line, 'CALL-ID PASSCODE [NAME]' (- for no passcode); joins to other calls are refused item-not-found, a wrong passcode forbidden (default: accept every join)")
	webAddr := fs.String("web", "", "serve the join page (a web user joining a call over XMPP-over-WebSocket) on this `host:port`; with -demo, once the scenario is over (-stay), the lab answering its WebSocket side")
	webWS := fs.String("web-ws", "", "the page's default XMPP-over-WebSocket `URL` (Prosody: ws://HOST:5280/xmpp-websocket); with -demo, the lab's own endpoint")
	webDomain := fs.String("web-domain", "", "the page's default XMPP `domain` for the anonymous login (default: -domain)")
	verbose := fs.Bool("v", false, "debug logs: the DNS answers, the servers in the order to try, each server's certificate")
	version := fs.Bool("version", false, "print the version (module version, VCS revision, Go version) and exit")
	if code, ok := settings.ParseCommandLine(prog, fs, args, stderr); !ok {
		return code
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Read().String("cblink-"+prog))
		return 0
	}
	// Every problem of the settings is collected, then reported as one
	// line: a -log-format that is neither text nor json is reported in
	// text.
	var problems []string
	log, err := logformat.New(*logFormat, *verbose, stderr)
	if err != nil {
		problems = append(problems, "-log-format: "+err.Error())
		*logFormat = "text"
		log, _ = logformat.New("text", *verbose, stderr)
	}
	if *grace < 0 {
		problems = append(problems, "-shutdown-grace: must not be negative")
	}
	var dir calls.Directory
	if *callsFile != "" {
		if dir, err = calls.Load(*callsFile); err != nil {
			problems = append(problems, "-calls: "+err.Error())
		}
	}
	for _, a := range []struct{ flag, addr string }{{"-status-addr", *statusAddr}, {"-web", *webAddr}} {
		if a.addr == "" {
			continue
		}
		if err := checkListenAddr(a.addr); err != nil {
			problems = append(problems, a.flag+": "+err.Error())
		}
	}
	cfg := s.Config()
	cfg.Logger = log
	var b *callbridge.Bridge
	if !*demo {
		if b, err = callbridge.New(cfg); err != nil {
			problems = append(problems, settings.Problems(err)...)
		}
	}
	if len(problems) > 0 {
		// One line, in the log format.
		if *logFormat == "json" {
			log.Error("invalid settings", "problems", problems)
		} else {
			fmt.Fprintf(stderr, "%s: invalid settings: %s\n", prog, strings.Join(problems, "; "))
		}
		return 2
	}

	// A well-formed address that cannot be listened on now (the port is
	// in use, the address is not this host's yet) is not invalid
	// settings: exit 1, and systemd starts the process again.
	var statusLn, webLn net.Listener
	for _, a := range []struct {
		flag, addr string
		ln         *net.Listener
	}{{"-status-addr", *statusAddr, &statusLn}, {"-web", *webAddr, &webLn}} {
		if a.addr == "" {
			continue
		}
		if *a.ln, err = net.Listen("tcp", a.addr); err != nil {
			log.Error("cannot listen", "flag", a.flag, "addr", a.addr, "err", err.Error())
			return 1
		}
		defer (*a.ln).Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *demo {
		if err := runDemo(ctx, stdout, demoOptions{stay: *stay, status: statusLn, web: webLn, failBack: s.FailBack, failBackInterval: s.FailBackInterval}); err != nil {
			fmt.Fprintf(stderr, "%s: demo: %v\n", prog, err)
			return 1
		}
		return 0
	}

	b.HandleJoin(joinHandler(s.Name, dir, log))
	b.HandleIQ("query", nsDiscoInfo, discoInfo)

	log.Info("starting", startingAttrs(&s, cfg, *statusAddr, *grace)...)
	if dir != nil {
		log.Info("call directory loaded: joins to other calls are refused", "file", *callsFile, "calls", len(dir))
	} else {
		log.Info("no call directory (-calls): every join is accepted")
	}
	stopStatus := func() {}
	if statusLn != nil {
		log.Info("status server listening", "addr", statusLn.Addr().String())
		stopStatus = serveStatus(statusLn, statusHandler(b), log)
	}
	if webLn != nil {
		eff := cfg.WithDefaults()
		wc := webConfig{WS: *webWS, Domain: *webDomain, Bridge: eff.Name + "." + eff.Domain}
		if wc.Domain == "" {
			wc.Domain = eff.Domain
		}
		log.Info("join page listening", "url", "http://"+webLn.Addr().String()+"/", "ws", wc.WS, "domain", wc.Domain, "bridge", wc.Bridge)
		stopWeb := serveStatus(webLn, webHandler(wc, nil), log)
		defer stopWeb()
	}
	// Run until the bridge stops by itself or SIGINT/SIGTERM comes (SIGHUP
	// reads the secret file and the CA file again and retries at once); then drain:
	// join requests in progress finish (up to -shutdown-grace), new ones
	// are refused, and the stream is closed cleanly.
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(context.Background()) }()
	signalled, linkUp := false, false
	for running := true; running; {
		select {
		case err = <-runErr:
			running = false
		case <-hup:
			reload(b, &s, log)
		case <-ctx.Done():
			running = false
			signalled = true
			st := b.Status().State
			linkUp = st == callbridge.Connected || st == callbridge.Draining // a link is up, or closing after SIGHUP
			log.Info("signal received: finishing the requests in progress", "grace", *grace)
			sctx, cancel := context.WithTimeout(context.Background(), *grace)
			if serr := b.Shutdown(sctx); serr != nil {
				log.Warn("shutdown grace over: requests still in progress were refused", "err", serr.Error())
			}
			cancel()
			err = <-runErr
		}
	}
	stopStatus()
	switch {
	case signalled && errors.Is(err, callbridge.ErrClosed) && linkUp:
		log.Info("stopped: stream closed")
		return 0
	case signalled && errors.Is(err, callbridge.ErrClosed):
		log.Info("stopped: no link was up")
		return 0
	}
	attrs := []any{"err", err.Error()}
	if k := callbridge.Classify(err); k != callbridge.KindNone {
		attrs = append(attrs, "kind", string(k), "permanent", k.Permanent())
	}
	log.Error("stopped", attrs...)
	return 1
}

// startingAttrs are the attributes of the "starting" line: every
// effective setting of a flag (defaults applied) but the secret, which is
// named by its source only. server_name and sni are there when set (by
// default each server's certificate must name the server dialled).
func startingAttrs(s *settings.Settings, cfg callbridge.Config, statusAddr string, grace time.Duration) []any {
	eff := cfg.WithDefaults()
	server := eff.Server
	if server == "" {
		server = "SRV _xmpp-component._tcp." + eff.Domain
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	dns := "/etc/resolv.conf"
	if len(eff.NameServers) > 0 {
		dns = strings.Join(eff.NameServers, ",")
	}
	attrs := []any{"name", eff.Name, "domain", eff.Domain, "server", server}
	if eff.ServerName != "" {
		attrs = append(attrs, "server_name", eff.ServerName)
	}
	return append(attrs, "sni", or(eff.SNI, eff.Domain),
		"secret", s.SecretSource(), "ca", or(eff.RootCAFile, "system roots"), "dns", dns,
		"dial_timeout", eff.DialTimeout, "handshake_timeout", eff.HandshakeTimeout,
		"keepalive", eff.KeepaliveIdle, "ping_interval", eff.PingInterval, "ping_timeout", eff.PingTimeout,
		"workers", eff.Workers, "queue_size", eff.QueueSize,
		"backoff_base", eff.Backoff.Base, "backoff_max", eff.Backoff.Max,
		"fail_back", eff.FailBack, "fail_back_interval", eff.FailBackInterval,
		"stop_on_permanent", eff.StopOnPermanentError,
		"status_addr", or(statusAddr, "off"), "shutdown_grace", grace,
	)
}

// checkListenAddr reports whether addr is a well-formed host:port to
// listen on (the port a number or a service name); whether it can be
// listened on is for net.Listen to say.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("%q is not host:port (%s)", addr, ae.Err)
		}
		return fmt.Errorf("%q is not host:port", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: bad port %q", addr, port)
	}
	return nil
}

// serveStatus serves h on ln until the returned stop is called; stop
// shuts the server down (bounded) and waits for it.
func serveStatus(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	// Every read and write is bounded, and idle keep-alive connections
	// are closed: a client that sends a body slowly, or never, cannot hold
	// a connection (the endpoints answer small requests at once).
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status server", "err", err.Error())
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
}

// nsDiscoInfo is the XEP-0030 service discovery info namespace.
const nsDiscoInfo = "http://jabber.org/protocol/disco#info"

// discoInfo answers XEP-0030 disco#info: who we are and what we speak.
func discoInfo(context.Context, *component.Stanza) (any, error) {
	return component.RawXML(`<query xmlns='` + nsDiscoInfo + `'>` +
		`<identity category='component' type='generic' name='cblink Call Bridge'/>` +
		`<feature var='` + nsDiscoInfo + `'/>` +
		`<feature var='` + component.NSPing + `'/>` +
		`<feature var='` + component.NSJoin + `'/>` +
		`</query>`), nil
}
