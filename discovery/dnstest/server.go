package dnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Transport names used in [Query.Net] and [Server.Count].
const (
	UDP = "udp"
	TCP = "tcp"
)

// maxCNAMEChase bounds how many CNAMEs the server follows in one answer, as a
// real server does; a loop simply stops there.
const maxCNAMEChase = 16

// udpAdvertised is the EDNS0 payload size the server advertises in replies.
const udpAdvertised = 1232

// Query is one query the server received.
type Query struct {
	Name string // owner name, lowercase, fully qualified (trailing dot)
	Type uint16 // query type, such as dns.TypeSRV
	Net  string // UDP or TCP
}

// String formats q as "name TYPE net".
func (q Query) String() string {
	return q.Name + " " + dns.TypeToString[q.Type] + " " + q.Net
}

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

type rrKey struct {
	name  string
	qtype uint16
}

// Server is an authoritative DNS server on 127.0.0.1 for tests. Its methods
// are safe for concurrent use, also while it serves queries.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	done      chan struct{} // closed by Close to cut delays short
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	records    map[rrKey][]dns.RR
	faults     map[rrKey]*Fault // qtype dns.TypeNone matches every type
	delay      time.Duration
	additional bool
	queries    []Query
}

// NewServer starts a server on 127.0.0.1 (UDP and TCP on the same ephemeral
// port) and loads the given zone-file texts into it with [Server.AddZone].
// The SRV additional section is on. Call Close when done.
func NewServer(zones ...string) (*Server, error) {
	s := &Server{
		done:       make(chan struct{}),
		records:    make(map[rrKey][]dns.RR),
		faults:     make(map[rrKey]*Fault),
		additional: true,
	}
	for _, z := range zones {
		if err := s.AddZone(z); err != nil {
			return nil, err
		}
	}
	pc, l, err := listen()
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	handler := dns.HandlerFunc(s.serveDNS)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: notify, UDPSize: dns.MaxMsgSize}
	s.tcp = &dns.Server{Listener: l, Handler: handler, NotifyStartedFunc: notify}
	errc := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-errc:
			_ = s.Close()
			return nil, fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return s, nil
}

// listen binds UDP on an ephemeral loopback port, then TCP on the same port,
// trying new ports when the TCP port is taken.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dnstest: listen udp: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		lastErr = err
		pc.Close()
	}
	return nil, nil, fmt.Errorf("dnstest: listen tcp: %w", lastErr)
}

// Addr returns the server's address, "127.0.0.1:port", for both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits until every goroutine it started has
// returned. Pending delayed replies are abandoned. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		var errs []error
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if srv == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := srv.ShutdownContext(ctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		s.wg.Wait()
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("dnstest: close: %w", err)
		}
	})
	return s.closeErr
}

func canonical(name string) string { return dns.CanonicalName(name) }

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

// Queries returns a copy of the log of queries received, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// Count returns how many queries matched: name "" matches any name, qtype
// dns.TypeNone (0) any type, network "" any transport. Count("", 0, "") is
// the total.
func (s *Server) Count(name string, qtype uint16, network string) int {
	if name != "" {
		name = canonical(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if (name == "" || q.Name == name) && (qtype == dns.TypeNone || q.Type == qtype) && (network == "" || q.Net == network) {
			n++
		}
	}
	return n
}

// ResetQueries clears the query log.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	s.queries = nil
	s.mu.Unlock()
}

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

func copyAll(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

// String describes the server for test failure messages.
func (s *Server) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "dnstest.Server(" + s.addr + ", " + strconv.Itoa(len(s.records)) + " rrsets)"
}
