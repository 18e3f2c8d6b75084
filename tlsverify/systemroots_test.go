package tlsverify

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TLSConfig loads the system pool ahead of the first handshake exactly
// when verification will use it.
func TestTLSConfigLoadsSystemRootsWhenUsed(t *testing.T) {
	defer func(f func()) { loadSystemRoots = f }(loadSystemRoots)
	calls := 0
	loadSystemRoots = func() { calls++ }
	pin := strings.Repeat("ab", 32)
	base := Config{Domain: "example.com", ServerName: "xmpp.example.com"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want int
	}{
		{"system pool", func(*Config) {}, 1},
		{"pins beside the system pool", func(c *Config) { c.Pins = []string{pin} }, 1},
		{"roots", func(c *Config) { c.Roots = x509.NewCertPool() }, 0},
		{"pins only", func(c *Config) { c.Pins, c.PinOnly = []string{pin}, true }, 0},
		{"no verification", func(c *Config) { c.InsecureSkipAllVerification = true }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls = 0
			c := base
			tc.edit(&c)
			_, err := c.TLSConfig("")
			require.NoError(t, err)
			assert.Equal(t, tc.want, calls)
		})
	}
}
