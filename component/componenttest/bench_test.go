package componenttest

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkPing measures server-to-component XEP-0199 round trips over
// direct TLS on loopback, with the hand-rolled client answering.
func BenchmarkPing(b *testing.B) {
	for _, inflight := range []int{1, 64} {
		b.Run(map[int]string{1: "inflight=1", 64: "inflight=64"}[inflight], func(b *testing.B) {
			srv := newTestServer(b, Options{})
			c, err := connect(b, srv, "cb1.example.com", "s3cret")
			require.NoError(b, err)
			var wg sync.WaitGroup
			wg.Go(func() { _ = c.answerPings("cb1.example.com") })
			defer func() {
				c.abort()
				wg.Wait()
			}()
			conn, err := srv.WaitConn(context.Background(), "cb1.example.com")
			require.NoError(b, err)
			ctx := context.Background()
			var failed atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if inflight == 1 {
				for range b.N {
					if _, err := conn.Ping(ctx); err != nil {
						failed.Add(1)
					}
				}
			} else {
				b.SetParallelism((inflight + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := conn.Ping(ctx); err != nil {
							failed.Add(1)
						}
					}
				})
			}
			elapsed := time.Since(start)
			b.StopTimer()
			require.Zero(b, failed.Load())
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
			b.ReportMetric(float64(b.N)/float64(max(1, conn.writes.Load())), "pings/write")
		})
	}
}
