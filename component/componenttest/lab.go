package componenttest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery/dnstest"
	"github.com/cblink/cblink/internal/testpki"
)

// LabServer describes one XMPP server of a Lab.
type LabServer struct {
	// Name is the server's FQDN ("xmpp1.example.com").
	Name string
	// Priority and Weight go into its SRV record.
	Priority, Weight uint16
	// SANs overrides the certificate's DNS SANs; nil means the domain and
	// Name, as a Call Bridge requires. The certificate also names 127.0.0.1
	// and ::1.
	SANs []string
	// Untrusted signs the certificate with a CA other than the lab's.
	Untrusted bool
	// Down stops the listener after start: its port refuses connections
	// until StartServer.
	Down bool
}

// LabOptions describe a Lab.
type LabOptions struct {
	// Domain is the XMPP domain; default "example.com".
	Domain string
	// Name is the Call Bridge's unique name; default "cb1". The component
	// address Name.Domain is registered on every server.
	Name string
	// Secret is the shared secret; default a random one.
	Secret string
	// Servers are the XMPP servers; default one, xmpp1.<Domain>, priority
	// 10.
	Servers []LabServer
	// SRV selects what DNS publishes at _xmpp-component._tcp.<Domain>:
	// SRVRecords (the default), SRVNone or SRVDot.
	SRV SRVMode
	// Logf receives the servers' diagnostics; nil discards them.
	Logf func(format string, args ...any)

	// Certificate and CACert, when both set, replace the in-memory CA:
	// every server serves Certificate (whose SANs must name the domain and
	// each server, as testdata/pki/server.pem does), and CACert is the root
	// that Pool and RootPEM give. The Servers' SANs and Untrusted are then
	// not used. Use it to run a lab whose CA file a user already has.
	Certificate *tls.Certificate
	CACert      *x509.Certificate

	// ServerOptions are the Options of every server (AcceptDuplicates,
	// timeouts, MaxStanzaSize, Faults, Plain, TLSConfig...), except what
	// the lab sets itself: Domain, Addr, the certificate (DNSNames, IPs,
	// Certificate, CACert, CAKey) and Logf when Logf above is set.
	// Components are registered besides the lab's own component.
	ServerOptions Options
}

// SRVMode selects the SRV record set a Lab publishes.
type SRVMode int

// SRV modes.
const (
	SRVRecords SRVMode = iota // one record per server
	SRVNone                   // no SRV record at all (NXDOMAIN)
	SRVDot                    // the single target "." (no service)
)

// Lab is a running set-up of XMPP servers behind one DNS server: several
// Servers that accept the same component, with certificates from one
// in-memory CA naming the XMPP domain and each server, and a dnstest
// server publishing their _xmpp-component._tcp SRV records (RFC 2782).
// Its methods are safe for concurrent use. Close it when done.
// callbridgetest builds on it for tests of whole Call Bridges.
type Lab struct {
	// Domain is the XMPP domain, Name the Call Bridge's unique name and
	// Addr its component address (Name.Domain).
	Domain, Name, Addr string
	// DNS is the name server; publish more records with DNS.AddZone.
	DNS *dnstest.Server
	// Servers are the XMPP servers, in the order of Options.Servers;
	// Names their FQDNs.
	Servers []*Server
	Names   []string

	secret string
	users  *inboxes
	ca     *testpki.CA // Key is nil with LabOptions.Certificate
	certs  []*x509.Certificate
	joins  atomic.Int64

	closeOnce sync.Once
}

// NewLab starts a lab, its servers and its DNS server, as
// httptest.NewServer starts a server (LabServer.Down makes a server start
// stopped). On error everything started is closed.
func NewLab(opts LabOptions) (l *Lab, err error) {
	if opts.Domain == "" {
		opts.Domain = "example.com"
	}
	if opts.Name == "" {
		opts.Name = "cb1"
	}
	if opts.Secret == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		opts.Secret = hex.EncodeToString(b[:])
	}
	if opts.Servers == nil {
		opts.Servers = []LabServer{{Name: "xmpp1." + opts.Domain, Priority: 10}}
	}
	l = &Lab{Domain: opts.Domain, Name: opts.Name, Addr: opts.Name + "." + opts.Domain, secret: opts.Secret, users: newInboxes()}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	fixed := opts.Certificate != nil && opts.CACert != nil
	if fixed {
		l.ca = &testpki.CA{Cert: opts.CACert}
	} else if l.ca, err = testpki.NewCA(testpki.Template{CommonName: "cblink lab CA"}); err != nil {
		return nil, err
	}
	var other *testpki.CA
	var zone strings.Builder
	fmt.Fprintf(&zone, "$ORIGIN %s.\n$TTL 1\n", opts.Domain)
	if opts.SRV == SRVDot {
		zone.WriteString("_xmpp-component._tcp IN SRV 0 0 0 .\n")
	}
	for _, s := range opts.Servers {
		srvOpts := opts.ServerOptions
		srvOpts.Domain, srvOpts.Addr = opts.Domain, ""
		srvOpts.Components = maps.Clone(srvOpts.Components)
		if srvOpts.Components == nil {
			srvOpts.Components = map[string]string{}
		}
		srvOpts.Components[l.Addr] = opts.Secret
		srvOpts.DNSNames, srvOpts.IPs = nil, nil
		srvOpts.Certificate, srvOpts.CACert, srvOpts.CAKey = nil, nil, nil
		if opts.Logf != nil {
			srvOpts.Logf = opts.Logf
		}
		var leafCert *x509.Certificate
		if fixed {
			if leafCert, err = x509.ParseCertificate(opts.Certificate.Certificate[0]); err != nil {
				return nil, fmt.Errorf("componenttest: LabOptions.Certificate: %w", err)
			}
			srvOpts.Certificate, srvOpts.CACert = opts.Certificate, opts.CACert
		} else {
			if leafCert, err = l.issue(opts, s, &other, &srvOpts); err != nil {
				return nil, err
			}
		}
		srv, err := NewServer(srvOpts)
		if err != nil {
			return nil, err
		}
		srv.setHooks(func(h *hooks) { h.users = l.users })
		l.Servers = append(l.Servers, srv)
		l.certs = append(l.certs, leafCert)
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

// issue makes server s's certificate from the lab CA (or from another CA,
// made once into *other, for an Untrusted server) and sets it in o.
func (l *Lab) issue(opts LabOptions, s LabServer, other **testpki.CA, o *Options) (*x509.Certificate, error) {
	ca := l.ca
	if s.Untrusted {
		if *other == nil {
			c, err := testpki.NewCA(testpki.Template{CommonName: "some other CA"})
			if err != nil {
				return nil, err
			}
			*other = c
		}
		ca = *other
	}
	sans := s.SANs
	if sans == nil {
		sans = []string{opts.Domain, s.Name}
	}
	// Loopback IP SANs too, as NewServer's own certificates have, so that a
	// redirect to an address ("127.0.0.1:port") can be checked.
	leaf, err := ca.Issue(testpki.Template{CommonName: s.Name, DNSNames: sans,
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
	if err != nil {
		return nil, err
	}
	cert := leaf.TLSCertificate(true)
	o.Certificate, o.CACert, o.CAKey = &cert, ca.Cert, ca.Key
	return leaf.Cert, nil
}

// Secret returns the shared secret registered on the servers.
func (l *Lab) Secret() component.Secret { return component.NewSecret(l.secret) }

// Pool returns a pool holding the lab CA.
func (l *Lab) Pool() *x509.CertPool { return l.ca.Pool() }

// RootPEM returns the lab CA's certificate in PEM, for a CA bundle file.
func (l *Lab) RootPEM() []byte { return l.ca.RootPEM() }

// Certificate returns the certificate of the server with the given FQDN.
func (l *Lab) Certificate(name string) (*x509.Certificate, error) {
	i, err := l.index(name)
	if err != nil {
		return nil, err
	}
	return l.certs[i], nil
}

// Server returns the server with the given FQDN.
func (l *Lab) Server(name string) (*Server, error) {
	i, err := l.index(name)
	if err != nil {
		return nil, err
	}
	return l.Servers[i], nil
}

func (l *Lab) index(name string) (int, error) {
	for i, n := range l.Names {
		if n == name {
			return i, nil
		}
	}
	return 0, errors.New("componenttest: no server " + name)
}

// StopServer makes the server with the given FQDN crash: its listener
// closes and its connections drop without a closing tag, as Prosody and
// ejabberd do when stopped.
func (l *Lab) StopServer(name string) error {
	s, err := l.Server(name)
	if err != nil {
		return err
	}
	s.Stop()
	s.CloseClientConnections()
	return nil
}

// StartServer makes a stopped server listen again on the same port.
func (l *Lab) StartServer(name string) error {
	s, err := l.Server(name)
	if err != nil {
		return err
	}
	return s.Start()
}

// Join sends a join request through the server with the given FQDN, as a
// web user on that server would (From defaults to guest@<domain>/web, ID
// to a fresh one), and returns the bridge's answer: a result, or the
// refusal as a stanza.Error. It waits (until ctx ends) for the component
// to have a link to that server. StartJoin does not wait for the answer.
func (l *Lab) Join(ctx context.Context, server string, req *component.JoinRequest) (*component.JoinResult, error) {
	p, err := l.StartJoin(ctx, server, req)
	if err != nil {
		return nil, err
	}
	res, err := p.Wait(ctx)
	if ctx.Err() != nil && err == ctx.Err() {
		if r, ok := p.c.abandon(p.ID, p.w); ok { // answered meanwhile
			p.settle(r, nil)
			return p.res, p.err
		}
	}
	return res, err
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
	l.closeOnce.Do(func() { close(l.users.closed) })
}
