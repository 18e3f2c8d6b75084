// Package tlsverify checks an XMPP server's certificate the way a Call Bridge
// needs it checked: a chain to a trusted root, and DNS SANs (RFC 6125) that
// name both the XMPP domain and the server's FQDN, with errors that say
// exactly which name is missing.
package tlsverify
