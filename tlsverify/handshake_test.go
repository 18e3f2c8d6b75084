package tlsverify_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testpki"
	"github.com/cblink/cblink/tlsverify"
)

// tlsServer is a direct-TLS listener on loopback that completes handshakes
// and records the SNI each client sent. It stands in for an XMPP server
// until component/componenttest exists.
type tlsServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	snis chan string
}

func startTLSServer(t *testing.T, cert tls.Certificate, maxVersion uint16) *tlsServer {
	t.Helper()
	s := &tlsServer{snis: make(chan string, 16)}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS10,
		MaxVersion:   maxVersion,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.snis <- hello.ServerName
			return nil, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	require.NoError(t, err)
	s.ln = ln
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = c.(*tls.Conn).Handshake() // the client decides; its error is what we test
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *tlsServer) sni(t *testing.T) string {
	t.Helper()
	select {
	case n := <-s.snis:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("server saw no ClientHello")
		return ""
	}
}

func handshake(t *testing.T, addr string, conf *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	c := tls.Client(raw, conf)
	defer c.Close()
	err = c.HandshakeContext(ctx)
	return c.ConnectionState(), err
}

func TestTLSHandshake(t *testing.T) {
	good := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	noFQDN := root.MustIssue(testpki.Template{CommonName: "xmpp1.example.com", DNSNames: []string{"example.com"}})
	foreign := otherRoot.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	viaInter := inter.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})

	tests := []struct {
		name     string
		cert     tls.Certificate
		config   func(*tlsverify.Config)
		sni      string // argument to TLSConfig
		maxVer   uint16
		wantSNI  string
		want     error // nil for success
		checkErr func(t *testing.T, err error)
	}{
		{name: "good certificate", cert: good.TLSCertificate(true), wantSNI: "example.com"},
		{
			name: "certificate lacks the FQDN", cert: noFQDN.TLSCertificate(true), wantSNI: "example.com",
			want: tlsverify.ErrNameMismatch,
			checkErr: func(t *testing.T, err error) {
				var ne *tlsverify.NameError
				require.ErrorAs(t, err, &ne, "the typed error survives the handshake")
				require.Len(t, ne.Missing, 1)
				assert.Equal(t, "xmpp1.example.com", ne.Missing[0].Name)
				assert.Equal(t, tlsverify.RoleServerName, ne.Missing[0].Role)
				assert.Equal(t, []string{"xmpp1.example.com"}, ne.InCommonNameOnly)
			},
		},
		{
			name: "unknown CA rejected despite InsecureSkipVerify on tls.Config", cert: foreign.TLSCertificate(true),
			wantSNI: "example.com", want: tlsverify.ErrUnknownAuthority,
		},
		{name: "intermediate sent by server", cert: viaInter.TLSCertificate(true), wantSNI: "example.com"},
		{
			name: "intermediate not sent by server", cert: viaInter.TLSCertificate(false),
			wantSNI: "example.com", want: tlsverify.ErrUnknownAuthority,
		},
		{name: "SNI overridden", cert: good.TLSCertificate(true), sni: "xmpp1.example.com.", wantSNI: "xmpp1.example.com"},
		{
			name: "IDN domain sent as A-label SNI", cert: root.MustIssue(testpki.Template{DNSNames: []string{"xn--bcher-kva.example"}}).TLSCertificate(true),
			config:  func(c *tlsverify.Config) { c.Domain, c.Policy = "bücher.example", tlsverify.RequireDomain },
			wantSNI: "xn--bcher-kva.example",
		},
		{
			name: "IP literal SNI is not sent", cert: root.MustIssue(testpki.Template{DNSNames: []string{"example.com"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}).TLSCertificate(true),
			config: func(c *tlsverify.Config) { c.ServerName = "127.0.0.1" },
			sni:    "127.0.0.1", wantSNI: "",
		},
		{
			name: "insecure skip accepts a foreign certificate", cert: foreign.TLSCertificate(true),
			config:  func(c *tlsverify.Config) { c.InsecureSkipAllVerification = true },
			wantSNI: "example.com",
		},
		{
			name: "pinned self-issued certificate", cert: foreign.TLSCertificate(true),
			config:  func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{pinOf(foreign.Cert)} },
			wantSNI: "example.com",
		},
		{
			name: "TLS 1.1 server refused", cert: good.TLSCertificate(true), maxVer: tls.VersionTLS11, wantSNI: "example.com",
			checkErr: func(t *testing.T, err error) {
				require.Error(t, err)
				var ne *tlsverify.NameError
				var ce *tlsverify.ChainError
				assert.False(t, errors.As(err, &ne) || errors.As(err, &ce), "refused on version, before any certificate check")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxVer := tt.maxVer
			if maxVer == 0 {
				maxVer = tls.VersionTLS13
			}
			srv := startTLSServer(t, tt.cert, maxVer)
			cfg := baseConfig()
			cfg.Now = nil // real clock: the handshake happens now
			if tt.config != nil {
				tt.config(&cfg)
			}
			conf, err := cfg.TLSConfig(tt.sni)
			require.NoError(t, err)
			assert.Equal(t, uint16(tls.VersionTLS12), conf.MinVersion)
			assert.True(t, conf.InsecureSkipVerify, "verification is done by VerifyConnection")

			state, err := handshake(t, srv.ln.Addr().String(), conf)
			assert.Equal(t, tt.wantSNI, srv.sni(t))
			switch {
			case tt.want != nil:
				require.ErrorIs(t, err, tt.want)
			case tt.checkErr == nil:
				require.NoError(t, err)
				assert.True(t, state.HandshakeComplete)
				assert.GreaterOrEqual(t, state.Version, uint16(tls.VersionTLS12))
			}
			if tt.checkErr != nil {
				tt.checkErr(t, err)
			}
		})
	}
}

// TestExplainHandshakeError: a server that answers the ClientHello with XML
// speaks plain XMPP; any other non-TLS answer keeps crypto/tls's error.
func TestExplainHandshakeError(t *testing.T) {
	for _, tc := range []struct {
		answer string
		plain  bool
	}{
		{"<?xml version='1.0'?><stream:stream>", true},
		{"\n<stream:stream xmlns='jabber:client'>", true},
		{"SSH-2.0-OpenSSH_9.2\r\n", false},
		{"HTTP/1.1 400 Bad Request\r\n\r\n", false},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			go func() {
				defer s.Close()
				_, _ = s.Read(make([]byte, 4096))
				_, _ = io.WriteString(s, tc.answer)
			}()
			herr := tls.Client(c, &tls.Config{ServerName: "example.com"}).Handshake()
			require.Error(t, herr)
			err := tlsverify.ExplainHandshakeError(herr)
			assert.ErrorIs(t, err, herr, "the handshake error is kept")
			if tc.plain {
				require.ErrorIs(t, err, tlsverify.ErrPlainXMPP)
				assert.Contains(t, err.Error(), "usually 5223")
			} else {
				assert.NotErrorIs(t, err, tlsverify.ErrPlainXMPP)
				assert.Equal(t, herr, err)
			}
		})
	}
	assert.Nil(t, tlsverify.ExplainHandshakeError(nil))
}

// TestExplainUnrecognizedName: a server that serves no host of the SNI
// sent answers with the alert unrecognized_name (crypto/tls's server does,
// as Prosody does): the error says so and keeps crypto/tls's.
func TestExplainUnrecognizedName(t *testing.T) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{}, nil // no certificate for any name
		},
	})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { // ends with ln
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	herr := tls.Client(c, &tls.Config{ServerName: "example.net"}).Handshake()
	require.Error(t, herr)
	err = tlsverify.ExplainHandshakeError(herr)
	require.ErrorIs(t, err, tlsverify.ErrUnrecognizedName)
	assert.ErrorIs(t, err, herr, "the handshake error is kept")
	assert.Contains(t, err.Error(), "check the XMPP domain")
	assert.Contains(t, err.Error(), "unrecognized name")
}
