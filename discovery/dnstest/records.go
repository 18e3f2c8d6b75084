package dnstest

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Add adds records to the server. Records are copied; the owner name is
// matched case-insensitively.
func (s *Server) Add(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		h := rr.Header()
		k := rrKey{canonical(h.Name), h.Rrtype}
		s.records[k] = append(s.records[k], dns.Copy(rr))
	}
}

// AddZone parses zone-file text (RFC 1035 master file format, with $ORIGIN
// and $TTL; $INCLUDE is refused) and adds its records. Names are relative to
// the root unless the text sets $ORIGIN; the default TTL is 3600.
func (s *Server) AddZone(text string) error {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "zone")
	zp.SetDefaultTTL(3600)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("dnstest: parse zone: %w", err)
	}
	s.Add(rrs...)
	return nil
}

// Set replaces the records of the given name and type with rrs (which must
// all have that name and type); with no rrs it removes them.
func (s *Server) Set(name string, qtype uint16, rrs ...dns.RR) {
	k := rrKey{canonical(name), qtype}
	cp := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		cp = append(cp, dns.Copy(rr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(cp) == 0 {
		delete(s.records, k)
		return
	}
	s.records[k] = cp
}

// Remove removes the records of the given name and type; qtype
// dns.TypeNone (0) removes every type at that name.
func (s *Server) Remove(name string, qtype uint16) {
	name = canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.records {
		if k.name == name && (qtype == dns.TypeNone || k.qtype == qtype) {
			delete(s.records, k)
		}
	}
}

// SetAdditional switches whether SRV answers carry the A/AAAA records of
// their targets in the additional section (on by default).
func (s *Server) SetAdditional(on bool) {
	s.mu.Lock()
	s.additional = on
	s.mu.Unlock()
}

func copyAll(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}
