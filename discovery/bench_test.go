package discovery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkLookupCached measures a Lookup answered from the result cache,
// including a fresh RFC 2782 ordering of the SRV targets.
func BenchmarkLookupCached(b *testing.B) {
	srv := newServer(b, zone)
	r := newResolver(newClock(), srv)
	r.Rand, r.Now = nil, nil // as in production
	ctx := context.Background()
	req := Request{Domain: "example.com"}
	_, err := r.Lookup(ctx, req)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res, err := r.Lookup(ctx, req)
		if err != nil || len(res.Endpoints) != 3 {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupCold measures a Lookup with an empty cache against a server
// that delays every reply by 20 ms: one SRV query, then A and AAAA of four
// targets (no additional section). Done in parallel it costs about two round
// trips; "delays/op" reports the cost in round trips and "seq/par" how much
// faster it is than the same lookup done one query at a time.
func BenchmarkLookupCold(b *testing.B) {
	const delay = 20 * time.Millisecond
	var zb strings.Builder
	zb.WriteString("$ORIGIN example.com.\n$TTL 300\n")
	for i := range 4 {
		fmt.Fprintf(&zb, "_xmpp-component._tcp IN SRV 0 0 5223 x%d\nx%d IN A 127.0.0.%d\nx%d IN AAAA ::%d\n", i, i, i+1, i, i+1)
	}
	srv := newServer(b, zb.String())
	srv.SetAdditional(false)
	srv.SetDelay(delay)
	ctx := context.Background()
	lookup := func(sequential bool) time.Duration {
		r := newResolver(newClock(), srv)
		r.Timeout = time.Second
		r.sequential = sequential
		start := time.Now()
		res, err := r.Lookup(ctx, Request{Domain: "example.com"})
		if err != nil || len(res.Endpoints) != 4 {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var seq time.Duration
	const seqRuns = 2
	for range seqRuns {
		seq += lookup(true)
	}
	seq /= seqRuns

	b.ResetTimer()
	var par time.Duration
	for range b.N {
		par += lookup(false)
	}
	b.StopTimer()
	par /= time.Duration(b.N)
	b.ReportMetric(float64(par)/float64(delay), "delays/op")
	b.ReportMetric(float64(seq)/float64(par), "seq/par")
}
