// Package discovery turns a Call Bridge's XMPP settings into an ordered list
// of endpoints to connect to: an explicit "host[:port]" server address (port
// 5223 when omitted), or a DNS SRV lookup of _xmpp-component._tcp.<domain>
// ordered as RFC 2782 prescribes, followed by A/AAAA lookups of each target.
package discovery
