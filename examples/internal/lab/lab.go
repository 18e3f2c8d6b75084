// Package lab starts a complete XMPP set-up on loopback for the examples'
// demo and tests: in-process XMPP servers that accept XEP-0114 components
// (componenttest), with certificates from one in-memory CA (testpki), behind
// an in-process DNS server (dnstest) that publishes their
// _xmpp-component._tcp SRV records (RFC 2782).
package lab

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery/dnstest"
	"github.com/cblink/cblink/internal/testpki"
)

// Server describes one XMPP server of the lab.
type Server struct {
	// Name is the server's FQDN ("xmpp1.example.com").
	Name string
	// Priority and Weight go into its SRV record.
	Priority, Weight uint16
	// SANs overrides the certificate's DNS SANs; nil means the domain and
	// Name, as a Call Bridge requires.
	SANs []string
	// Untrusted signs the certificate with a CA other than Lab.CA.
	Untrusted bool
	// Down stops the listener after start: its port refuses connections.
	Down bool
}

// Options describe a lab.
type Options struct {
	// Domain is the XMPP domain; default "example.com".
	Domain string
	// Components maps component addresses ("cb1.example.com") to secrets,
	// registered on every server.
	Components map[string]string
	Servers    []Server
	// SRV selects what DNS publishes at _xmpp-component._tcp.<Domain>:
	// SRVRecords (the default), SRVNone or SRVDot.
	SRV SRVMode
	// Logf receives the servers' diagnostics; nil discards them.
	Logf func(format string, args ...any)
}

// SRVMode selects the SRV record set published.
type SRVMode int

// SRV modes.
const (
	SRVRecords SRVMode = iota // one record per server
	SRVNone                   // no SRV record at all (NXDOMAIN)
	SRVDot                    // the single target "." (no service)
)

// Lab is a running set-up. Close it when done.
type Lab struct {
	Domain string
	// CA signed the certificates of every server not marked Untrusted.
	CA      *testpki.CA
	DNS     *dnstest.Server
	Servers []*componenttest.Server
	// Leaves are the servers' certificates, in the order of Options.Servers.
	Leaves []*testpki.Leaf
	// Names are the servers' FQDNs.
	Names []string
}

// Start starts the lab's servers. On error everything started is closed.
func Start(opts Options) (l *Lab, err error) {
	if opts.Domain == "" {
		opts.Domain = "example.com"
	}
	l = &Lab{Domain: opts.Domain}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if l.CA, err = testpki.NewCA(testpki.Template{CommonName: "cblink lab CA"}); err != nil {
		return nil, err
	}
	var other *testpki.CA
	var zone strings.Builder
	fmt.Fprintf(&zone, "$ORIGIN %s.\n$TTL 1\n", opts.Domain)
	switch opts.SRV {
	case SRVDot:
		zone.WriteString("_xmpp-component._tcp IN SRV 0 0 0 .\n")
	}
	for _, s := range opts.Servers {
		ca := l.CA
		if s.Untrusted {
			if other == nil {
				if other, err = testpki.NewCA(testpki.Template{CommonName: "some other CA"}); err != nil {
					return nil, err
				}
			}
			ca = other
		}
		sans := s.SANs
		if sans == nil {
			sans = []string{opts.Domain, s.Name}
		}
		leaf, err := ca.Issue(testpki.Template{CommonName: s.Name, DNSNames: sans})
		if err != nil {
			return nil, err
		}
		cert := leaf.TLSCertificate(true)
		srv, err := componenttest.NewServer(componenttest.Options{
			Domain:      opts.Domain,
			Certificate: &cert,
			CACert:      ca.Cert,
			CAKey:       ca.Key,
			Components:  opts.Components,
			Logf:        opts.Logf,
		})
		if err != nil {
			return nil, err
		}
		l.Servers = append(l.Servers, srv)
		l.Leaves = append(l.Leaves, leaf)
		l.Names = append(l.Names, s.Name)
		if s.Down {
			srv.Stop()
		}
		_, port, err := net.SplitHostPort(srv.Addr())
		if err != nil {
			return nil, err
		}
		if opts.SRV == SRVRecords {
			fmt.Fprintf(&zone, "_xmpp-component._tcp IN SRV %d %d %s %s.\n", s.Priority, s.Weight, port, s.Name)
		}
		fmt.Fprintf(&zone, "%s. IN A 127.0.0.1\n", s.Name)
	}
	if l.DNS, err = dnstest.NewServer(zone.String()); err != nil {
		return nil, err
	}
	return l, nil
}

// Pool returns a pool holding the lab's CA.
func (l *Lab) Pool() *x509.CertPool { return l.CA.Pool() }

// Server returns the server with the given FQDN.
func (l *Lab) Server(name string) (*componenttest.Server, error) {
	for i, n := range l.Names {
		if n == name {
			return l.Servers[i], nil
		}
	}
	return nil, errors.New("lab: no server " + name)
}

// Close stops every server and waits for their goroutines. It is
// idempotent.
func (l *Lab) Close() {
	for _, s := range l.Servers {
		s.Close()
	}
	if l.DNS != nil {
		l.DNS.Close()
	}
}
