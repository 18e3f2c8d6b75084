// Command mellium is a benchmark baseline: an XEP-0114 component built on
// mellium.im/xmpp v0.22.0 that connects over direct TLS, answers XEP-0199
// pings and idles until SIGTERM or Ctrl-C. It takes the connection inputs
// of the callbridge binary; BenchmarkIdleRSS in examples/callbridge
// compares their idle memory.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"

	"github.com/cblink/cblink/internal/benchbin"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mellium:", err)
		os.Exit(1)
	}
}

func run() error {
	in, err := benchbin.Parse()
	if err != nil {
		return err
	}
	addr, err := jid.New("", in.Addr, "")
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := tls.Dial("tcp", in.Server, in.TLS)
	if err != nil {
		return err
	}
	s, err := component.NewSession(ctx, addr, []byte(in.Secret), conn)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	fmt.Println("connected")
	err = s.Serve(mux.New(component.NSAccept, ping.Handle()))
	if ctx.Err() != nil {
		return nil
	}
	return err
}
