// Command callbridge is a Call Bridge process built on cblink. With -demo it
// runs a self-contained scenario on loopback: in-process XMPP and DNS servers,
// SRV discovery, TLS, the XEP-0114 handshake, join requests and a failover.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	demo := flag.Bool("demo", false, "run the self-contained demo scenario on loopback")
	flag.Parse()
	if !*demo {
		fmt.Fprintln(os.Stderr, "callbridge: only -demo is available yet")
		os.Exit(2)
	}
	fmt.Println("cblink demo: not built yet; it will start two in-process XMPP servers and a DNS server,")
	fmt.Println("connect through SRV and TLS, log in as an XEP-0114 component, handle join requests and fail over.")
}
