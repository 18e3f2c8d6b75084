package tlsverify_test

import (
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testpki"
	"github.com/cblink/cblink/tlsverify"
)

func TestSummarize(t *testing.T) {
	leaf := root.MustIssue(testpki.Template{
		CommonName: "xmpp1.example.com",
		DNSNames:   []string{"example.com", "xmpp1.example.com"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		NotBefore:  time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:   time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	s := tlsverify.Summarize(leaf.Cert)

	sum := sha256.Sum256(leaf.Cert.Raw)
	var hexParts []string
	for _, b := range sum {
		hexParts = append(hexParts, fmt.Sprintf("%02X", b))
	}
	spki := sha256.Sum256(leaf.Cert.RawSubjectPublicKeyInfo)

	assert.Equal(t, "CN=xmpp1.example.com", s.Subject)
	assert.Equal(t, root.Cert.Subject.String(), s.Issuer)
	assert.Equal(t, "xmpp1.example.com", s.CommonName)
	assert.Equal(t, []string{"example.com", "xmpp1.example.com"}, s.DNSNames)
	assert.Equal(t, []string{"127.0.0.1", "::1"}, s.IPAddresses)
	assert.Equal(t, leaf.Cert.NotBefore, s.NotBefore)
	assert.Equal(t, leaf.Cert.NotAfter, s.NotAfter)
	assert.False(t, s.IsCA)
	assert.Equal(t, strings.Join(hexParts, ":"), s.SHA256)
	assert.Equal(t, "sha256/"+b64(spki[:]), s.SPKIPin)

	want := strings.Join([]string{
		"subject:  CN=xmpp1.example.com",
		"issuer:   " + root.Cert.Subject.String(),
		"SANs:     DNS:example.com, DNS:xmpp1.example.com, IP:127.0.0.1, IP:::1",
		"validity: 2025-01-01T00:00:00Z to 2027-01-01T00:00:00Z",
		"SHA-256:  " + s.SHA256,
		"SPKI pin: " + s.SPKIPin,
	}, "\n")
	assert.Equal(t, want, s.String())

	ca := tlsverify.Summarize(root.Cert)
	assert.True(t, ca.IsCA)
	assert.Contains(t, ca.String(), "SANs:     none")
	assert.Contains(t, ca.String(), "CA:       yes")

	assert.Equal(t, tlsverify.Summary{}, tlsverify.Summarize(nil))

	// The pin printed is one Config.Pins accepts.
	cfg := baseConfig()
	cfg.Roots, cfg.PinOnly, cfg.Pins = nil, true, []string{s.SPKIPin}
	cfg.Now = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	require.NoError(t, cfg.Verify(chainOf(leaf)))
}
