package dnstest

import (
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEChase bounds how many CNAMEs the server follows in one answer, as a
// real server does; a loop simply stops there.
const maxCNAMEChase = 16

// udpAdvertised is the EDNS0 payload size the server advertises in replies.
const udpAdvertised = 1232

// plan is what serveDNS decided under the lock.
type plan struct {
	fault Fault
	delay time.Duration
	reply *dns.Msg
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := UDP
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = TCP
	}
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcodeFormatError(req)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)

	p := s.prepare(req, name, q.Qtype, network)
	if d := p.delay + p.fault.Delay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
	}
	f := p.fault
	m := p.reply
	switch {
	case f.Drop:
		return
	case f.Malformed:
		buf, err := m.Pack()
		if err != nil || len(buf) < 12 {
			return
		}
		// Append an additional record whose owner name is a compression
		// pointer far beyond the end of the message.
		ar := int(buf[10])<<8 | int(buf[11]) + 1
		buf[10], buf[11] = byte(ar>>8), byte(ar)
		buf = append(buf, 0xff, 0xff, 0, 1, 0, 1)
		_, _ = w.Write(buf)
		return
	case f.Rcode != dns.RcodeSuccess:
		m.Rcode = f.Rcode
		m.Answer, m.Ns, m.Extra = nil, nil, keepOPT(m.Extra)
	case f.Truncate && network == UDP:
		m.Truncated = true
		m.Answer, m.Ns, m.Extra = nil, nil, keepOPT(m.Extra)
	}
	if f.WrongName {
		for _, rr := range m.Answer {
			rr.Header().Name = "wrong." + name
		}
	}
	// Like a real server: compress names, and truncate what does not fit
	// in the client's UDP size or, over TCP, in one message.
	m.Compress = true
	size := dns.MaxMsgSize
	if network == UDP {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(min(opt.UDPSize(), udpAdvertised))
		}
	}
	m.Truncate(size)
	_ = w.WriteMsg(m)
}

func keepOPT(extra []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// prepare logs the query, picks the fault and builds the normal reply, all
// under one lock so that the reply reflects one consistent state.
func (s *Server) prepare(req *dns.Msg, name string, qtype uint16, network string) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, Query{Name: name, Type: qtype, Net: network})

	var p plan
	p.delay = s.delay
	for _, k := range []rrKey{{name, qtype}, {name, dns.TypeNone}} {
		if f, ok := s.faults[k]; ok {
			p.fault = *f
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					delete(s.faults, k)
				}
			}
			break
		}
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(udpAdvertised, false)
	}
	s.answer(m, name, qtype)
	m.Extra = append(m.Extra, copyAll(p.fault.Extra)...)
	p.reply = m
	return p
}

// answer fills m like an authoritative server: the records of (name, qtype),
// the CNAME chain leading to them, the SRV targets' addresses, and the SOA of
// the enclosing zone (if loaded) for negative answers.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	seen := map[string]bool{}
	cur := name
	for range maxCNAMEChase {
		if seen[cur] {
			return // CNAME loop: stop, as real servers do
		}
		seen[cur] = true
		if rrs := s.records[rrKey{cur, qtype}]; len(rrs) > 0 {
			m.Answer = append(m.Answer, copyAll(rrs)...)
			break
		}
		if qtype != dns.TypeCNAME {
			if c := s.records[rrKey{cur, dns.TypeCNAME}]; len(c) > 0 {
				m.Answer = append(m.Answer, dns.Copy(c[0]))
				cur = canonical(c[0].(*dns.CNAME).Target)
				continue
			}
		}
		// Negative answer for cur.
		if !s.exists(cur) {
			m.Rcode = dns.RcodeNameError
		}
		if soa := s.soaFor(cur); soa != nil {
			m.Ns = append(m.Ns, soa)
		}
		return
	}
	if qtype == dns.TypeSRV && s.additional {
		for _, rr := range m.Answer {
			srv, ok := rr.(*dns.SRV)
			if !ok || srv.Target == "." {
				continue
			}
			t := canonical(srv.Target)
			m.Extra = append(m.Extra, copyAll(s.records[rrKey{t, dns.TypeA}])...)
			m.Extra = append(m.Extra, copyAll(s.records[rrKey{t, dns.TypeAAAA}])...)
		}
	}
}

// exists reports whether name owns records or is an empty non-terminal.
func (s *Server) exists(name string) bool {
	for k := range s.records {
		if k.name == name || strings.HasSuffix(k.name, "."+name) {
			return true
		}
	}
	return false
}

func (s *Server) soaFor(name string) dns.RR {
	for n := name; ; {
		if rrs := s.records[rrKey{n, dns.TypeSOA}]; len(rrs) > 0 {
			return dns.Copy(rrs[0])
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || n == "." {
			return nil
		}
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}
