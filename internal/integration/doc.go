//go:build integration

// Package integration tests cblink against real servers on loopback: Prosody
// 0.12 as the XMPP server (XEP-0114 components over direct TLS, a c2s user
// playing the web side) and dnsmasq serving the _xmpp-component._tcp SRV
// records (RFC 2782) and A records of the XMPP servers. Besides the protocol
// packages it drives the callbridge supervisor (failover, fail-back,
// permanent errors) and the examples/xmppcheck binary.
//
// Every file carries the integration build tag; run with
//
//	go test -race -tags integration ./internal/integration/
//
// The harness (startProsody, startDNS, dialComponent, dialC2S) writes the
// server configurations into t.TempDir(), picks free loopback addresses and
// ports, starts the servers as child processes, waits until they accept
// connections and stops them in t.Cleanup. TestMain checks at the end that
// no server process is left and no port is still bound. A missing server
// binary fails the tests when the CI environment variable is set and skips
// them otherwise, saying which Debian package to install.
package integration
