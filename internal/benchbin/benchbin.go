// Package benchbin holds what the baseline programs under it (mellium,
// handloop) share: the connection inputs of the callbridge binary, read
// the same way, so that the benchmarks comparing them with callbridge
// give all three the same flags.
package benchbin

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Inputs are a baseline's connection inputs.
type Inputs struct {
	Server string      // host:port
	Domain string      // the XMPP domain
	Addr   string      // the component address, name.domain
	Secret string      // the shared secret
	TLS    *tls.Config // direct TLS to Server: the CAs of -ca, SNI the domain
}

// Parse reads -server, -ca, -domain, -name and -secret-file (default:
// $CBLINK_SECRET) from the command line.
func Parse() (Inputs, error) {
	server := flag.String("server", "", "the XMPP server's `host:port`")
	ca := flag.String("ca", "", "PEM `file` of the trusted CAs")
	domain := flag.String("domain", "", "the XMPP `domain`")
	name := flag.String("name", "", "the component's `name`, without domain")
	secretFile := flag.String("secret-file", "", "`file` holding the secret (default: $CBLINK_SECRET)")
	flag.Parse()

	in := Inputs{Server: *server, Domain: *domain, Addr: *name + "." + *domain, Secret: os.Getenv("CBLINK_SECRET")}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return in, err
		}
		in.Secret = strings.TrimSpace(string(b))
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		return in, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return in, fmt.Errorf("%s: no certificate", *ca)
	}
	in.TLS = &tls.Config{RootCAs: roots, ServerName: *domain}
	return in, nil
}
