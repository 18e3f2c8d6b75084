//go:build integration

package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testpki"
	"github.com/cblink/cblink/tlsverify"
)

// TestIntegrationCertificateNames serves certificates that lack one of the
// two names a Call Bridge requires (CMS step 8) from Prosody and checks that
// the TLS handshake fails with a *tlsverify.NameError naming the missing
// name, before any component handshake; a certificate from an unknown CA
// fails with a chain error.
func TestIntegrationCertificateNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const fqdn = "xmpp1.example.com"
	pki := newPKI(t)

	tests := []struct {
		name        string
		cert        testpki.Template
		missing     string
		role        tlsverify.Role
		inCNOnly    bool
		wantDNSSANs []string
	}{
		{
			name:        "no server FQDN SAN",
			cert:        testpki.Template{CommonName: domain, DNSNames: []string{domain}},
			missing:     fqdn,
			role:        tlsverify.RoleServerName,
			wantDNSSANs: []string{domain},
		},
		{
			name:        "server FQDN only in the CN",
			cert:        testpki.Template{CommonName: fqdn, DNSNames: []string{domain}},
			missing:     fqdn,
			role:        tlsverify.RoleServerName,
			inCNOnly:    true,
			wantDNSSANs: []string{domain},
		},
		{
			name:        "no XMPP domain SAN",
			cert:        testpki.Template{CommonName: fqdn, DNSNames: []string{fqdn}},
			missing:     domain,
			role:        tlsverify.RoleDomain,
			wantDNSSANs: []string{fqdn},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startProsody(t, prosodyOptions{FQDN: fqdn, PKI: pki, Cert: pki.leaf(t, tc.cert), Users: map[string]string{}})
			s, _, err := dialComponent(ctx, t, linkTo(p))
			require.Error(t, err)
			assert.Nil(t, s)
			t.Logf("handshake: %v", err)

			require.ErrorIs(t, err, tlsverify.ErrNameMismatch)
			var ne *tlsverify.NameError
			require.ErrorAs(t, err, &ne)
			require.Len(t, ne.Missing, 1)
			assert.Equal(t, tc.missing, ne.Missing[0].Name)
			assert.Equal(t, tc.role, ne.Missing[0].Role)
			assert.Equal(t, tc.wantDNSSANs, ne.DNSNames)
			assert.Equal(t, tc.cert.CommonName, ne.CommonName)
			if tc.inCNOnly {
				assert.Equal(t, []string{tc.missing}, ne.InCommonNameOnly)
			} else {
				assert.Empty(t, ne.InCommonNameOnly)
			}
			require.NotNil(t, ne.Leaf)
			assert.True(t, ne.Leaf.Equal(p.Cert.Cert), "the error carries the certificate Prosody served")
		})
	}

	t.Run("unknown CA", func(t *testing.T) {
		p := startProsody(t, prosodyOptions{FQDN: fqdn, PKI: pki, Users: map[string]string{}})
		opts := linkTo(p)
		opts.Roots = newPKI(t).Pool // another CA
		_, _, err := dialComponent(ctx, t, opts)
		require.ErrorIs(t, err, tlsverify.ErrUnknownAuthority)
		var ce *tlsverify.ChainError
		require.ErrorAs(t, err, &ce)
		assert.True(t, ce.Leaf.Equal(p.Cert.Cert))
		var ne *tlsverify.NameError
		assert.False(t, errors.As(err, &ne), "an untrusted chain is reported before names")
	})

	t.Run("CA bundle file", func(t *testing.T) {
		// The same server is accepted when the CA comes from the PEM file
		// an operator would configure.
		p := startProsody(t, prosodyOptions{FQDN: fqdn, PKI: pki, Users: map[string]string{}})
		roots, err := tlsverify.LoadRoots(pki.CAFile)
		require.NoError(t, err)
		opts := linkTo(p)
		opts.Roots = roots
		s, _, err := dialComponent(ctx, t, opts)
		require.NoError(t, err)
		_, err = s.Ping(ctx)
		require.NoError(t, err)
	})
}
