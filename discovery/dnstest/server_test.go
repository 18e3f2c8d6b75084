package dnstest_test

import (
	"fmt"
	"net"
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

const zone = `
$ORIGIN example.com.
$TTL 300
@                    IN SOA ns hostmaster 1 3600 600 86400 60
_xmpp-component._tcp IN SRV 0 60 5223 xmpp1
_xmpp-component._tcp IN SRV 0 40 5269 xmpp2.example.com.
xmpp1                IN A 127.0.0.1
xmpp1                IN AAAA ::1
xmpp2          600   IN A 127.0.0.2
alias                IN CNAME alias2
alias2               IN CNAME xmpp1
loop1                IN CNAME loop2
loop2                IN CNAME loop1
`

func newServer(t *testing.T, zones ...string) *dnstest.Server {
	t.Helper()
	srv, err := dnstest.NewServer(zones...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

func ask(t *testing.T, srv *dnstest.Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m, err := exchange(srv, network, name, qtype, time.Second)
	require.NoError(t, err)
	return m
}

func exchange(srv *dnstest.Server, network, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(q, srv.Addr())
	return r, err
}

func TestAddrSamePortUDPAndTCP(t *testing.T) {
	srv := newServer(t, zone)
	host, _, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	for _, network := range []string{"udp", "tcp"} {
		m := ask(t, srv, network, "xmpp1.example.com", dns.TypeA)
		require.Len(t, m.Answer, 1, network)
		assert.True(t, m.Authoritative)
		assert.Equal(t, "127.0.0.1", m.Answer[0].(*dns.A).A.String())
	}
	assert.Equal(t, 1, srv.Count("xmpp1.example.com.", dns.TypeA, dnstest.UDP))
	assert.Equal(t, 1, srv.Count("XMPP1.example.com", dns.TypeA, dnstest.TCP))
	assert.Equal(t, 2, srv.Count("", 0, ""))
}

func TestZoneParsing(t *testing.T) {
	srv := newServer(t, zone)
	m := ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	require.Len(t, m.Answer, 2)
	got := map[string]uint16{}
	for _, rr := range m.Answer {
		s := rr.(*dns.SRV)
		got[s.Target] = s.Port
		assert.EqualValues(t, 300, s.Hdr.Ttl, "$TTL applies")
	}
	assert.Equal(t, map[string]uint16{"xmpp1.example.com.": 5223, "xmpp2.example.com.": 5269}, got)

	m = ask(t, srv, "udp", "xmpp2.example.com", dns.TypeA)
	require.Len(t, m.Answer, 1)
	assert.EqualValues(t, 600, m.Answer[0].Header().Ttl)

	assert.Error(t, srv.AddZone("bad IN A not-an-ip"))
	assert.Error(t, srv.AddZone("$INCLUDE /etc/passwd"))
}

func TestAdditionalSection(t *testing.T) {
	srv := newServer(t, zone)
	m := ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	types := map[string][]uint16{}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			types[rr.Header().Name] = append(types[rr.Header().Name], rr.Header().Rrtype)
		}
	}
	assert.ElementsMatch(t, []uint16{dns.TypeA, dns.TypeAAAA}, types["xmpp1.example.com."])
	assert.Equal(t, []uint16{dns.TypeA}, types["xmpp2.example.com."])

	srv.SetAdditional(false)
	m = ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	assert.Empty(t, m.Extra)
	assert.Len(t, m.Answer, 2)
}

func TestNegativeAnswers(t *testing.T) {
	srv := newServer(t, zone)
	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
	}{
		{"nxdomain", "nope.example.com", dns.TypeA, dns.RcodeNameError},
		{"nodata", "xmpp2.example.com", dns.TypeAAAA, dns.RcodeSuccess},
		{"empty non-terminal", "_tcp.example.com", dns.TypeA, dns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ask(t, srv, "udp", tt.qname, tt.qtype)
			assert.Equal(t, tt.rcode, m.Rcode)
			assert.Empty(t, m.Answer)
			require.Len(t, m.Ns, 1)
			assert.Equal(t, dns.TypeSOA, m.Ns[0].Header().Rrtype)
		})
	}
}

func TestCNAMEChase(t *testing.T) {
	srv := newServer(t, zone)
	m := ask(t, srv, "udp", "alias.example.com", dns.TypeA)
	require.Len(t, m.Answer, 3)
	assert.Equal(t, "alias2.example.com.", m.Answer[0].(*dns.CNAME).Target)
	assert.Equal(t, "xmpp1.example.com.", m.Answer[1].(*dns.CNAME).Target)
	assert.Equal(t, "127.0.0.1", m.Answer[2].(*dns.A).A.String())

	m = ask(t, srv, "udp", "alias.example.com", dns.TypeCNAME)
	require.Len(t, m.Answer, 1, "a CNAME query is not chased")

	m = ask(t, srv, "udp", "loop1.example.com", dns.TypeA)
	assert.Len(t, m.Answer, 2, "a loop stops after each CNAME once")
}

func TestSetRemove(t *testing.T) {
	srv := newServer(t)
	a := func(name, ip string) dns.RR {
		rr, err := dns.NewRR(name + " 60 IN A " + ip)
		require.NoError(t, err)
		return rr
	}
	srv.Add(a("h.test.", "127.0.0.1"), a("h.test.", "127.0.0.2"))
	assert.Len(t, ask(t, srv, "udp", "h.test", dns.TypeA).Answer, 2)

	srv.Set("H.test", dns.TypeA, a("h.test.", "127.0.0.9"))
	m := ask(t, srv, "udp", "h.test", dns.TypeA)
	require.Len(t, m.Answer, 1)
	assert.Equal(t, "127.0.0.9", m.Answer[0].(*dns.A).A.String())

	srv.Remove("h.test", dns.TypeA)
	assert.Equal(t, dns.RcodeNameError, ask(t, srv, "udp", "h.test", dns.TypeA).Rcode)

	srv.Add(a("h.test.", "127.0.0.1"))
	srv.Set("h.test", dns.TypeA)
	assert.Empty(t, ask(t, srv, "udp", "h.test", dns.TypeA).Answer)

	srv.Add(a("h.test.", "127.0.0.1"))
	srv.Remove("h.test", dns.TypeNone)
	assert.Empty(t, ask(t, srv, "udp", "h.test", dns.TypeA).Answer)

	srv.ResetQueries()
	assert.Zero(t, srv.Count("", 0, ""))
}

func TestFaultRcodes(t *testing.T) {
	for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeNameError, dns.RcodeRefused} {
		t.Run(dns.RcodeToString[rcode], func(t *testing.T) {
			srv := newServer(t, zone)
			srv.SetFault("xmpp1.example.com", dns.TypeA, dnstest.Fault{Rcode: rcode})
			m := ask(t, srv, "udp", "xmpp1.example.com", dns.TypeA)
			assert.Equal(t, rcode, m.Rcode)
			assert.Empty(t, m.Answer)
			// Other types at the same name are unaffected.
			assert.Len(t, ask(t, srv, "udp", "xmpp1.example.com", dns.TypeAAAA).Answer, 1)
			srv.ClearFault("xmpp1.example.com", dns.TypeA)
			assert.Len(t, ask(t, srv, "udp", "xmpp1.example.com", dns.TypeA).Answer, 1)
		})
	}
}

func TestFaultAnyTypeAndTimes(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault("xmpp1.example.com", dns.TypeNone, dnstest.Fault{Rcode: dns.RcodeServerFailure, Times: 2})
	assert.Equal(t, dns.RcodeServerFailure, ask(t, srv, "udp", "xmpp1.example.com", dns.TypeAAAA).Rcode)
	assert.Equal(t, dns.RcodeServerFailure, ask(t, srv, "udp", "xmpp1.example.com", dns.TypeA).Rcode)
	assert.Equal(t, dns.RcodeSuccess, ask(t, srv, "udp", "xmpp1.example.com", dns.TypeA).Rcode)
}

func TestFaultTruncate(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault("_xmpp-component._tcp.example.com", dns.TypeSRV, dnstest.Fault{Truncate: true})

	m := ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	assert.True(t, m.Truncated)
	assert.Empty(t, m.Answer)

	m = ask(t, srv, "tcp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	assert.False(t, m.Truncated)
	assert.Len(t, m.Answer, 2)

	q := srv.Queries()
	require.Len(t, q, 2)
	assert.Equal(t, dnstest.Query{Name: "_xmpp-component._tcp.example.com.", Type: dns.TypeSRV, Net: dnstest.UDP}, q[0])
	assert.Equal(t, dnstest.TCP, q[1].Net)
	assert.Equal(t, "_xmpp-component._tcp.example.com. SRV tcp", q[1].String())
}

func TestLargeAnswerTruncatedOverUDP(t *testing.T) {
	srv := newServer(t)
	for i := range 1000 {
		rr, err := dns.NewRR(fmt.Sprintf("big.test. 60 IN A 10.0.%d.%d", i/256, i%256))
		require.NoError(t, err)
		srv.Add(rr)
	}
	m := ask(t, srv, "udp", "big.test", dns.TypeA)
	assert.True(t, m.Truncated)
	assert.Less(t, len(m.Answer), 1000)

	m = ask(t, srv, "tcp", "big.test", dns.TypeA)
	assert.False(t, m.Truncated)
	assert.Len(t, m.Answer, 1000)
}

func TestFaultDelay(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault("xmpp1.example.com", dns.TypeA, dnstest.Fault{Delay: 50 * time.Millisecond})
	start := time.Now()
	ask(t, srv, "udp", "xmpp1.example.com", dns.TypeA)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	srv.ClearFault("xmpp1.example.com", dns.TypeA)
	srv.SetDelay(30 * time.Millisecond)
	start = time.Now()
	ask(t, srv, "tcp", "xmpp2.example.com", dns.TypeA)
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
}

func TestFaultDrop(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault("xmpp1.example.com", dns.TypeA, dnstest.Fault{Drop: true})
	_, err := exchange(srv, "udp", "xmpp1.example.com", dns.TypeA, 100*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
	assert.Equal(t, 1, srv.Count("xmpp1.example.com", dns.TypeA, dnstest.UDP))
}

func TestFaultWrongName(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault("xmpp1.example.com", dns.TypeA, dnstest.Fault{WrongName: true})
	m := ask(t, srv, "udp", "xmpp1.example.com", dns.TypeA)
	require.Len(t, m.Answer, 1)
	assert.Equal(t, "wrong.xmpp1.example.com.", m.Answer[0].Header().Name)
	assert.Equal(t, "xmpp1.example.com.", m.Question[0].Name)
}

func TestFaultExtra(t *testing.T) {
	srv := newServer(t, zone)
	planted, err := dns.NewRR("xmpp.victim.net. 3600 IN A 127.0.0.9")
	require.NoError(t, err)
	f := dnstest.Fault{Extra: []dns.RR{planted}}
	srv.SetFault("_xmpp-component._tcp.example.com", dns.TypeSRV, f)
	planted.(*dns.A).A = net.IPv4(127, 0, 0, 10) // SetFault copied the records

	m := ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	assert.Len(t, m.Answer, 2)
	var extra []string
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr.String())
		}
	}
	assert.Contains(t, extra, "xmpp.victim.net.\t3600\tIN\tA\t127.0.0.9", "planted record appended")
	assert.Len(t, extra, 4, "the targets' A/AAAA records and the planted one")

	srv.SetFault("_xmpp-component._tcp.example.com", dns.TypeSRV, dnstest.Fault{Extra: f.Extra, Rcode: dns.RcodeServerFailure})
	m = ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	for _, rr := range m.Extra {
		assert.Equal(t, dns.TypeOPT, rr.Header().Rrtype, "an error rcode empties the additional section")
	}
}

func TestFaultMalformed(t *testing.T) {
	srv := newServer(t, zone)
	srv.SetFault("xmpp1.example.com", dns.TypeA, dnstest.Fault{Malformed: true})
	for _, network := range []string{"udp", "tcp"} {
		_, err := exchange(srv, network, "xmpp1.example.com", dns.TypeA, time.Second)
		assert.Error(t, err, network)
		var ne net.Error
		assert.False(t, assertAs(err, &ne) && ne.Timeout(), "a reply arrived, it just does not parse")
	}
}

func assertAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestConcurrentUse(t *testing.T) {
	srv := newServer(t, zone)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				name := fmt.Sprintf("h%d.test.", j)
				rr, _ := dns.NewRR(name + " 60 IN A 127.0.0.1")
				srv.Set(name, dns.TypeA, rr)
				network := "udp"
				if (i+j)%2 == 0 {
					network = "tcp"
				}
				m, err := exchange(srv, network, "_xmpp-component._tcp.example.com", dns.TypeSRV, time.Second)
				if assert.NoError(t, err) {
					assert.Len(t, m.Answer, 2)
				}
				srv.SetFault(name, 0, dnstest.Fault{Rcode: dns.RcodeRefused})
				srv.Count("", 0, "")
				srv.Queries()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 160, srv.Count("_xmpp-component._tcp.example.com", dns.TypeSRV, ""))
}

func TestCloseIdempotentAndCutsDelays(t *testing.T) {
	srv, err := dnstest.NewServer(zone)
	require.NoError(t, err)
	srv.SetDelay(time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := exchange(srv, "udp", "xmpp1.example.com", dns.TypeA, 300*time.Millisecond)
		done <- err
	}()
	require.Eventually(t, func() bool { return srv.Count("", 0, "") == 1 }, 2*time.Second, 5*time.Millisecond)
	start := time.Now()
	require.NoError(t, srv.Close())
	assert.Less(t, time.Since(start), time.Second)
	require.NoError(t, srv.Close())
	assert.Error(t, <-done)
	goleak.VerifyNone(t)
}

func TestBadZone(t *testing.T) {
	_, err := dnstest.NewServer("x IN SRV nonsense")
	assert.Error(t, err)
}

func TestLargeSRVAnswerFitsOverTCP(t *testing.T) {
	srv := newServer(t)
	for i := range 1000 {
		rr, err := dns.NewRR(fmt.Sprintf("_xmpp-component._tcp.example.com. 60 IN SRV 0 0 5223 host%d.example.com.", i))
		require.NoError(t, err)
		srv.Add(rr)
	}
	m := ask(t, srv, "udp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	assert.True(t, m.Truncated)
	m = ask(t, srv, "tcp", "_xmpp-component._tcp.example.com", dns.TypeSRV)
	assert.False(t, m.Truncated)
	assert.Len(t, m.Answer, 1000, "names are compressed so that 1000 records fit in one message")
}
