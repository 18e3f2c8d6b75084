// Command handloop is a benchmark baseline: an XEP-0114 component written
// by hand on crypto/tls with no XML library (internal/handloop). It
// connects over direct TLS, does the handshake, answers XEP-0199 pings and
// idles until SIGTERM or Ctrl-C. It takes the connection inputs of the
// callbridge binary; BenchmarkIdleRSS in examples/callbridge compares
// their idle memory.
package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cblink/cblink/internal/benchbin"
	"github.com/cblink/cblink/internal/handloop"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "handloop:", err)
		os.Exit(1)
	}
}

func run() error {
	in, err := benchbin.Parse()
	if err != nil {
		return err
	}
	conn, err := tls.Dial("tcp", in.Server, in.TLS)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		_, _ = conn.Write([]byte("</stream:stream>"))
		_ = conn.Close()
	}()
	rest, err := handloop.Handshake(conn, in.Addr, in.Secret)
	if err != nil {
		return err
	}
	fmt.Println("connected")
	// It ends when the connection does: closed here on a signal, or by
	// the server.
	if err := handloop.ServePings(conn, in.Addr, rest); !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
