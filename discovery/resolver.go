package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero values of [Resolver] fields.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultAttempts   = 2
	DefaultMaxTTL     = time.Hour
	DefaultMaxStale   = 24 * time.Hour
	DefaultMaxRecords = 64
	// ResolvConf is the file read when Resolver.NameServers is empty.
	ResolvConf = "/etc/resolv.conf"
)

const (
	udpSize      = 1232 // EDNS0 payload size (DNS flag day 2020)
	maxCNAMEs    = 8    // CNAME chain length accepted
	staleTTL     = 30 * time.Second
	maxCacheSize = 4096
)

// Resolver finds XMPP component endpoints in DNS. Its zero value is usable:
// it reads the name servers from /etc/resolv.conf on first use. A Resolver
// is safe for concurrent use; do not change its fields after first use. It
// starts no goroutine that outlives a call.
type Resolver struct {
	// NameServers are "host:port" (or "host", port 53) addresses queried in
	// order, moving to the next on timeout, SERVFAIL, REFUSED or a bad
	// reply. Empty: those of /etc/resolv.conf.
	NameServers []string
	// Timeout bounds each query to one name server. Zero: the resolv.conf
	// timeout when NameServers is empty, else DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many rounds over all name servers a query makes. Zero:
	// the resolv.conf attempts when NameServers is empty, else
	// DefaultAttempts.
	Attempts int
	// MinTTL and MaxTTL clamp how long answers are cached (zero MinTTL: no
	// floor, so a TTL of 0 is not cached; zero MaxTTL: DefaultMaxTTL). They
	// also clamp the TTL reported on endpoints.
	MinTTL, MaxTTL time.Duration
	// MaxStale is how long after expiry a cached answer may still be served
	// when every name server fails (RFC 8767). Zero: DefaultMaxStale;
	// negative: never serve stale answers.
	MaxStale time.Duration
	// MaxRecords bounds the records accepted in one answer; a larger answer
	// is an error of KindTooLarge. Zero: DefaultMaxRecords.
	MaxRecords int
	// Rand orders SRV records of equal priority. Nil: the math/rand/v2
	// global source. A non-nil Rand is used under a lock.
	Rand *rand.Rand
	// Now returns the current time for cache expiry. Nil: time.Now.
	Now func() time.Time

	sequential bool // tests: resolve targets one at a time (benchmark baseline)

	confOnce sync.Once
	conf     resolvConf

	randMu sync.Mutex

	mu      sync.Mutex
	cache   map[cacheKey]*cacheEntry
	flights map[cacheKey]*flight
	plans   map[Request]*plan
}

type resolvConf struct {
	servers  []string
	timeout  time.Duration
	attempts int
	err      error
}

// config resolves the name servers, timeout and attempts once.
func (r *Resolver) config() *resolvConf {
	r.confOnce.Do(func() {
		c := &r.conf
		c.timeout, c.attempts = DefaultTimeout, DefaultAttempts
		servers := r.NameServers
		if len(servers) == 0 {
			cc, err := dns.ClientConfigFromFile(ResolvConf)
			if err != nil {
				c.err = &Error{Op: "read", Name: ResolvConf, Kind: KindNoNameServers, Err: err}
				return
			}
			for _, s := range cc.Servers {
				servers = append(servers, net.JoinHostPort(s, cc.Port))
			}
			if cc.Timeout > 0 {
				c.timeout = time.Duration(cc.Timeout) * time.Second
			}
			if cc.Attempts > 0 {
				c.attempts = cc.Attempts
			}
		}
		for _, s := range servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
			}
			c.servers = append(c.servers, s)
		}
		if r.Timeout > 0 {
			c.timeout = r.Timeout
		}
		if r.Attempts > 0 {
			c.attempts = r.Attempts
		}
		if len(c.servers) == 0 {
			c.err = &Error{Op: "configure", Name: ResolvConf, Kind: KindNoNameServers}
		}
	})
	return &r.conf
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) maxRecords() int {
	if r.MaxRecords > 0 {
		return r.MaxRecords
	}
	return DefaultMaxRecords
}

func (r *Resolver) maxStale() time.Duration {
	if r.MaxStale == 0 {
		return DefaultMaxStale
	}
	return max(r.MaxStale, 0)
}

// clampTTL applies MinTTL and MaxTTL.
func (r *Resolver) clampTTL(d time.Duration) time.Duration {
	hi := r.MaxTTL
	if hi <= 0 {
		hi = DefaultMaxTTL
	}
	return min(max(d, r.MinTTL), hi)
}

// intN returns a random int in [0, n).
func (r *Resolver) intN(n int) int {
	if r.Rand == nil {
		return rand.IntN(n)
	}
	r.randMu.Lock()
	defer r.randMu.Unlock()
	return r.Rand.IntN(n)
}

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

// ask sends one question to the name servers in turn, Attempts rounds, and
// returns the first usable processed reply.
func (r *Resolver) ask(ctx context.Context, name string, qtype uint16, tr *tracer) (*rrset, error) {
	conf := r.config()
	if conf.err != nil {
		return nil, conf.err
	}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(udpSize, false)
	op := "lookup " + dns.TypeToString[qtype]
	var last *Error
	for range conf.attempts {
		for _, server := range conf.servers {
			if err := ctx.Err(); err != nil {
				return nil, ctxError(op, name, err)
			}
			set, err := r.exchange(ctx, server, q, conf.timeout, tr)
			if err == nil {
				return set, nil
			}
			var e *Error
			if !errors.As(err, &e) {
				return nil, err
			}
			switch e.Kind {
			case KindUnknown, KindTooLarge, KindCNAMELoop:
				// The context ended, or the data itself is bad: another
				// server or round would give the same.
				return nil, e
			}
			last = e
		}
	}
	return nil, last
}

// ctxDone is ctx.Err(), also when the deadline has passed but the context's
// timer has not fired yet (a read that timed out at the deadline).
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

func ctxError(op, name string, err error) *Error {
	k := KindUnknown
	if errors.Is(err, context.DeadlineExceeded) {
		k = KindTimeout
	}
	return &Error{Op: op, Name: name, Kind: k, Err: err}
}

// exchange queries one server over UDP, retrying over TCP when the reply is
// truncated, and processes the reply. Every exchange is traced.
func (r *Resolver) exchange(ctx context.Context, server string, q *dns.Msg, timeout time.Duration, tr *tracer) (*rrset, error) {
	name, qtype := q.Question[0].Name, q.Question[0].Qtype
	op := "lookup " + dns.TypeToString[qtype]
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		resp, err := exchangeOnce(ctx, network, server, q, timeout)
		te := TraceEntry{Name: name, Type: dns.TypeToString[qtype], Server: server, Net: network,
			Duration: time.Since(start), Source: SourceNetwork}
		if err != nil {
			kind := KindNetwork
			var ne net.Error
			if cerr := ctxDone(ctx); cerr != nil {
				te.Err = cerr
				tr.add(te)
				return nil, ctxError(op, name, cerr)
			}
			switch {
			case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
				kind = KindTimeout
			case resp != nil:
				// A reply arrived but does not unpack.
				if network == "udp" && resp.Truncated {
					te.Note = "truncated reply does not parse; retrying over TCP"
					te.Err = err
					tr.add(te)
					continue
				}
				kind = KindMalformed
			}
			te.Err = err
			tr.add(te)
			return nil, &Error{Op: op, Name: name, Server: server, Kind: kind, Err: err}
		}
		te.Rcode = dns.RcodeToString[resp.Rcode]
		te.Answers = presentation(resp.Answer, r.maxRecords())
		if resp.Truncated {
			if network == "udp" {
				te.Note = "truncated; retrying over TCP"
				tr.add(te)
				continue
			}
			e := &Error{Op: op, Name: name, Server: server, Kind: KindTruncated, Err: errors.New("reply truncated over TCP")}
			te.Err = e.Err
			tr.add(te)
			return nil, e
		}
		set, perr := r.process(resp, name, qtype)
		if perr != nil {
			perr.Op, perr.Server = op, server
			te.Err = perr.Err
			tr.add(te)
			return nil, perr
		}
		tr.add(te)
		return set, nil
	}
	return nil, &Error{Op: op, Name: name, Server: server, Kind: KindTruncated}
}

// exchangeOnce sends q to server over network and reads the reply, within
// timeout. miekg/dns honours ctx's cancellation only while dialling; the
// write and read obey only its deadline. So the connection is closed as soon
// as ctx ends: the read in flight then fails at once, and the caller sees
// ctx's error through ctxDone. No goroutine started here outlives the call.
func exchangeOnce(ctx context.Context, network, server string, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: network, UDPSize: udpSize, Timeout: timeout}
	conn, err := c.DialContext(actx, server)
	if err != nil {
		return nil, err
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.Close()
		close(closed)
	})
	resp, _, err := c.ExchangeWithConnContext(actx, q, conn)
	if stop() {
		conn.Close()
	} else {
		<-closed // ctx ended: wait until the AfterFunc has closed conn
	}
	return resp, err
}

// presentation formats at most limit records for the trace.
func presentation(rrs []dns.RR, limit int) []string {
	if len(rrs) == 0 {
		return nil
	}
	n := min(len(rrs), limit)
	out := make([]string, 0, n+1)
	for _, rr := range rrs[:n] {
		out = append(out, rr.String())
	}
	if len(rrs) > n {
		out = append(out, "... "+strconv.Itoa(len(rrs)-n)+" more")
	}
	return out
}

// process checks a reply and extracts the records for (name, qtype),
// following the CNAME chain it carries. An answer that ends on a CNAME
// without data yields a set with final set to the CNAME target and no
// records, which the caller chases.
func (r *Resolver) process(m *dns.Msg, name string, qtype uint16) (*rrset, *Error) {
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
