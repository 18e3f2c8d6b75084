package tlsverify_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cblink/cblink/internal/testpki"
	"github.com/cblink/cblink/tlsverify"
)

// A Call Bridge dials its XMPP server at 127.0.0.1 (a combined server
// configured as "localhost:5223"), so ServerName names the FQDN the
// certificate should carry. Here the certificate has the FQDN as a SAN but
// the XMPP domain only as its CN, and the handshake fails with an error that
// says so.
func ExampleConfig_TLSConfig() {
	ca := testpki.MustCA(testpki.Template{})
	leaf := ca.MustIssue(testpki.Template{CommonName: "example.com", DNSNames: []string{"xmpp1.example.com"}})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(true)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan struct{})
	go func() { // a stand-in XMPP server: handshake, then hang up
		defer close(done)
		if c, err := ln.Accept(); err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	defer func() { _ = ln.Close(); <-done }()

	cfg := tlsverify.Config{
		Domain:     "example.com",
		ServerName: "xmpp1.example.com",
		Roots:      ca.Pool(), // or RootsFile: "/etc/cblink/xmpp-ca.pem"
	}
	tlsConf, err := cfg.TLSConfig("") // SNI: the XMPP domain
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), tlsConf)
	if err == nil {
		conn.Close()
	}
	fmt.Println(err)

	var ne *tlsverify.NameError
	if errors.As(err, &ne) {
		for _, m := range ne.Missing {
			fmt.Printf("missing %s (%s)\n", m.Name, m.Role)
		}
	}
	// Output:
	// tlsverify: certificate of xmpp1.example.com lacks SAN "example.com" (XMPP domain); it names DNS:[xmpp1.example.com] (CN "example.com" is ignored: only SANs count)
	// missing example.com (XMPP domain)
}

func ExampleConfig_Verify() {
	ca := testpki.MustCA(testpki.Template{})
	leaf := ca.MustIssue(testpki.Template{DNSNames: []string{"*.example.com"}})
	cfg := tlsverify.Config{Domain: "example.com", ServerName: "xmpp1.example.com", Roots: ca.Pool()}

	err := cfg.Verify(chainOf(leaf))
	fmt.Println(errors.Is(err, tlsverify.ErrNameMismatch))
	fmt.Println(err)

	cfg.Policy = tlsverify.RequireServerName
	fmt.Println(cfg.Verify(chainOf(leaf)))
	// Output:
	// true
	// tlsverify: certificate of xmpp1.example.com lacks SAN "example.com" (XMPP domain); it names DNS:[*.example.com]; "*.example.com" does not cover "example.com" itself
	// <nil>
}

func ExampleSummarize() {
	ca := testpki.MustCA(testpki.Template{CommonName: "Example Internal CA"})
	leaf := ca.MustIssue(testpki.Template{
		CommonName: "xmpp1.example.com",
		DNSNames:   []string{"example.com", "xmpp1.example.com"},
		IPs:        []net.IP{net.ParseIP("192.0.2.10")},
		NotBefore:  time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:   time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	s := tlsverify.Summarize(leaf.Cert)
	fmt.Println("subject:", s.Subject)
	fmt.Println("issuer: ", s.Issuer)
	fmt.Println("DNS:    ", s.DNSNames)
	fmt.Println("IP:     ", s.IPAddresses)
	fmt.Println("until:  ", s.NotAfter.Format(time.DateOnly))
	// s.String() prints all of this plus the SHA-256 fingerprint and the
	// SPKI pin (for Config.Pins), which differ on every run here.

	// Output:
	// subject: CN=xmpp1.example.com
	// issuer:  CN=Example Internal CA,O=cblink tests
	// DNS:     [example.com xmpp1.example.com]
	// IP:      [192.0.2.10]
	// until:   2027-01-01
}
