// Command handloop is a benchmark baseline: an XEP-0114 component written
// by hand on crypto/tls with no XML library (internal/handloop). It
// connects over direct TLS, does the handshake, answers XEP-0199 pings and
// idles until SIGTERM or Ctrl-C. It takes the connection inputs of the
// callbridge binary; BenchmarkIdleRSS in examples/callbridge compares
// their idle memory.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cblink/cblink/internal/handloop"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "handloop:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("server", "", "the XMPP server's `host:port`")
	ca := flag.String("ca", "", "PEM `file` of the trusted CAs")
	domain := flag.String("domain", "", "the XMPP `domain`")
	name := flag.String("name", "", "the component's `name`, without domain")
	secretFile := flag.String("secret-file", "", "`file` holding the secret (default: $CBLINK_SECRET)")
	flag.Parse()

	secret := os.Getenv("CBLINK_SECRET")
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return err
		}
		secret = strings.TrimSpace(string(b))
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", *ca)
	}
	me := *name + "." + *domain

	conn, err := tls.Dial("tcp", *server, &tls.Config{RootCAs: roots, ServerName: *domain})
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
	rest, err := handloop.Handshake(conn, me, secret)
	if err != nil {
		return err
	}
	fmt.Println("connected")
	if err := handloop.ServePings(conn, me, rest); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
