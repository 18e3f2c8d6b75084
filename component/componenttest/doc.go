// Package componenttest provides an in-process XMPP server that accepts
// XEP-0114 component connections, for tests of Call Bridge programs, in the
// spirit of net/http/httptest.
package componenttest
