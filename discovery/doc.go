// Package discovery turns a Call Bridge's XMPP settings into an ordered list
// of endpoints to connect to: an explicit "host[:port]" server address (port
// 5223 when omitted), or a DNS SRV lookup of _xmpp-component._tcp.<domain>
// ordered as RFC 2782 prescribes, followed by A/AAAA lookups of each target.
//
// It speaks DNS itself (github.com/miekg/dns) rather than using
// net.LookupSRV, which passes a "." target through and leaves weight-0
// records in answer order.
//
// # Explicit address
//
// [ParseAddress] accepts host, host:port, [v6addr]:port, v6addr, ipv4 and
// ipv4:port, case-insensitively, with an optional trailing dot; IDNs are
// converted to their ASCII form (UTS #46 lookup profile). An explicit
// address skips SRV; a host name is still resolved to A/AAAA records.
//
// # SRV ordering (RFC 2782)
//
// Records are tried lowest priority first. Within a priority, each position
// is drawn at random with probability proportional to weight; a weight-0
// record has a small chance, 1/(sum of weights + 1), of being drawn before
// weighted ones. When every weight in a priority is 0 (as Cisco's examples
// publish: "0 0 5223 xmpp1"), the records are shuffled uniformly, so that
// many Call Bridges spread across the XMPP servers instead of all picking
// the first one listed. Each Lookup draws a fresh order, even from the cache.
// A single record with target "." means the domain offers no such service:
// Lookup fails with [ErrNoService] and does not fall back. No SRV records at
// all fails with [ErrNoSRV], unless Request.FallbackToDomain asks for
// <domain>:5223.
//
// # Addresses
//
// The A and AAAA records of every target are queried at once (or taken from
// the SRV reply's additional section), CNAME chains are followed up to 8
// names, and each endpoint's addresses alternate between the families for
// RFC 8305 connection racing. A target without addresses is skipped with a
// note in the trace; only when all fail does Lookup return
// [ErrNoAddresses]. Of an SRV reply's additional section, only the A and
// AAAA records of the targets named in that same answer are used and cached;
// any other record is ignored, so that a reply cannot plant addresses for
// unrelated names.
//
// # Resolver behaviour
//
// A [Resolver] sends UDP queries with EDNS0 and retries over TCP on
// truncation, moves to the next name server on timeout, SERVFAIL, REFUSED or
// a bad reply, caches answers within their TTL (clamped), serves a stale
// answer when every name server fails (RFC 8767), and shares one query among
// concurrent lookups of the same name. When ctx ends, the queries in flight
// are abandoned at once and Lookup returns ctx's error, wrapped in an
// [*Error] of [KindCanceled] ([KindTimeout] when its deadline passed).
// Malformed, oversized, looping or mismatched replies are reported as an
// [*Error] with a [Kind], never a panic. Every query appears in
// [Result.Trace].
//
//	var r discovery.Resolver // name servers from /etc/resolv.conf
//	res, err := r.Lookup(ctx, discovery.Request{Domain: "example.com"})
//	if err != nil { ... }
//	for _, ep := range res.Endpoints {
//		// dial ep.Addrs on ep.Port, verify the certificate names ep.Target
//	}
package discovery
