package discovery

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// rrset is the processed answer to one question.
type rrset struct {
	final    string   // owner name after following CNAMEs
	records  []dns.RR // records of the type asked at final
	extra    []dns.RR // additional section (SRV answers)
	ttl      time.Duration
	negative bool // NXDOMAIN or no data
	stale    bool // served from an expired cache entry
	nxdomain bool
}

// rrsetFromReply checks a reply and extracts the records for (name, qtype),
// following the CNAME chain it carries. An answer that ends on a CNAME
// without data yields a set with final set to the CNAME target and no
// records, which followCNAMEs chases.
func (r *Resolver) rrsetFromReply(m *dns.Msg, name string, qtype uint16) (*rrset, *Error) {
	if !m.Response || len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, name) || m.Question[0].Qtype != qtype {
		return nil, &Error{Kind: KindWrongName, Name: name, Err: errors.New("reply does not match the question")}
	}
	switch m.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	case dns.RcodeRefused:
		return nil, &Error{Kind: KindRefused, Name: name, Err: errors.New("name server answered REFUSED")}
	default:
		return nil, &Error{Kind: KindServerFailure, Name: name, Err: errors.New("name server answered " + rcodeName(m.Rcode))}
	}
	limit := r.maxRecords()
	if len(m.Answer) > limit || len(m.Extra) > 2*limit+1 {
		return nil, &Error{Kind: KindTooLarge, Name: name,
			Err: fmt.Errorf("reply has %d answer and %d additional records, more than the %d accepted", len(m.Answer), len(m.Extra), limit)}
	}
	cnames := make(map[string]*dns.CNAME)
	for _, rr := range m.Answer {
		if c, ok := rr.(*dns.CNAME); ok && rr.Header().Class == dns.ClassINET {
			cnames[dns.CanonicalName(c.Hdr.Name)] = c
		}
	}
	set := &rrset{ttl: forever}
	cur := dns.CanonicalName(name)
	chain := map[string]bool{cur: true}
	for qtype != dns.TypeCNAME {
		c, ok := cnames[cur]
		if !ok {
			break
		}
		set.ttl = min(set.ttl, ttlOf(c))
		cur = dns.CanonicalName(c.Target)
		if chain[cur] || len(chain) > maxCNAMEs {
			return nil, &Error{Kind: KindCNAMELoop, Name: name, Err: fmt.Errorf("CNAME chain loops or exceeds %d names at %s", maxCNAMEs, cur)}
		}
		chain[cur] = true
	}
	set.final = cur
	matched := false
	for _, rr := range m.Answer {
		h := rr.Header()
		owner := dns.CanonicalName(h.Name)
		if !chain[owner] || h.Class != dns.ClassINET {
			continue
		}
		matched = true
		if h.Rrtype != qtype || owner != cur {
			continue
		}
		if err := checkRecord(rr); err != nil {
			return nil, &Error{Kind: KindMalformed, Name: name, Err: err}
		}
		set.records = append(set.records, rr)
		set.ttl = min(set.ttl, ttlOf(rr))
	}
	if len(m.Answer) > 0 && !matched {
		return nil, &Error{Kind: KindWrongName, Name: name,
			Err: fmt.Errorf("answer records are for %s, not the name asked", m.Answer[0].Header().Name)}
	}
	if len(set.records) == 0 {
		set.negative = true
		set.nxdomain = m.Rcode == dns.RcodeNameError
		set.ttl = min(set.ttl, negativeTTL(m))
		// A chain ending without data is a final answer when the reply is
		// negative (NXDOMAIN, or an SOA in the authority section, RFC
		// 2308); otherwise the server did not follow it and we must.
		if cur != dns.CanonicalName(name) && !set.nxdomain && !hasSOA(m) {
			set.negative = false
		}
	}
	if qtype == dns.TypeSRV {
		set.extra = inBailiwick(m.Extra, set.records)
	}
	return set, nil
}

// inBailiwick returns the A and AAAA records of extra (an SRV reply's
// additional section) whose owner is the target of one of the SRV records
// srvs. Any other record could plant addresses for an unrelated name in the
// cache, so it is dropped.
func inBailiwick(extra, srvs []dns.RR) []dns.RR {
	targets := make(map[string]bool, len(srvs))
	for _, rr := range srvs {
		if s, ok := rr.(*dns.SRV); ok && s.Target != "." {
			targets[dns.CanonicalName(s.Target)] = true
		}
	}
	var out []dns.RR
	for _, rr := range extra {
		switch rr.(type) {
		case *dns.A, *dns.AAAA:
			h := rr.Header()
			if h.Class == dns.ClassINET && targets[dns.CanonicalName(h.Name)] {
				out = append(out, rr)
			}
		}
	}
	return out
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rc)
}

func ttlOf(rr dns.RR) time.Duration { return time.Duration(rr.Header().Ttl) * time.Second }

func hasSOA(m *dns.Msg) bool {
	for _, rr := range m.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

// negativeTTL follows RFC 2308: the lesser of the SOA's TTL and MINIMUM.
func negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return 0
}

// checkRecord rejects records that unpacked but cannot be used.
func checkRecord(rr dns.RR) error {
	switch v := rr.(type) {
	case *dns.A:
		if v.A.To4() == nil {
			return fmt.Errorf("record A for %s holds no IPv4 address", v.Hdr.Name)
		}
	case *dns.AAAA:
		if len(v.AAAA) != net.IPv6len {
			return fmt.Errorf("record AAAA for %s holds no IPv6 address", v.Hdr.Name)
		}
	}
	return nil
}
