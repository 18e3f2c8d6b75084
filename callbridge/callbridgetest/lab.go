// Package callbridgetest starts a complete Call Bridge set-up on loopback,
// for testing programs built on package callbridge the way
// net/http/httptest serves tests of HTTP handlers: in-process XMPP servers
// that accept XEP-0114 components (componenttest), with certificates from
// one in-memory CA naming the XMPP domain and each server, behind an
// in-process DNS server (dnstest) publishing their
// _xmpp-component._tcp SRV records (RFC 2782).
//
//	lab, err := callbridgetest.Start(callbridgetest.Options{
//		Servers: []callbridgetest.Server{
//			{Name: "xmpp1.example.com", Priority: 10},
//			{Name: "xmpp2.example.com", Priority: 20},
//		},
//	})
//	if err != nil { ... }
//	defer lab.Close()
//	b, _ := callbridge.New(lab.Config()) // SRV, TLS and the secret all set
//	b.HandleJoin(myHandler)
//	go b.Run(ctx)
//	st, _ := callbridgetest.WaitState(ctx, b, callbridge.Connected)
//	res, err := lab.Join(ctx, st.Server, &component.JoinRequest{Call: "100"})
//
// It imports no testing package, so a program's own demo mode can use it
// too.
package callbridgetest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
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
	// Untrusted signs the certificate with a CA other than the lab's.
	Untrusted bool
	// Down stops the listener after start: its port refuses connections
	// until StartServer.
	Down bool
}

// Options describe a lab.
type Options struct {
	// Domain is the XMPP domain; default "example.com".
	Domain string
	// Name is the Call Bridge's unique name; default "cb1". The component
	// address Name.Domain is registered on every server.
	Name string
	// Secret is the shared secret; default a random one.
	Secret string
	// Servers are the XMPP servers; default one, xmpp1.<Domain>, priority
	// 10.
	Servers []Server
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

// Lab is a running set-up. Its methods are safe for concurrent use. Close
// it when done.
type Lab struct {
	// Domain is the XMPP domain, Name the Call Bridge's unique name and
	// Addr its component address (Name.Domain).
	Domain, Name, Addr string
	// DNS is the name server; publish more records with DNS.AddZone.
	DNS *dnstest.Server
	// Servers are the XMPP servers, in the order of Options.Servers;
	// Names their FQDNs.
	Servers []*componenttest.Server
	Names   []string

	secret string
	ca     *testpki.CA
	leaves []*testpki.Leaf
	joins  atomic.Int64
}

// Start starts the lab's servers. On error everything started is closed.
func Start(opts Options) (l *Lab, err error) {
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
		opts.Servers = []Server{{Name: "xmpp1." + opts.Domain, Priority: 10}}
	}
	l = &Lab{Domain: opts.Domain, Name: opts.Name, Addr: opts.Name + "." + opts.Domain, secret: opts.Secret}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if l.ca, err = testpki.NewCA(testpki.Template{CommonName: "cblink lab CA"}); err != nil {
		return nil, err
	}
	var other *testpki.CA
	var zone strings.Builder
	fmt.Fprintf(&zone, "$ORIGIN %s.\n$TTL 1\n", opts.Domain)
	if opts.SRV == SRVDot {
		zone.WriteString("_xmpp-component._tcp IN SRV 0 0 0 .\n")
	}
	for _, s := range opts.Servers {
		ca := l.ca
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
			Components:  map[string]string{l.Addr: opts.Secret},
			Logf:        opts.Logf,
		})
		if err != nil {
			return nil, err
		}
		l.Servers = append(l.Servers, srv)
		l.leaves = append(l.leaves, leaf)
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

// Config returns a ready callbridge.Config for the lab: the name, domain
// and secret, the lab CA as the only trusted root, the lab's DNS server,
// and short timeouts and backoff suited to tests. Change what the test
// needs.
func (l *Lab) Config() callbridge.Config {
	return callbridge.Config{
		Name:        l.Name,
		Domain:      l.Domain,
		Secret:      component.Secret(l.secret),
		RootCAs:     l.Pool(),
		NameServers: []string{l.DNS.Addr()},
		DialTimeout: 2 * time.Second,
		Backoff:     callbridge.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

// Secret returns the shared secret registered on the servers.
func (l *Lab) Secret() component.Secret { return component.Secret(l.secret) }

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
	return l.leaves[i].Cert, nil
}

// Server returns the server with the given FQDN.
func (l *Lab) Server(name string) (*componenttest.Server, error) {
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
	return 0, errors.New("callbridgetest: no server " + name)
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
// refusal as a stanza.Error. The bridge must be connected to that server.
func (l *Lab) Join(ctx context.Context, server string, req *component.JoinRequest) (*component.JoinResult, error) {
	s, err := l.Server(server)
	if err != nil {
		return nil, err
	}
	conn, err := s.WaitConn(ctx, l.Addr)
	if err != nil {
		return nil, err
	}
	r := *req
	if r.From.Domainpart() == "" {
		r.From = jid.MustParse("guest@" + l.Domain + "/web")
	}
	if r.ID == "" {
		r.ID = fmt.Sprintf("lab-join-%d", l.joins.Add(1))
	}
	raw, err := conn.SendIQ(ctx, component.MarshalJoinIQ(&r, jid.MustParse(l.Addr)))
	if err != nil {
		return nil, err
	}
	return component.ParseJoinResponse(raw)
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

// WaitState waits until b is in state want, or ctx ends, and returns the
// status it saw.
func WaitState(ctx context.Context, b *callbridge.Bridge, want callbridge.State) (callbridge.Status, error) {
	return WaitStatus(ctx, b, func(st callbridge.Status) bool { return st.State == want })
}

// WaitStatus waits until ok(b.Status()) holds, or ctx ends.
func WaitStatus(ctx context.Context, b *callbridge.Bridge, ok func(callbridge.Status) bool) (callbridge.Status, error) {
	for {
		st := b.Status()
		if ok(st) {
			return st, nil
		}
		if !b.WaitForStateChange(ctx, st.State) {
			return st, fmt.Errorf("callbridge: still %s on %q (last error: %v): %w", st.State, st.Server, st.LastErr, ctx.Err())
		}
	}
}
