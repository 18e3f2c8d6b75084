// Command mellium is a benchmark baseline: an XEP-0114 component built on
// mellium.im/xmpp v0.22.0 that connects over direct TLS, answers XEP-0199
// pings and idles until SIGTERM or Ctrl-C. It takes the connection inputs
// of the callbridge binary; BenchmarkIdleRSS in examples/callbridge
// compares their idle memory.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mellium:", err)
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
	addr, err := jid.New("", *name+"."+*domain, "")
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := tls.Dial("tcp", *server, &tls.Config{RootCAs: roots, ServerName: *domain})
	if err != nil {
		return err
	}
	s, err := component.NewSession(ctx, addr, []byte(secret), conn)
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
