package tlsverify_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testpki"
	"github.com/cblink/cblink/tlsverify"
)

var (
	now       = testpki.Epoch.Add(24 * time.Hour)
	root      = testpki.MustCA(testpki.Template{})
	otherRoot = testpki.MustCA(testpki.Template{CommonName: "some other root"})
	inter     = mustInter(root, testpki.Template{CommonName: "cblink test intermediate CA"})
)

func mustInter(ca *testpki.CA, t testpki.Template) *testpki.CA {
	i, err := ca.NewIntermediate(t)
	if err != nil {
		panic(err)
	}
	return i
}

// chainOf returns the leaf followed by its intermediates, as a TLS peer
// sends them.
func chainOf(l *testpki.Leaf) []*x509.Certificate {
	return append([]*x509.Certificate{l.Cert}, l.Chain...)
}

func pinOf(c *x509.Certificate) string { return tlsverify.Summarize(c).SPKIPin }

// baseConfig is the usual Call Bridge set-up: domain example.com, server
// xmpp1.example.com, the test root trusted, time fixed.
func baseConfig() tlsverify.Config {
	return tlsverify.Config{
		Domain:     "example.com",
		ServerName: "xmpp1.example.com",
		Roots:      root.Pool(),
		Now:        func() time.Time { return now },
	}
}

func TestVerify(t *testing.T) {
	good := root.MustIssue(testpki.Template{CommonName: "xmpp1.example.com", DNSNames: []string{"example.com", "xmpp1.example.com"}})
	noDomain := root.MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}})
	noFQDN := root.MustIssue(testpki.Template{DNSNames: []string{"example.com"}})
	wildOnly := root.MustIssue(testpki.Template{DNSNames: []string{"*.example.com"}})
	wildAndDomain := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "*.example.com"}})
	upper := root.MustIssue(testpki.Template{DNSNames: []string{"EXAMPLE.COM.", "Xmpp1.Example.Com"}})
	cnOnly := root.MustIssue(testpki.Template{CommonName: "example.com", DNSNames: []string{"xmpp1.example.com"}})
	idn := root.MustIssue(testpki.Template{DNSNames: []string{"xn--bcher-kva.example", "*.xn--bcher-kva.example"}})
	withIP := root.MustIssue(testpki.Template{DNSNames: []string{"example.com"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}})
	ipAsDNS := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "127.0.0.1"}})
	publicWild := root.MustIssue(testpki.Template{DNSNames: []string{"*.co.uk", "*.com"}})
	expired := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}, NotBefore: testpki.Epoch, NotAfter: now.Add(-time.Hour)})
	future := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}, NotBefore: now.Add(time.Hour)})
	foreign := otherRoot.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	viaInter := inter.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	clientOnly := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	otherInter := mustInter(otherRoot, testpki.Template{CommonName: "other intermediate"})
	foreignViaInter := otherInter.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	expiredInter := mustInter(root, testpki.Template{NotBefore: testpki.Epoch, NotAfter: now.Add(-time.Minute)})
	underExpiredInter := expiredInter.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}, NotBefore: testpki.Epoch, NotAfter: now.Add(time.Hour)})

	type check func(t *testing.T, err error)
	missing := func(want ...tlsverify.RequiredName) check {
		return func(t *testing.T, err error) {
			var ne *tlsverify.NameError
			require.ErrorAs(t, err, &ne)
			got := make([]tlsverify.RequiredName, len(ne.Missing))
			for i, m := range ne.Missing {
				got[i] = tlsverify.RequiredName{Name: m.Name, Role: m.Role}
			}
			assert.Equal(t, want, got)
		}
	}
	dom := tlsverify.RequiredName{Name: "example.com", Role: tlsverify.RoleDomain}
	fqdn := tlsverify.RequiredName{Name: "xmpp1.example.com", Role: tlsverify.RoleServerName}

	tests := []struct {
		name   string
		config func(*tlsverify.Config)
		chain  []*x509.Certificate
		want   error // nil for success
		check  check
	}{
		{name: "both names present", chain: chainOf(good)},
		{name: "domain missing", chain: chainOf(noDomain), want: tlsverify.ErrNameMismatch, check: missing(dom)},
		{name: "FQDN missing", chain: chainOf(noFQDN), want: tlsverify.ErrNameMismatch, check: missing(fqdn)},
		{name: "both missing", chain: chainOf(publicWild), want: tlsverify.ErrNameMismatch, check: missing(dom, fqdn)},
		{name: "wildcard covers FQDN but not bare domain", chain: chainOf(wildOnly), want: tlsverify.ErrNameMismatch, check: missing(dom)},
		{name: "wildcard covers FQDN with domain listed", chain: chainOf(wildAndDomain)},
		{
			name:   "wildcard does not match two labels",
			config: func(c *tlsverify.Config) { c.ServerName = "node1.xmpp.example.com" },
			chain:  chainOf(wildAndDomain), want: tlsverify.ErrNameMismatch,
			check: missing(tlsverify.RequiredName{Name: "node1.xmpp.example.com", Role: tlsverify.RoleServerName}),
		},
		{
			name:   "wildcard over public suffix never matches",
			config: func(c *tlsverify.Config) { c.Domain, c.ServerName = "example.co.uk", "example.com" },
			chain:  chainOf(publicWild), want: tlsverify.ErrNameMismatch,
			check: missing(tlsverify.RequiredName{Name: "example.co.uk", Role: tlsverify.RoleDomain}, tlsverify.RequiredName{Name: "example.com", Role: tlsverify.RoleServerName}),
		},
		{name: "uppercase and trailing dots in SANs", chain: chainOf(upper)},
		{
			name:   "uppercase and trailing dots in config",
			config: func(c *tlsverify.Config) { c.Domain, c.ServerName = "EXAMPLE.com.", "xmpp1.EXAMPLE.COM." },
			chain:  chainOf(good),
		},
		{
			name: "name only in CN", chain: chainOf(cnOnly), want: tlsverify.ErrNameMismatch,
			check: func(t *testing.T, err error) {
				missing(dom)(t, err)
				var ne *tlsverify.NameError
				require.ErrorAs(t, err, &ne)
				assert.Equal(t, "example.com", ne.CommonName)
				assert.Equal(t, []string{"example.com"}, ne.InCommonNameOnly)
				assert.Equal(t, []string{"xmpp1.example.com"}, ne.DNSNames)
			},
		},
		{
			name:   "IDN in Unicode matches A-label SANs",
			config: func(c *tlsverify.Config) { c.Domain, c.ServerName = "Bücher.example", "xmpp.bücher.EXAMPLE." },
			chain:  chainOf(idn),
		},
		{
			name: "IDN in A-label form",
			config: func(c *tlsverify.Config) {
				c.Domain, c.ServerName = "xn--bcher-kva.example", "xmpp.xn--bcher-kva.example"
			},
			chain: chainOf(idn),
		},
		{
			name:   "IDN differing only by diacritic",
			config: func(c *tlsverify.Config) { c.Domain, c.ServerName = "bucher.example", "xmpp.bücher.example" },
			chain:  chainOf(idn), want: tlsverify.ErrNameMismatch,
			check: missing(tlsverify.RequiredName{Name: "bucher.example", Role: tlsverify.RoleDomain}),
		},
		{
			name:   "IPv4 dialled with IP SAN",
			config: func(c *tlsverify.Config) { c.ServerName = "127.0.0.1" },
			chain:  chainOf(withIP),
		},
		{
			name:   "IPv6 dialled with IP SAN",
			config: func(c *tlsverify.Config) { c.ServerName = "::1" },
			chain:  chainOf(withIP),
		},
		{
			name:   "IP dialled, only a DNS SAN spells it",
			config: func(c *tlsverify.Config) { c.ServerName = "127.0.0.1" },
			chain:  chainOf(ipAsDNS), want: tlsverify.ErrNameMismatch,
			check: func(t *testing.T, err error) {
				var ne *tlsverify.NameError
				require.ErrorAs(t, err, &ne)
				require.Len(t, ne.Missing, 1)
				assert.True(t, ne.Missing[0].IP.Equal(net.ParseIP("127.0.0.1")))
				assert.Equal(t, tlsverify.RoleServerName, ne.Missing[0].Role)
			},
		},
		{
			name:   "IP dialled without any IP SAN",
			config: func(c *tlsverify.Config) { c.ServerName = "192.0.2.1" },
			chain:  chainOf(withIP), want: tlsverify.ErrNameMismatch,
			check: missing(tlsverify.RequiredName{Name: "192.0.2.1", Role: tlsverify.RoleServerName}),
		},
		{
			name: "expired", chain: chainOf(expired), want: tlsverify.ErrExpired,
			check: func(t *testing.T, err error) {
				var ce *tlsverify.ChainError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, expired.Cert, ce.Cert)
				assert.Equal(t, now, ce.Now)
				assert.NotErrorIs(t, err, tlsverify.ErrNotYetValid)
			},
		},
		{
			name: "not yet valid", chain: chainOf(future), want: tlsverify.ErrNotYetValid,
			check: func(t *testing.T, err error) {
				var ce *tlsverify.ChainError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, future.Cert.NotBefore, ce.Cert.NotBefore)
				assert.NotErrorIs(t, err, tlsverify.ErrExpired)
			},
		},
		{
			name: "expired intermediate", chain: chainOf(underExpiredInter), want: tlsverify.ErrExpired,
			check: func(t *testing.T, err error) {
				var ce *tlsverify.ChainError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, expiredInter.Cert, ce.Cert)
			},
		},
		{
			name: "unknown CA", chain: chainOf(foreign), want: tlsverify.ErrUnknownAuthority,
			check: func(t *testing.T, err error) {
				var ce *tlsverify.ChainError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, otherRoot.Cert.Subject.String(), ce.Cert.Issuer.String())
				var ua x509.UnknownAuthorityError
				assert.ErrorAs(t, err, &ua, "the crypto/x509 error stays reachable")
				assert.NotErrorIs(t, err, tlsverify.ErrPinMismatch)
			},
		},
		{
			name: "unknown root above a supplied intermediate", chain: chainOf(foreignViaInter), want: tlsverify.ErrUnknownAuthority,
			check: func(t *testing.T, err error) {
				var ce *tlsverify.ChainError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, otherInter.Cert, ce.Cert, "names the top of the chain sent, whose issuer is unknown")
				assert.Equal(t, foreignViaInter.Cert, ce.Leaf)
				assert.Equal(t, 1, ce.Intermediates)
			},
		},
		{
			name:   "expired and unpinned is only expired",
			config: func(c *tlsverify.Config) { c.Pins = []string{pinOf(good.Cert)} },
			chain:  chainOf(expired), want: tlsverify.ErrExpired,
			check: func(t *testing.T, err error) {
				assert.NotErrorIs(t, err, tlsverify.ErrPinMismatch)
			},
		},
		{name: "intermediate supplied", chain: chainOf(viaInter)},
		{
			name: "intermediate missing", chain: []*x509.Certificate{viaInter.Cert}, want: tlsverify.ErrUnknownAuthority,
			check: func(t *testing.T, err error) {
				var ce *tlsverify.ChainError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, 0, ce.Intermediates)
				assert.Equal(t, inter.Cert.Subject.String(), ce.Cert.Issuer.String())
			},
		},
		{name: "client-auth only key usage", chain: chainOf(clientOnly), want: tlsverify.ErrKeyUsage},
		{name: "empty chain", chain: nil, want: tlsverify.ErrNoCertificate},
		{
			name:   "pin on leaf as extra anchor",
			config: func(c *tlsverify.Config) { c.Pins = []string{pinOf(foreign.Cert)} },
			chain:  chainOf(foreign),
		},
		{
			name:   "pin as extra anchor, roots already trust",
			config: func(c *tlsverify.Config) { c.Pins = []string{pinOf(foreign.Cert)} },
			chain:  chainOf(good),
		},
		{
			name:   "pin mismatch as extra anchor",
			config: func(c *tlsverify.Config) { c.Pins = []string{pinOf(good.Cert)} },
			chain:  chainOf(foreign), want: tlsverify.ErrUnknownAuthority,
			check: func(t *testing.T, err error) {
				assert.ErrorIs(t, err, tlsverify.ErrPinMismatch)
			},
		},
		{
			name:   "pin only, leaf pinned",
			config: func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{pinOf(foreign.Cert)} },
			chain:  chainOf(foreign),
		},
		{
			name:   "pin only, intermediate pinned",
			config: func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{pinOf(inter.Cert)} },
			chain:  chainOf(viaInter),
		},
		{
			name:   "pin only, mismatch even though the root is trusted elsewhere",
			config: func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{pinOf(foreign.Cert)} },
			chain:  chainOf(good), want: tlsverify.ErrPinMismatch,
			check: func(t *testing.T, err error) {
				assert.NotErrorIs(t, err, tlsverify.ErrUnknownAuthority)
			},
		},
		{
			name:   "pin only, pinned but expired",
			config: func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{pinOf(expired.Cert)} },
			chain:  chainOf(expired), want: tlsverify.ErrExpired,
		},
		{
			name:   "pin only, pinned but names missing",
			config: func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{pinOf(noDomain.Cert)} },
			chain:  chainOf(noDomain), want: tlsverify.ErrNameMismatch, check: missing(dom),
		},
		{
			name:   "pin in hex form",
			config: func(c *tlsverify.Config) { c.Roots, c.PinOnly, c.Pins = nil, true, []string{hexPin(foreign.Cert)} },
			chain:  chainOf(foreign),
		},
		{
			name:   "policy RequireDomain accepts a cert without the FQDN",
			config: func(c *tlsverify.Config) { c.Policy = tlsverify.RequireDomain },
			chain:  chainOf(noFQDN),
		},
		{
			name:   "policy RequireDomain still requires the domain",
			config: func(c *tlsverify.Config) { c.Policy = tlsverify.RequireDomain },
			chain:  chainOf(noDomain), want: tlsverify.ErrNameMismatch, check: missing(dom),
		},
		{
			name:   "policy RequireServerName accepts a cert without the domain",
			config: func(c *tlsverify.Config) { c.Policy, c.Domain = tlsverify.RequireServerName, "" },
			chain:  chainOf(noDomain),
		},
		{
			name:   "policy RequireServerName still requires the FQDN",
			config: func(c *tlsverify.Config) { c.Policy = tlsverify.RequireServerName },
			chain:  chainOf(noFQDN), want: tlsverify.ErrNameMismatch, check: missing(fqdn),
		},
		{
			name:   "domain equal to server name is required once with both roles",
			config: func(c *tlsverify.Config) { c.ServerName = "Example.com." },
			chain:  chainOf(noDomain), want: tlsverify.ErrNameMismatch,
			check: missing(tlsverify.RequiredName{Name: "example.com", Role: tlsverify.RoleDomain | tlsverify.RoleServerName}),
		},
		{
			name:   "insecure skip accepts anything",
			config: func(c *tlsverify.Config) { c.InsecureSkipAllVerification = true },
			chain:  chainOf(otherRoot.MustIssue(testpki.Template{CommonName: "nothing", NotAfter: testpki.Epoch.Add(time.Hour)})),
		},
		{
			name:   "insecure skip accepts an empty chain",
			config: func(c *tlsverify.Config) { c.InsecureSkipAllVerification = true },
		},
		{
			name: "roots from a PEM file",
			config: func(c *tlsverify.Config) {
				c.Roots, c.RootsFile = nil, writeFile(t, "roots.pem", append(otherRoot.RootPEM(), root.RootPEM()...))
			},
			chain: chainOf(viaInter),
		},
		{
			name:   "system roots do not trust a test CA",
			config: func(c *tlsverify.Config) { c.Roots = nil },
			chain:  chainOf(good), want: tlsverify.ErrUnknownAuthority,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.config != nil {
				tt.config(&cfg)
			}
			err := cfg.Verify(tt.chain)
			if tt.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.want)
				assert.NotErrorIs(t, err, tlsverify.ErrInvalidConfig)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

func hexPin(c *x509.Certificate) string {
	s := tlsverify.Summarize(c).SPKIPin
	b, err := base64Decode(s[len("sha256/"):])
	if err != nil {
		panic(err)
	}
	return hexColons(b)
}

func writeFile(t *testing.T, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

func TestConfigErrors(t *testing.T) {
	leaf := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	tests := []struct {
		name   string
		config func(*tlsverify.Config)
		want   error // besides ErrInvalidConfig
	}{
		{name: "no domain", config: func(c *tlsverify.Config) { c.Domain = "" }},
		{name: "no server name", config: func(c *tlsverify.Config) { c.ServerName = "" }},
		{name: "no domain for RequireDomain", config: func(c *tlsverify.Config) { c.Domain, c.Policy = "", tlsverify.RequireDomain }},
		{name: "no server name for RequireServerName", config: func(c *tlsverify.Config) { c.ServerName, c.Policy = "", tlsverify.RequireServerName }},
		{name: "unknown policy", config: func(c *tlsverify.Config) { c.Policy = 7 }},
		{name: "server name with port", config: func(c *tlsverify.Config) { c.ServerName = "xmpp1.example.com:5223" }},
		{name: "domain with space", config: func(c *tlsverify.Config) { c.Domain = "exa mple.com" }},
		{name: "empty label", config: func(c *tlsverify.Config) { c.Domain = "example..com" }},
		{name: "wildcard as reference", config: func(c *tlsverify.Config) { c.ServerName = "*.example.com" }},
		{name: "roots and roots file", config: func(c *tlsverify.Config) { c.RootsFile = writeFile(t, "r.pem", root.RootPEM()) }},
		{name: "pin only without pins", config: func(c *tlsverify.Config) { c.Roots, c.PinOnly = nil, true }},
		{name: "pin only with roots", config: func(c *tlsverify.Config) { c.PinOnly, c.Pins = true, []string{pinOf(leaf.Cert)} }},
		{name: "bad pin", config: func(c *tlsverify.Config) { c.Pins = []string{"sha256/notbase64!"} }},
		{name: "pin of wrong length", config: func(c *tlsverify.Config) { c.Pins = []string{"sha256/AAAA"} }},
		{name: "missing roots file", config: func(c *tlsverify.Config) { c.Roots, c.RootsFile = nil, filepath.Join(t.TempDir(), "nope.pem") }, want: os.ErrNotExist},
		{name: "roots file without certificates", config: func(c *tlsverify.Config) { c.Roots, c.RootsFile = nil, writeFile(t, "k.pem", leaf.KeyPEM()) }},
		{name: "roots file with a corrupt certificate", config: func(c *tlsverify.Config) {
			c.Roots, c.RootsFile = nil, writeFile(t, "bad.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.config(&cfg)
			err := cfg.Verify(chainOf(leaf))
			require.ErrorIs(t, err, tlsverify.ErrInvalidConfig)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			_, err = cfg.TLSConfig("")
			assert.ErrorIs(t, err, tlsverify.ErrInvalidConfig, "TLSConfig validates too")
		})
	}
}

func TestLoadRoots(t *testing.T) {
	pool, err := tlsverify.LoadRoots(writeFile(t, "roots.pem", append([]byte("# comment\n"), root.RootPEM()...)))
	require.NoError(t, err)
	leaf := root.MustIssue(testpki.Template{DNSNames: []string{"a.example"}})
	_, err = leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now})
	require.NoError(t, err)

	_, err = tlsverify.LoadRoots(writeFile(t, "empty.pem", nil))
	require.ErrorIs(t, err, tlsverify.ErrInvalidConfig)
}

func TestErrorMessages(t *testing.T) {
	// These tests pin the wording operators read; code must branch on
	// errors.Is/As, never on these strings.
	cnOnly := root.MustIssue(testpki.Template{CommonName: "example.com", DNSNames: []string{"xmpp1.example.com"}})
	err := baseConfig().Verify(chainOf(cnOnly))
	require.ErrorIs(t, err, tlsverify.ErrNameMismatch)
	assert.Equal(t, `tlsverify: certificate of xmpp1.example.com lacks SAN "example.com" (XMPP domain); it names DNS:[xmpp1.example.com] (CN "example.com" is ignored: only SANs count)`, err.Error())

	wild := root.MustIssue(testpki.Template{DNSNames: []string{"*.example.com"}, IPs: []net.IP{net.ParseIP("192.0.2.7")}})
	cfg := baseConfig()
	cfg.ServerName = "127.0.0.1"
	err = cfg.Verify(chainOf(wild))
	assert.Equal(t, `tlsverify: certificate of 127.0.0.1 lacks SANs "example.com" (XMPP domain) and IP "127.0.0.1" (server name); it names DNS:[*.example.com] IP:[192.0.2.7]; "*.example.com" does not cover "example.com" itself`, err.Error())

	expired := root.MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}, NotAfter: testpki.Epoch.Add(time.Hour)})
	err = baseConfig().Verify(chainOf(expired))
	assert.Equal(t, `tlsverify: certificate for xmpp1.example.com expired at 2020-01-01T01:00:00Z (now 2020-01-02T00:00:00Z)`, err.Error())

	viaInter := inter.MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}})
	err = baseConfig().Verify([]*x509.Certificate{viaInter.Cert})
	assert.Equal(t, `tlsverify: certificate for xmpp1.example.com is signed by an unknown authority "CN=cblink test intermediate CA,O=cblink tests" (the server sent no intermediate certificates; add them to its certificate file or trust its CA)`, err.Error())

	otherInter := mustInter(otherRoot, testpki.Template{CommonName: "other intermediate"})
	foreign := otherInter.MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}})
	err = baseConfig().Verify(chainOf(foreign))
	assert.Equal(t, `tlsverify: CA certificate "CN=other intermediate,O=cblink tests" in the chain for xmpp1.example.com is signed by an unknown authority "CN=some other root,O=cblink tests" (trust its root CA or pin a key)`, err.Error())

	future := root.MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}, NotBefore: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
	err = baseConfig().Verify(chainOf(future))
	assert.Equal(t, `tlsverify: certificate for xmpp1.example.com is not valid before 2030-01-01T00:00:00Z (now 2020-01-02T00:00:00Z)`, err.Error())

	cfg = baseConfig()
	cfg.Roots, cfg.PinOnly, cfg.Pins = nil, true, []string{pinOf(foreign.Cert)}
	err = cfg.Verify(chainOf(expired))
	assert.Equal(t, `tlsverify: certificate for xmpp1.example.com: no certificate in the chain matches a pinned key (server key is `+pinOf(expired.Cert)+`)`, err.Error())

	client := root.MustIssue(testpki.Template{DNSNames: []string{"xmpp1.example.com"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	err = baseConfig().Verify(chainOf(client))
	assert.Equal(t, `tlsverify: certificate for xmpp1.example.com is not valid for TLS server authentication (extended key usage: client auth)`, err.Error())
}

func TestZeroErrorsDoNotPanic(t *testing.T) {
	for _, reason := range []error{nil, tlsverify.ErrExpired, tlsverify.ErrNotYetValid, tlsverify.ErrUnknownAuthority, tlsverify.ErrKeyUsage, tlsverify.ErrPinMismatch, tlsverify.ErrInvalidChain} {
		e := &tlsverify.ChainError{Reason: reason, PinsUnmatched: true}
		assert.NotEmpty(t, e.Error())
	}
	assert.NotEmpty(t, (&tlsverify.NameError{}).Error())
}

// TestVerifyConcurrent runs one Config from many goroutines under -race.
func TestVerifyConcurrent(t *testing.T) {
	good := root.MustIssue(testpki.Template{DNSNames: []string{"example.com", "xmpp1.example.com"}})
	cfg := baseConfig()
	cfg.Pins = []string{pinOf(good.Cert)}
	tc, err := cfg.TLSConfig("")
	require.NoError(t, err)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var err error
			for range 20 {
				err = errors.Join(err, cfg.Verify(chainOf(good)))
			}
			errs <- err
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
	require.NotNil(t, tc.VerifyConnection)
}

func BenchmarkVerifyConnection(b *testing.B) {
	leaf := inter.MustIssue(testpki.Template{DNSNames: []string{"example.com", "*.example.com"}})
	conf, err := baseConfig().TLSConfig("")
	require.NoError(b, err)
	cs := tls.ConnectionState{PeerCertificates: chainOf(leaf)}
	b.ReportAllocs()
	for b.Loop() {
		if err := conf.VerifyConnection(cs); err != nil {
			b.Fatal(err)
		}
	}
}
