// Package component implements one authenticated XEP-0114 (Jabber Component
// Protocol) link over an already-dialled connection: the handshake, then
// sending, receiving and dispatching stanzas until the link ends. It never
// reconnects; package callbridge does that.
package component
