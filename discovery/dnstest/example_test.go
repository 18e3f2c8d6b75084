package dnstest_test

import (
	"fmt"

	"github.com/miekg/dns"

	"github.com/cblink/cblink/discovery/dnstest"
)

func ExampleServer_SetFault() {
	srv, err := dnstest.NewServer(`
$ORIGIN example.com.
_xmpp-component._tcp 300 IN SRV 0 0 5223 xmpp
xmpp 300 IN A 127.0.0.1
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	// Force the client over to TCP for the SRV query.
	srv.SetFault("_xmpp-component._tcp.example.com", dns.TypeSRV, dnstest.Fault{Truncate: true})

	q := new(dns.Msg)
	q.SetQuestion("_xmpp-component._tcp.example.com.", dns.TypeSRV)
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network}
		r, _, err := c.Exchange(q, srv.Addr())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: truncated=%v answers=%d additional A=%d\n", network, r.Truncated, len(r.Answer), len(r.Extra))
	}
	fmt.Println(srv.Count("", dns.TypeSRV, dnstest.TCP), "query over TCP")
	// Output:
	// udp: truncated=true answers=0 additional A=0
	// tcp: truncated=false answers=1 additional A=1
	// 1 query over TCP
}
