//go:build integration

package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIntegrationConnectTiming measures Prosody's startup and what one
// connect costs (TCP, TLS with tlsverify, XEP-0114 handshake), connecting
// several times in a row; each link must work. The figures are logged, not
// asserted: speed targets live in benchmarks, and this machine is shared.
func TestIntegrationConnectTiming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProsody(t, prosodyOptions{Users: map[string]string{}})
	starts := []time.Duration{p.StartupTime}
	for range 2 {
		p.Stop()
		p.Start()
		starts = append(starts, p.StartupTime)
	}

	const n = 10
	var tlsTimes, hsTimes, totals []time.Duration
	for i := range n {
		s, tm, err := dialComponent(ctx, t, linkTo(p))
		require.NoError(t, err, "connect %d", i)
		_, err = s.Ping(ctx)
		require.NoError(t, err, "connect %d", i)
		// Close before the next connect: Prosody refuses a second link.
		require.NoError(t, s.Close())
		assert.Positive(t, tm.TLS)
		assert.Positive(t, tm.Handshake)
		tlsTimes = append(tlsTimes, tm.TLS)
		hsTimes = append(hsTimes, tm.Handshake)
		totals = append(totals, tm.Dial+tm.TLS+tm.Handshake)
	}
	t.Logf("prosody startup (until all ports accept): %v", starts)
	t.Logf("per connect over %d connects: tls median %v, xep-0114 median %v, total median %v (min %v, max %v)",
		n, median(tlsTimes), median(hsTimes), median(totals), slices.Min(totals), slices.Max(totals))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond)
}
