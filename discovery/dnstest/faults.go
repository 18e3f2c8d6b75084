package dnstest

import (
	"time"

	"github.com/miekg/dns"
)

// Fault describes how the server misbehaves for matching queries. The zero
// Fault answers normally. Several fields may be combined: Delay applies
// first, then Drop, Malformed, Rcode, Truncate and WrongName in that order of
// precedence.
type Fault struct {
	// Rcode, when not zero (dns.RcodeSuccess), is returned with empty
	// sections, for example dns.RcodeServerFailure, dns.RcodeNameError or
	// dns.RcodeRefused.
	Rcode int
	// Delay holds the reply back for this long (Close cuts it short).
	Delay time.Duration
	// Drop sends no reply at all, so the client times out.
	Drop bool
	// Truncate answers UDP queries with the TC bit set and no records, so the
	// client must retry over TCP; TCP queries get the whole answer.
	Truncate bool
	// WrongName gives every answer record the owner name "wrong." + qname.
	WrongName bool
	// Malformed sends a reply with a garbage record appended, so unpacking
	// it fails.
	Malformed bool
	// Extra records are appended to the additional section of the reply,
	// whatever their names, as a misbehaving or poisoning server might do.
	// A fault Rcode or a truncated UDP reply empties that section.
	Extra []dns.RR
	// Times limits the fault to this many matching queries; 0 means for
	// ever.
	Times int
}

// SetDelay delays every reply by d (0 turns it off), on top of any per-name
// Fault delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// SetFault makes queries for name misbehave as f describes. qtype
// dns.TypeNone (0) matches every type; a fault for a specific type takes
// precedence over one for every type.
func (s *Server) SetFault(name string, qtype uint16, f Fault) {
	f.Extra = copyAll(f.Extra)
	s.mu.Lock()
	s.faults[rrKey{canonical(name), qtype}] = &f
	s.mu.Unlock()
}

// ClearFault removes a fault set with the same name and qtype.
func (s *Server) ClearFault(name string, qtype uint16) {
	s.mu.Lock()
	delete(s.faults, rrKey{canonical(name), qtype})
	s.mu.Unlock()
}
