// Package xstream is the wire layer of an XEP-0114 component stream, shared
// by the client (package component) and the test server (componenttest):
// a bounded, allocation-free framer that cuts the incoming byte stream into
// top-level elements, the stream header, a queued writer that coalesces
// stanzas into few writes, escaping, and the handshake digest.
//
// The framer does not build a DOM or a token stream: it finds where each
// top-level element ends (respecting quotes, CDATA and nesting, checking
// that end tags match), enforces a size and depth bound, and hands the raw
// bytes to the caller, who decodes only what it needs. This is what lets a
// link answer hundreds of thousands of pings a second.
//
// It accepts the restricted XML of RFC 6120 section 11: comments, processing
// instructions (except the XML declaration before the header) and DTDs are
// rejected.
package xstream
