// Package dnstest provides an in-process DNS server on loopback for tests of
// code that performs SRV and A/AAAA lookups, in the spirit of net/http/httptest.
//
// A [Server] listens on 127.0.0.1 for UDP and TCP on the same ephemeral port,
// answers authoritatively (RFC 1034/1035) from records loaded in code ([Server.Add],
// [Server.Set]) or from zone-file text ([Server.AddZone]), chases CNAMEs, adds
// the A/AAAA records of SRV targets (RFC 2782) to the additional section, and
// truncates UDP answers larger than the client's advertised size (RFC 6891) so
// that the client must retry over TCP.
//
// Faults can be injected per name and type ([Server.SetFault]): an error
// rcode, a delay, a dropped query, a truncated UDP answer, records with the
// wrong owner name, a malformed reply, or extra records in the additional
// section. Every query is logged ([Server.Queries], [Server.Count]) so that
// tests can assert what a client asked and over which transport.
//
//	srv, err := dnstest.NewServer(`
//	$ORIGIN example.com.
//	$TTL 300
//	_xmpp-component._tcp IN SRV 0 0 5223 xmpp
//	xmpp IN A 127.0.0.1
//	`)
//	if err != nil { ... }
//	defer srv.Close()
//	// point the resolver under test at srv.Addr()
package dnstest
