// Command callbridge is a Call Bridge process built on cblink: it keeps the
// XEP-0114 component link to the XMPP server up, logs every state change,
// answers XEP-0199 pings and disco#info, accepts every join request with a
// log line, and serves its status and metrics over HTTP.
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/examples/internal/settings"
)

const prog = "callbridge"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its exit status: 0 after a clean stop, 1 when the
// bridge stopped on an error, 2 for invalid settings.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings.Settings
	s.Register(fs)
	demo := fs.Bool("demo", false, "run the self-contained demo scenario on loopback and exit")
	stay := fs.Bool("stay", false, "with -demo: keep running after the scenario until interrupted")
	statusAddr := fs.String("status-addr", "", "serve GET /status (JSON) and GET /metrics (Prometheus) on this `host:port`")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "on SIGTERM or Ctrl-C, how long join requests in progress may take to finish before the rest are refused")
	logFormat := fs.String("log-format", "text", "log format: `text` or json")
	verbose := fs.Bool("v", false, "debug logs")
	if code, ok := settings.ParseCommandLine(prog, fs, args, stderr); !ok {
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *demo {
		if err := runDemo(ctx, stdout, *stay); err != nil {
			fmt.Fprintf(stderr, "%s: demo: %v\n", prog, err)
			return 1
		}
		return 0
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	case "json":
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	default:
		fmt.Fprintf(stderr, "%s: invalid settings: -log-format: %q is neither text nor json\n", prog, *logFormat)
		return 2
	}
	log := slog.New(h)

	cfg := s.Config()
	cfg.Logger = log
	b, err := callbridge.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid settings: %s\n", prog, strings.Join(settings.Problems(err), "; "))
		return 2
	}
	var sessions atomic.Uint64
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		id := fmt.Sprintf("%s-%d", s.Name, sessions.Add(1))
		log.Info("join request accepted", "caller", req.From.String(), "call", req.Call, "display_name", req.DisplayName, "session", id)
		return &component.JoinResult{Session: id}, nil
	})
	b.HandleIQ("query", nsDiscoInfo, discoInfo)

	var srv *http.Server
	srvDone := make(chan struct{})
	if *statusAddr != "" {
		ln, err := net.Listen("tcp", *statusAddr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: invalid settings: -status-addr: %v\n", prog, err)
			return 2
		}
		srv = &http.Server{Handler: statusHandler(b), ReadHeaderTimeout: 5 * time.Second}
		log.Info("status server listening", "addr", ln.Addr().String())
		go func() {
			defer close(srvDone)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("status server", "err", err.Error())
			}
		}()
	}

	log.Info("starting", "config", cfg)
	// Run until the bridge stops by itself or a signal comes; then drain:
	// join requests in progress finish (up to -shutdown-grace), new ones
	// are refused, and the stream is closed cleanly.
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(context.Background()) }()
	signalled := false
	select {
	case err = <-runErr:
	case <-ctx.Done():
		signalled = true
		log.Info("signal received: finishing the requests in progress", "grace", grace.String())
		sctx, cancel := context.WithTimeout(context.Background(), *grace)
		if serr := b.Shutdown(sctx); serr != nil {
			log.Warn("shutdown grace over: requests still in progress were refused", "err", serr.Error())
		}
		cancel()
		err = <-runErr
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		<-srvDone
	}
	if signalled && errors.Is(err, callbridge.ErrClosed) {
		log.Info("stopped: stream closed")
		return 0
	}
	log.Error("stopped", "err", err.Error())
	return 1
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
