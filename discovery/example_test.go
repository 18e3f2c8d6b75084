package discovery_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/discovery/dnstest"
)

func ExampleResolver_Lookup() {
	// A DNS server publishing the records Cisco's documentation shows.
	srv, err := dnstest.NewServer(`
$ORIGIN example.com.
_xmpp-component._tcp 300 IN SRV 0 0 5223 xmpp
xmpp 300 IN A 127.0.0.1
xmpp 300 IN AAAA ::1
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	r := &discovery.Resolver{NameServers: []string{srv.Addr()}}
	res, err := r.Lookup(context.Background(), discovery.Request{Domain: "example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ep := range res.Endpoints {
		fmt.Println(ep.Target, ep.Port, ep.Addrs, ep.TTL)
	}

	// A "." target means no service, and is not a reason to fall back.
	srv.Remove("_xmpp-component._tcp.example.com", 0)
	if err := srv.AddZone("_xmpp-component._tcp.example.com. 300 IN SRV 0 0 0 ."); err != nil {
		fmt.Println(err)
		return
	}
	r = &discovery.Resolver{NameServers: []string{srv.Addr()}}
	_, err = r.Lookup(context.Background(), discovery.Request{Domain: "example.com", FallbackToDomain: true})
	fmt.Println(errors.Is(err, discovery.ErrNoService))
	// Output:
	// xmpp.example.com 5223 [127.0.0.1 ::1] 5m0s
	// true
}

func ExampleParseAddress() {
	for _, s := range []string{"XMPP.example.com.", "bücher.example:5270", "[2001:db8::1]:5223", "192.0.2.7", "xmpp://x", "h.example:70000"} {
		a, err := discovery.ParseAddress(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(a.Host, a.Port)
	}
	// Output:
	// xmpp.example.com 5223
	// xn--bcher-kva.example 5270
	// 2001:db8::1 5223
	// 192.0.2.7 5223
	// discovery: parse server address "xmpp://x": has a URL scheme; want host[:port]
	// discovery: parse server address "h.example:70000": has a port above 65535
}
