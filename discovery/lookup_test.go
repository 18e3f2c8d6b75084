package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cblink/cblink/discovery/dnstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const srvName = "_xmpp-component._tcp.example.com."

const zone = `
$ORIGIN example.com.
$TTL 300
@                    IN SOA ns hostmaster 1 3600 600 86400 60
_xmpp-component._tcp IN SRV 10 60 5223 xmpp1
_xmpp-component._tcp IN SRV 10 40 5269 xmpp2
_xmpp-component._tcp IN SRV 20 0 5223 backup
xmpp1                IN A 127.0.0.1
xmpp1                IN AAAA ::1
xmpp1                IN A 127.0.0.11
xmpp2          120   IN A 127.0.0.2
backup               IN CNAME backup-real
backup-real     60   IN AAAA ::2
`

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newServer(t testing.TB, zones ...string) *dnstest.Server {
	t.Helper()
	srv, err := dnstest.NewServer(zones...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

func newResolver(clk *clock, servers ...*dnstest.Server) *Resolver {
	r := &Resolver{Timeout: 300 * time.Millisecond, Attempts: 1, Rand: rand.New(rand.NewPCG(1, 2)), Now: clk.Now}
	for _, s := range servers {
		r.NameServers = append(r.NameServers, s.Addr())
	}
	return r
}

func targets(res *Result) []string {
	var out []string
	for _, ep := range res.Endpoints {
		out = append(out, fmt.Sprintf("%s:%d", ep.Target, ep.Port))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func kindOf(t *testing.T, err error) Kind {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	return e.Kind
}

func TestLookupSRV(t *testing.T) {
	srv := newServer(t, zone)
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Domain: "Example.COM."})
	require.NoError(t, err)
	assert.False(t, res.Explicit)
	require.Len(t, res.Endpoints, 3)
	assert.ElementsMatch(t, []string{"xmpp1.example.com:5223", "xmpp2.example.com:5269"}, targets(res)[:2])
	assert.Equal(t, "backup.example.com:5223", targets(res)[2], "priority 20 comes last")

	byTarget := map[string]Endpoint{}
	for _, ep := range res.Endpoints {
		byTarget[ep.Target] = ep
	}
	x1 := byTarget["xmpp1.example.com"]
	assert.Equal(t, addrs("127.0.0.1", "::1", "127.0.0.11"), x1.Addrs, "families interleaved, IPv4 first")
	assert.EqualValues(t, 10, x1.Priority)
	assert.EqualValues(t, 60, x1.Weight)
	assert.Equal(t, 300*time.Second, x1.TTL)
	assert.Equal(t, 120*time.Second, byTarget["xmpp2.example.com"].TTL, "least TTL of SRV and address records")
	assert.Equal(t, addrs("::2"), byTarget["backup.example.com"].Addrs, "CNAME followed")
	assert.Equal(t, 60*time.Second, byTarget["backup.example.com"].TTL)

	// Additional-section addresses are used: xmpp1 A/AAAA and xmpp2 A come
	// with the SRV answer, so only xmpp2 AAAA and backup's are asked.
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, ""))
	assert.Zero(t, srv.Count("xmpp1.example.com", 0, ""))
	assert.Zero(t, srv.Count("xmpp2.example.com", dns.TypeA, ""))
	assert.Equal(t, 1, srv.Count("xmpp2.example.com", dns.TypeAAAA, ""))
	assert.Equal(t, 1, srv.Count("backup.example.com", dns.TypeAAAA, ""))

	sources := map[Source]int{}
	for _, te := range res.Trace {
		sources[te.Source]++
		assert.NotEmpty(t, te.String())
	}
	assert.Equal(t, 3, sources[SourceAdditional])
	assert.Equal(t, 4, sources[SourceNetwork], "SRV, xmpp2 AAAA, backup A and AAAA")
	for _, te := range res.Trace {
		if te.Source == SourceNetwork && te.Type == "SRV" {
			assert.Equal(t, srv.Addr(), te.Server)
			assert.Equal(t, "NOERROR", te.Rcode)
			assert.Len(t, te.Answers, 3)
			assert.Positive(t, te.Duration)
		}
	}
}

func TestAdditionalOutOfBailiwickIgnored(t *testing.T) {
	// The SRV target is written in another case than the owner name of its
	// address records, which the additional section must still match.
	srv := newServer(t, `
$ORIGIN example.com.
_xmpp-component._tcp 300 IN SRV 0 0 5223 XMPP1.Example.COM.
xmpp1                300 IN A 127.0.0.1
@                    300 IN A 127.0.0.21
`, "xmpp.victim.net. 300 IN A 127.0.0.20\n")
	var planted []dns.RR
	for _, s := range []string{
		"xmpp.victim.net. 3600 IN A 127.0.0.9",
		"xmpp.victim.net. 3600 IN AAAA ::9",
		"example.com. 3600 IN A 127.0.0.9",
		srvName + " 3600 IN A 127.0.0.9", // the SRV owner is no target either
	} {
		rr, err := dns.NewRR(s)
		require.NoError(t, err)
		planted = append(planted, rr)
	}
	srv.SetFault(srvName, dns.TypeSRV, dnstest.Fault{Extra: planted})
	r := newResolver(newClock(), srv)
	ctx := context.Background()

	res, err := r.Lookup(ctx, Request{Domain: "example.com"})
	require.NoError(t, err)
	require.Len(t, res.Endpoints, 1)
	assert.Equal(t, addrs("127.0.0.1"), res.Endpoints[0].Addrs)
	assert.Zero(t, srv.Count("xmpp1.example.com", dns.TypeA, ""), "the target's own additional record is used")
	for _, te := range res.Trace {
		if te.Source == SourceAdditional {
			assert.Equal(t, "xmpp1.example.com.", te.Name)
		}
	}
	r.mu.Lock()
	for k := range r.cache {
		assert.Contains(t, []string{srvName, "xmpp1.example.com."}, k.name, "nothing cached for another name")
	}
	r.mu.Unlock()

	// Later lookups of the other names go to the name server.
	for _, tt := range []struct {
		server string
		want   []netip.Addr
	}{
		{"xmpp.victim.net", addrs("127.0.0.20")},
		{"example.com", addrs("127.0.0.21")},
	} {
		res, err = r.Lookup(ctx, Request{Server: tt.server})
		require.NoError(t, err, tt.server)
		assert.Equal(t, tt.want, res.Endpoints[0].Addrs, "%s: the planted address must not be used", tt.server)
		assert.Equal(t, 1, srv.Count(tt.server, dns.TypeA, ""), tt.server)
		assert.Equal(t, 1, srv.Count(tt.server, dns.TypeAAAA, ""), tt.server)
	}
}

func TestLookupWithoutAdditional(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetAdditional(false)
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Domain: "example.com", PreferIPv6: true})
	require.NoError(t, err)
	require.Len(t, res.Endpoints, 3)
	for _, name := range []string{"xmpp1.example.com", "xmpp2.example.com", "backup.example.com"} {
		assert.Equal(t, 1, srv.Count(name, dns.TypeA, ""), name)
		assert.Equal(t, 1, srv.Count(name, dns.TypeAAAA, ""), name)
	}
	for _, ep := range res.Endpoints {
		if ep.Target == "xmpp1.example.com" {
			assert.Equal(t, addrs("::1", "127.0.0.1", "127.0.0.11"), ep.Addrs, "IPv6 first when preferred")
		}
	}
}

func TestLookupExplicit(t *testing.T) {
	srv := newServer(t, zone)
	tests := []struct {
		name    string
		server  string
		target  string
		port    uint16
		addrs   []netip.Addr
		queries int
	}{
		{"host", "XMPP1.example.com", "xmpp1.example.com", 5223, addrs("127.0.0.1", "::1", "127.0.0.11"), 2},
		{"host port", "xmpp2.example.com.:5270", "xmpp2.example.com", 5270, addrs("127.0.0.2"), 2},
		{"ipv4", "127.0.0.5:1234", "127.0.0.5", 1234, addrs("127.0.0.5"), 0},
		{"ipv6", "[::1]", "::1", 5223, addrs("::1"), 0},
		{"cname", "backup.example.com", "backup.example.com", 5223, addrs("::2"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.ResetQueries()
			r := newResolver(newClock(), srv)
			res, err := r.Lookup(context.Background(), Request{Domain: "example.com", Server: tt.server})
			require.NoError(t, err)
			assert.True(t, res.Explicit)
			require.Len(t, res.Endpoints, 1)
			ep := res.Endpoints[0]
			assert.Equal(t, tt.target, ep.Target)
			assert.Equal(t, tt.port, ep.Port)
			assert.Equal(t, tt.addrs, ep.Addrs)
			assert.Equal(t, tt.queries, srv.Count("", 0, ""))
			assert.Zero(t, srv.Count("", dns.TypeSRV, ""), "no SRV lookup with an explicit address")
		})
	}
}

func TestLookupZeroValueIPLiteral(t *testing.T) {
	var r Resolver
	res, err := r.Lookup(context.Background(), Request{Server: "127.0.0.1"})
	require.NoError(t, err)
	assert.Equal(t, addrs("127.0.0.1"), res.Endpoints[0].Addrs)
	assert.Equal(t, DefaultMaxTTL, res.Endpoints[0].TTL)
}

func TestLookupBadSettings(t *testing.T) {
	srv := newServer(t, zone)
	r := newResolver(newClock(), srv)
	for _, req := range []Request{{Server: "xmpp://x"}, {Domain: ""}, {Domain: "bad domain"}} {
		_, err := r.Lookup(context.Background(), req)
		require.ErrorIs(t, err, ErrBadAddress)
	}
	assert.Zero(t, srv.Count("", 0, ""))
}

func TestLookupNoService(t *testing.T) {
	srv := newServer(t, `_xmpp-component._tcp.example.com. 60 IN SRV 0 0 0 .`)
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Domain: "example.com", FallbackToDomain: true})
	require.ErrorIs(t, err, ErrNoService)
	assert.NotErrorIs(t, err, ErrNoSRV)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.True(t, e.IsNotFound())
	assert.NotEmpty(t, res.Trace, "the trace survives an error")
	assert.Equal(t, 1, srv.Count("", 0, ""), "no fallback")
}

func TestLookupNoSRV(t *testing.T) {
	tests := []struct {
		name string
		zone string
	}{
		{"nxdomain", "example.com. 60 IN A 127.0.0.3\n"},
		{"empty answer", "example.com. 60 IN A 127.0.0.3\n_xmpp-component._tcp.example.com. 60 IN TXT hello\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.zone)
			r := newResolver(newClock(), srv)
			_, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
			require.ErrorIs(t, err, ErrNoSRV)
			assert.Equal(t, KindNoSRV, kindOf(t, err))

			res, err := r.Lookup(context.Background(), Request{Domain: "example.com", FallbackToDomain: true})
			require.NoError(t, err)
			require.Len(t, res.Endpoints, 1)
			ep := res.Endpoints[0]
			assert.Equal(t, "example.com", ep.Target)
			assert.EqualValues(t, 5223, ep.Port)
			assert.Equal(t, addrs("127.0.0.3"), ep.Addrs)
			assert.NotEmpty(t, ep.Note)
		})
	}
}

func TestLookupTargetsWithoutAddresses(t *testing.T) {
	srv := newServer(t, `
$ORIGIN example.com.
_xmpp-component._tcp 60 IN SRV 0 0 5223 good
_xmpp-component._tcp 60 IN SRV 0 0 5223 empty
_xmpp-component._tcp 60 IN SRV 0 0 5223 missing
_xmpp-component._tcp 60 IN SRV 0 0 5223 failing
good 60 IN A 127.0.0.1
empty 60 IN TXT "no address"
`)
	srv.SetFault("failing.example.com", 0, dnstest.Fault{Rcode: dns.RcodeServerFailure})
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.NoError(t, err)
	assert.Equal(t, []string{"good.example.com:5223"}, targets(res))
	notes := 0
	for _, te := range res.Trace {
		if te.Note != "" && te.Type == "A/AAAA" {
			notes++
		}
	}
	assert.Equal(t, 3, notes, "each skipped target is noted")

	srv.Remove("good.example.com", dns.TypeA)
	r = newResolver(newClock(), srv)
	_, err = r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.ErrorIs(t, err, ErrNoAddresses)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, KindNoAddresses, e.Kind)
	assert.True(t, e.IsTemporary())
	// The per-target causes are kept, and the message says "discovery:"
	// once, not again before each cause.
	var cause *Error
	require.ErrorAs(t, e.Err, &cause)
	assert.Equal(t, 1, strings.Count(err.Error(), "discovery:"), err.Error())
	assert.Contains(t, err.Error(), "no target has an address: lookup A")
}

func TestLookupBadDNS(t *testing.T) {
	// Every row but "timeout" gets a reply, which must be classified
	// however late it comes on a loaded machine: those rows get a timeout
	// they never reach. Only the row testing a timeout needs a short one.
	const answered, short = 10 * time.Second, 100 * time.Millisecond
	tests := []struct {
		name    string
		fault   dnstest.Fault
		timeout time.Duration
		kind    Kind
	}{
		{"servfail", dnstest.Fault{Rcode: dns.RcodeServerFailure}, answered, KindServerFailure},
		{"refused", dnstest.Fault{Rcode: dns.RcodeRefused}, answered, KindRefused},
		{"timeout", dnstest.Fault{Drop: true}, short, KindTimeout},
		{"wrong name", dnstest.Fault{WrongName: true}, answered, KindWrongName},
		{"malformed", dnstest.Fault{Malformed: true}, answered, KindMalformed},
		{"notimp", dnstest.Fault{Rcode: dns.RcodeNotImplemented}, answered, KindServerFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, zone)
			srv.SetFault(srvName, dns.TypeSRV, tt.fault)
			r := newResolver(newClock(), srv)
			r.Timeout = tt.timeout
			res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
			require.Error(t, err)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.kind, e.Kind, "%v", err)
			assert.Equal(t, srv.Addr(), e.Server)
			assert.Equal(t, tt.kind == KindTimeout, e.IsTimeout())
			assert.True(t, e.IsTemporary())
			require.NotEmpty(t, res.Trace)
			assert.Error(t, res.Trace[0].Err)
		})
	}
}

func TestLookupCNAMELoop(t *testing.T) {
	srv := newServer(t, `
$ORIGIN example.com.
loop1 60 IN CNAME loop2
loop2 60 IN CNAME loop1
`)
	r := newResolver(newClock(), srv)
	_, err := r.Lookup(context.Background(), Request{Server: "loop1.example.com"})
	require.ErrorIs(t, err, ErrNoAddresses)
	var e *Error
	require.ErrorAs(t, err, &e)
	var loop *Error
	require.ErrorAs(t, e.Err, &loop)
	assert.Equal(t, KindCNAMELoop, loop.Kind)
}

func TestLookupCNAMEChainAcrossQueries(t *testing.T) {
	// The first server only knows the alias, so the resolver must ask
	// again for the target (a second query).
	srv := newServer(t, "alias.example.com. 30 IN CNAME real.example.net.\nreal.example.net. 90 IN A 127.0.0.7\n")
	srv.SetFault("real.example.net", dns.TypeAAAA, dnstest.Fault{Rcode: dns.RcodeNameError})
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Server: "alias.example.com"})
	require.NoError(t, err)
	assert.Equal(t, addrs("127.0.0.7"), res.Endpoints[0].Addrs)
	assert.Equal(t, 30*time.Second, res.Endpoints[0].TTL, "least TTL along the chain")
}

func TestLookupTooManyRecords(t *testing.T) {
	srv := newServer(t)
	for i := range 1000 {
		rr, err := dns.NewRR(fmt.Sprintf("%s 60 IN SRV 0 0 5223 h%d.example.com.", srvName, i))
		require.NoError(t, err)
		srv.Add(rr)
	}
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.Error(t, err)
	assert.Equal(t, KindTooLarge, kindOf(t, err))
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, dnstest.TCP), "UDP reply truncated, retried over TCP once")
	for _, te := range res.Trace {
		assert.LessOrEqual(t, len(te.Answers), DefaultMaxRecords+1, "trace bounded")
	}
}

func TestLookupTruncatedRetriesOverTCP(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault(srvName, dns.TypeSRV, dnstest.Fault{Truncate: true})
	r := newResolver(newClock(), srv)
	res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.NoError(t, err)
	assert.Len(t, res.Endpoints, 3)
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, dnstest.UDP))
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, dnstest.TCP))
	var nets []string
	for _, te := range res.Trace {
		if te.Type == "SRV" {
			nets = append(nets, te.Net)
		}
	}
	assert.Equal(t, []string{"udp", "tcp"}, nets)
}

func TestLookupNextNameServer(t *testing.T) {
	for _, f := range []dnstest.Fault{
		{Rcode: dns.RcodeServerFailure}, {Drop: true}, {Rcode: dns.RcodeRefused}, {WrongName: true}, {Malformed: true},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			bad, good := newServer(t, zone), newServer(t, zone)
			bad.SetFault(srvName, dns.TypeSRV, f)
			r := newResolver(newClock(), bad, good)
			r.Timeout = 100 * time.Millisecond
			res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
			require.NoError(t, err)
			assert.Len(t, res.Endpoints, 3)
			assert.Equal(t, 1, bad.Count(srvName, dns.TypeSRV, ""))
			assert.Equal(t, 1, good.Count(srvName, dns.TypeSRV, ""))
		})
	}
}

func TestLookupAttempts(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault(srvName, dns.TypeSRV, dnstest.Fault{Rcode: dns.RcodeServerFailure, Times: 2})
	r := newResolver(newClock(), srv)
	r.Attempts = 3
	_, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.NoError(t, err)
	assert.Equal(t, 3, srv.Count(srvName, dns.TypeSRV, ""))
}

func TestLookupContextCancel(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetDelay(time.Second)
	r := newResolver(newClock(), srv)
	r.Timeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := r.Lookup(ctx, Request{Domain: "example.com"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, KindTimeout, kindOf(t, err))

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = r.Lookup(ctx, Request{Domain: "example.com"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, KindCanceled, kindOf(t, err), "a cancelled context has its own Kind, not KindUnknown")
	assert.Equal(t, "canceled", KindCanceled.String())
}

func TestLookupCancelInFlight(t *testing.T) {
	tests := []struct {
		name  string
		stall string // the name whose queries get no reply
		qtype uint16
	}{
		{"SRV", srvName, dns.TypeSRV},
		{"addresses", "xmpp2.example.com", dns.TypeAAAA}, // xmpp2's A comes with the SRV answer
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, zone)
			srv.SetFault(tt.stall, tt.qtype, dnstest.Fault{Drop: true})
			r := newResolver(newClock(), srv)
			r.Timeout = 30 * time.Second // far beyond what the assertion allows
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type outcome struct {
				err error
				at  time.Time
			}
			done := make(chan outcome, 1)
			go func() {
				_, err := r.Lookup(ctx, Request{Domain: "example.com"})
				done <- outcome{err, time.Now()}
			}()
			// Cancel once the query is in flight: the server has received it
			// and will never answer.
			require.Eventually(t, func() bool { return srv.Count(tt.stall, tt.qtype, "") > 0 },
				10*time.Second, time.Millisecond)
			cancelled := time.Now()
			cancel()
			var o outcome
			select {
			case o = <-done:
			case <-time.After(time.Second):
				t.Errorf("Lookup still running 1s after its context was cancelled")
				o = <-done // bounded by the exchange timeout; no goroutine left behind
			}
			t.Logf("cancellation to return: %v", o.at.Sub(cancelled))
			require.ErrorIs(t, o.err, context.Canceled)
			var e *Error
			require.ErrorAs(t, o.err, &e)
			assert.Equal(t, KindCanceled, e.Kind, "%v", o.err)
		})
	}
}

func TestCacheTTL(t *testing.T) {
	srv := newServer(t, zone)
	clk := newClock()
	r := newResolver(clk, srv)
	ctx := context.Background()
	req := Request{Domain: "example.com"}
	_, err := r.Lookup(ctx, req)
	require.NoError(t, err)
	first := srv.Count("", 0, "")

	clk.Add(50 * time.Second)
	res, err := r.Lookup(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, first, srv.Count("", 0, ""), "served from cache")
	require.Len(t, res.Trace, 1)
	assert.Equal(t, SourceCache, res.Trace[0].Source)
	for _, ep := range res.Endpoints {
		if ep.Target == "xmpp1.example.com" {
			assert.Equal(t, 250*time.Second, ep.TTL, "TTL counts down")
		}
	}

	clk.Add(11 * time.Second) // backup-real's 60 s TTL ended; the SRV's 300 s not
	_, err = r.Lookup(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, ""), "the SRV answer still cached")
	assert.Equal(t, first+3, srv.Count("", 0, ""), "the 60 s answers asked again: xmpp2 AAAA, backup A and AAAA")
	assert.Equal(t, 2, srv.Count("backup.example.com", dns.TypeAAAA, ""))

	// At 130 s xmpp2's A record (120 s, from the additional section) has
	// expired while the SRV answer (300 s) has not: it is asked for.
	clk.Add(69 * time.Second)
	_, err = r.Lookup(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, ""))
	assert.Equal(t, 1, srv.Count("xmpp2.example.com", dns.TypeA, ""))
	assert.Zero(t, srv.Count("xmpp1.example.com", 0, ""), "xmpp1's additional records are still fresh")

	clk.Add(300 * time.Second)
	_, err = r.Lookup(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, 2, srv.Count(srvName, dns.TypeSRV, ""))
}

func TestCacheClamp(t *testing.T) {
	srv := newServer(t, "a.example.com. 0 IN A 127.0.0.1\nb.example.com. 86400 IN A 127.0.0.2\n")
	clk := newClock()
	r := newResolver(clk, srv)
	r.MinTTL, r.MaxTTL = 10*time.Second, time.Minute
	ctx := context.Background()
	res, err := r.Lookup(ctx, Request{Server: "a.example.com"})
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, res.Endpoints[0].TTL)
	res, err = r.Lookup(ctx, Request{Server: "b.example.com"})
	require.NoError(t, err)
	assert.Equal(t, time.Minute, res.Endpoints[0].TTL)
	n := srv.Count("", 0, "")
	clk.Add(9 * time.Second)
	_, err = r.Lookup(ctx, Request{Server: "a.example.com"})
	require.NoError(t, err)
	assert.Equal(t, n, srv.Count("", 0, ""))
	clk.Add(2 * time.Second)
	_, err = r.Lookup(ctx, Request{Server: "a.example.com"})
	require.NoError(t, err)
	assert.Equal(t, n+2, srv.Count("", 0, ""))

	// Without a floor, a TTL of 0 is not cached.
	r2 := newResolver(clk, srv)
	for range 2 {
		_, err = r2.Lookup(ctx, Request{Server: "a.example.com"})
		require.NoError(t, err)
	}
	assert.Equal(t, n+6, srv.Count("", 0, ""))
}

func TestServeStale(t *testing.T) {
	srv := newServer(t, zone)
	clk := newClock()
	r := newResolver(clk, srv)
	r.MaxStale = time.Hour
	ctx := context.Background()
	req := Request{Domain: "example.com"}
	_, err := r.Lookup(ctx, req)
	require.NoError(t, err)

	clk.Add(10 * time.Minute) // everything expired
	srv.SetFault("", 0, dnstest.Fault{})
	for _, name := range []string{srvName, "xmpp2.example.com", "backup.example.com", "backup-real.example.com"} {
		srv.SetFault(name, 0, dnstest.Fault{Rcode: dns.RcodeServerFailure})
	}
	res, err := r.Lookup(ctx, req)
	require.NoError(t, err)
	require.Len(t, res.Endpoints, 3)
	stale := 0
	for _, te := range res.Trace {
		if te.Source == SourceStale {
			stale++
			assert.Error(t, te.Err)
			assert.NotEmpty(t, te.Note)
		}
	}
	assert.Positive(t, stale)
	for _, ep := range res.Endpoints {
		assert.Equal(t, 30*time.Second, ep.TTL, "stale answers carry a short TTL")
		assert.NotEmpty(t, ep.Note)
	}

	clk.Add(2 * time.Hour) // beyond MaxStale
	_, err = r.Lookup(ctx, req)
	require.Error(t, err)
	assert.Equal(t, KindServerFailure, kindOf(t, err))
}

func TestServeStaleDisabled(t *testing.T) {
	srv := newServer(t, zone)
	clk := newClock()
	r := newResolver(clk, srv)
	r.MaxStale = -1
	_, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.NoError(t, err)
	clk.Add(time.Hour)
	srv.SetFault(srvName, 0, dnstest.Fault{Rcode: dns.RcodeServerFailure})
	_, err = r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.Error(t, err)
}

func TestNegativeCaching(t *testing.T) {
	srv := newServer(t, "$ORIGIN example.com.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 60\n@ 60 IN A 127.0.0.1\n")
	clk := newClock()
	r := newResolver(clk, srv)
	for range 3 {
		_, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
		require.ErrorIs(t, err, ErrNoSRV)
	}
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, ""), "NXDOMAIN cached for the SOA minimum")
	clk.Add(61 * time.Second)
	_, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
	require.ErrorIs(t, err, ErrNoSRV)
	assert.Equal(t, 2, srv.Count(srvName, dns.TypeSRV, ""))
}

func TestSingleflight(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetDelay(100 * time.Millisecond)
	r := newResolver(newClock(), srv)
	r.Timeout = 2 * time.Second
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
			if assert.NoError(t, err) {
				assert.Len(t, res.Endpoints, 3)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, ""))
	assert.Equal(t, 1, srv.Count("backup.example.com", dns.TypeA, ""))
}

func TestSingleflightOwnerCancelled(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetDelay(100 * time.Millisecond)
	r := newResolver(newClock(), srv)
	r.Timeout = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.Lookup(ctx, Request{Domain: "example.com"})
		errc <- err
	}()
	require.Eventually(t, func() bool { return srv.Count("", 0, "") == 1 }, time.Second, time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, KindCanceled, kindOf(t, err))
	require.NoError(t, <-done, "the waiter asks again instead of inheriting the cancellation")
}

func TestWeightedOrdering(t *testing.T) {
	srv := newServer(t, `
$ORIGIN example.com.
_xmpp-component._tcp 300 IN SRV 0 60 5223 a
_xmpp-component._tcp 300 IN SRV 0 40 5223 b
_xmpp-component._tcp 300 IN SRV 5 0 5223 z
a 300 IN A 127.0.0.1
b 300 IN A 127.0.0.2
z 300 IN A 127.0.0.3
`)
	r := newResolver(newClock(), srv)
	const n = 10000
	firstA := 0
	for range n {
		res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
		require.NoError(t, err)
		require.Len(t, res.Endpoints, 3)
		if res.Endpoints[0].Target == "a.example.com" {
			firstA++
		}
		require.Equal(t, "z.example.com", res.Endpoints[2].Target)
	}
	assert.InDelta(t, 0.60, float64(firstA)/n, 0.05, "60/40 weights")
	assert.Equal(t, 1, srv.Count(srvName, dns.TypeSRV, ""), "orderings drawn from the cache")
}

func TestZeroWeightsSpread(t *testing.T) {
	srv := newServer(t, `
$ORIGIN example.com.
_xmpp-component._tcp 300 IN SRV 0 0 5223 a
_xmpp-component._tcp 300 IN SRV 0 0 5223 b
_xmpp-component._tcp 300 IN SRV 0 0 5223 c
_xmpp-component._tcp 300 IN SRV 0 0 5223 d
a 300 IN A 127.0.0.1
b 300 IN A 127.0.0.2
c 300 IN A 127.0.0.3
d 300 IN A 127.0.0.4
`)
	r := newResolver(newClock(), srv)
	const n = 8000
	first := map[string]int{}
	for range n {
		res, err := r.Lookup(context.Background(), Request{Domain: "example.com"})
		require.NoError(t, err)
		first[res.Endpoints[0].Target]++
	}
	require.Len(t, first, 4)
	for target, c := range first {
		assert.InDelta(t, 0.25, float64(c)/n, 0.03, target)
	}
}

func TestZeroWeightSmallChance(t *testing.T) {
	r := &Resolver{Rand: rand.New(rand.NewPCG(3, 4))}
	const n = 10000
	zeroFirst := 0
	for range n {
		eps := []Endpoint{{Target: "z", Weight: 0}, {Target: "w", Weight: 9}}
		r.orderSRV(eps)
		if eps[0].Target == "z" {
			zeroFirst++
		}
	}
	// 1/(9+1): the RFC 2782 chance of a weight-0 record.
	assert.InDelta(t, 0.10, float64(zeroFirst)/n, 0.02)
}

func TestOrderSRVDeterministicWithSeed(t *testing.T) {
	order := func() []string {
		r := &Resolver{Rand: rand.New(rand.NewPCG(7, 7))}
		eps := []Endpoint{{Target: "a", Weight: 1}, {Target: "b", Weight: 1}, {Target: "c", Weight: 1}, {Target: "d", Priority: 1}}
		r.orderSRV(eps)
		var out []string
		for _, ep := range eps {
			out = append(out, ep.Target)
		}
		return out
	}
	assert.Equal(t, order(), order())
	assert.Equal(t, "d", order()[3])
}

func TestInterleave(t *testing.T) {
	v4 := addrs("192.0.2.1", "192.0.2.2", "192.0.2.3")
	v6 := addrs("2001:db8::1")
	assert.Equal(t, addrs("192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3"), interleave(v4, v6))
	assert.Equal(t, addrs("2001:db8::1", "192.0.2.1", "192.0.2.2", "192.0.2.3"), interleave(v6, v4))
	assert.Empty(t, interleave(nil, nil))
}

func TestConcurrentLookups(t *testing.T) {
	srv := newServer(t, zone)
	clk := newClock()
	r := newResolver(clk, srv)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				req := Request{Domain: "example.com", PreferIPv6: j%2 == 0}
				if i%2 == 0 {
					req = Request{Server: "xmpp1.example.com"}
				}
				_, err := r.Lookup(context.Background(), req)
				assert.NoError(t, err)
				if j%5 == 0 {
					clk.Add(time.Minute)
				}
			}
		})
	}
	wg.Wait()
}

func TestErrorFormatting(t *testing.T) {
	e := &Error{Op: "lookup SRV", Name: srvName, Server: "127.0.0.1:53", Kind: KindServerFailure, Err: errors.New("name server answered SERVFAIL")}
	assert.Contains(t, e.Error(), srvName)
	assert.Contains(t, e.Error(), "127.0.0.1:53")
	assert.Equal(t, "server failure", e.Kind.String())
	assert.Equal(t, "Kind(99)", Kind(99).String())
	assert.Equal(t, "stale", SourceStale.String())
}
