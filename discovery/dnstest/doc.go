// Package dnstest provides an in-process DNS server on loopback for tests of
// code that performs SRV and A/AAAA lookups, in the spirit of net/http/httptest.
package dnstest
