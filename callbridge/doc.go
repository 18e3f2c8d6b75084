// Package callbridge plays the Call Bridge of Cisco Meeting Server toward its
// XMPP server: it finds the server (explicit address or DNS SRV), connects
// over direct TLS, checks that the certificate names both the XMPP domain and
// the server, logs in as an XEP-0114 component, and keeps exactly one healthy
// link up for as long as its context lives, dispatching incoming join
// requests to the program's handlers.
package callbridge
