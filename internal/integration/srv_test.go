//go:build integration

package integration

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/discovery"
)

// TestIntegrationSRVToPing follows a Call Bridge with an empty server
// address: SRV lookup through dnsmasq (two Prosody instances, priorities 10
// and 20), direct TLS to the preferred target checked by tlsverify, the
// XEP-0114 handshake, then XEP-0199 pings both ways: the component pings the
// server, and a c2s user pings the component through the server.
func TestIntegrationSRVToPing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pki := newPKI(t)
	p1 := startProsody(t, prosodyOptions{FQDN: "xmpp1.example.com", PKI: pki})
	p2 := startProsody(t, prosodyOptions{FQDN: "xmpp2.example.com", PKI: pki})
	dns := startDNS(t, dnsZone{
		// Listed in the wrong order on purpose: priority must decide.
		SRV: []srvRecord{
			{Target: p2.FQDN, Port: p2.TLSPort, Priority: 20, Weight: 0},
			{Target: p1.FQDN, Port: p1.TLSPort, Priority: 10, Weight: 60},
		},
		Hosts: []hostRecord{
			{Name: p1.FQDN, Addrs: []netip.Addr{p1.IP}},
			{Name: p2.FQDN, Addrs: []netip.Addr{p2.IP}},
		},
	})

	r := dns.Resolver()
	res, err := r.Lookup(ctx, discovery.Request{Domain: domain})
	require.NoError(t, err)
	for _, e := range res.Trace {
		t.Logf("dns: %v", e)
	}
	require.Len(t, res.Endpoints, 2)
	assert.False(t, res.Explicit)
	want := []struct {
		p        *prosody
		priority uint16
	}{{p1, 10}, {p2, 20}}
	for i, w := range want {
		ep := res.Endpoints[i]
		assert.Equal(t, w.p.FQDN, ep.Target, "endpoint %d", i)
		assert.Equal(t, w.p.TLSPort, ep.Port, "endpoint %d", i)
		assert.Equal(t, w.priority, ep.Priority, "endpoint %d", i)
		assert.Equal(t, []netip.Addr{w.p.IP}, ep.Addrs, "endpoint %d", i)
	}

	// Dial the preferred endpoint exactly as discovered.
	ep := res.Endpoints[0]
	addr := net.JoinHostPort(ep.Addrs[0].String(), strconv.Itoa(int(ep.Port)))
	s, tm, err := dialComponent(ctx, t, linkOptions{Addr: addr, ServerName: ep.Target, Roots: pki.Pool})
	require.NoError(t, err)
	t.Logf("link to %s (%s): %v", ep.Target, addr, tm)
	assert.Equal(t, componentAddr, s.Addr().String())

	// Component -> server: Prosody's mod_ping answers.
	rtt, err := s.Ping(ctx)
	require.NoError(t, err)
	assert.Positive(t, rtt)
	t.Logf("component -> %s ping: %v", domain, rtt)

	// Server side -> component: a c2s user on the same server pings the
	// component's address; the component answers through Prosody.
	user := dialC2S(ctx, t, p1, defaultUser, defaultPassword)
	before := s.Stats().PingsAnswered
	begin := time.Now()
	require.NoError(t, user.Ping(ctx, jid.MustParse(componentAddr)))
	t.Logf("c2s %s -> %s ping: %v", user.JID, componentAddr, time.Since(begin))
	assert.Greater(t, s.Stats().PingsAnswered, before, "the component answered the ping itself")

	// The other server holds no link: a ping to the component from there
	// must fail, proving the first one really went through our link.
	other := dialC2S(ctx, t, p2, defaultUser, defaultPassword)
	err = other.Ping(ctx, jid.MustParse(componentAddr))
	var se stanza.Error
	require.ErrorAs(t, err, &se, "Prosody without the link must answer with a stanza error")
	t.Logf("ping via %s, which has no link: %s %v", p2.FQDN, se.Condition, se.Text)

	require.NoError(t, s.Err(), "the link is still up")
}
