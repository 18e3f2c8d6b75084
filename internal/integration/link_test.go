//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/tlsverify"
)

// linkOptions says how dialComponent reaches a server, as a Call Bridge
// would after discovery.
type linkOptions struct {
	// Addr is the "ip:port" to dial: an SRV target's address and port,
	// typically a prosody's TLSAddr().
	Addr string
	// ServerName is the FQDN the certificate must carry besides the domain
	// (the SRV target).
	ServerName string
	// Roots are the trusted CAs.
	Roots *x509.CertPool
	// Name and Secret authenticate the component; Name defaults to
	// componentName, Secret to defaultSecret.
	Name, Secret string
	// Handler receives incoming stanzas; nil lets the session answer pings
	// only.
	Handler *component.Mux
	// Wrap, when set, wraps the TLS connection before the handshake (to
	// record the bytes).
	Wrap func(net.Conn) net.Conn
}

// linkTiming splits the time to bring a link up.
type linkTiming struct {
	Dial, TLS, Handshake time.Duration
}

func (l linkTiming) String() string {
	return fmt.Sprintf("tcp %v, tls %v, xep-0114 %v", l.Dial, l.TLS, l.Handshake)
}

// linkTo fills the linkOptions for the direct TLS port of p.
func linkTo(p *prosody) linkOptions {
	return linkOptions{Addr: p.TLSAddr(), ServerName: p.FQDN, Roots: p.PKI.Pool}
}

// dialComponent dials opts.Addr, sets up TLS from the first byte with the
// certificate checked by tlsverify (domain example.com, server name
// opts.ServerName, SNI the domain) and runs the XEP-0114 handshake. On
// success the session is closed in t.Cleanup.
func dialComponent(ctx context.Context, t testing.TB, opts linkOptions) (*component.Session, linkTiming, error) {
	t.Helper()
	var tm linkTiming
	if opts.Name == "" {
		opts.Name = componentName
	}
	if opts.Secret == "" {
		opts.Secret = defaultSecret
	}
	tlsConf, err := tlsverify.Config{Domain: domain, ServerName: opts.ServerName, Roots: opts.Roots}.TLSConfig("")
	if err != nil {
		return nil, tm, err
	}
	begin := time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, tm, err
	}
	tm.Dial = time.Since(begin)
	begin = time.Now()
	conn := tls.Client(raw, tlsConf)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, tm, err
	}
	tm.TLS = time.Since(begin)
	begin = time.Now()
	var link net.Conn = conn
	if opts.Wrap != nil {
		link = opts.Wrap(conn)
	}
	s, err := component.NewSession(ctx, link, component.Config{
		Name: opts.Name, Domain: domain, Secret: component.NewSecret(opts.Secret), Handler: opts.Handler,
	})
	if err != nil {
		return nil, tm, err // NewSession closed conn
	}
	tm.Handshake = time.Since(begin)
	t.Cleanup(func() { s.Close() })
	return s, tm, nil
}
