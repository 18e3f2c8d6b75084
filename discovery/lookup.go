package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// forever stands for "no TTL constraint yet" before clamping.
const forever = time.Duration(1<<63 - 1)

// Service is the SRV service and protocol label pair looked up under the
// XMPP domain.
const Service = "_xmpp-component._tcp"

// Request holds the Call Bridge settings that say where its XMPP server is.
// It is comparable; Lookup caches results per Request value.
type Request struct {
	// Domain is the XMPP domain; with no Server, SRV records are looked up
	// at _xmpp-component._tcp.<Domain>.
	Domain string
	// Server is an explicit "host[:port]" server address (see
	// ParseAddress). When set, no SRV lookup is made.
	Server string
	// FallbackToDomain makes a domain without SRV records resolve to
	// <Domain>:5223 instead of failing with ErrNoSRV. It never applies to
	// ErrNoService.
	FallbackToDomain bool
	// PreferIPv6 puts an IPv6 address first in each endpoint's address list;
	// by default IPv4 comes first. The families alternate after that.
	PreferIPv6 bool
}

// Endpoint is one place to connect to.
type Endpoint struct {
	// Target is the server's host name in lowercase ASCII without trailing
	// dot: the name its certificate must carry. For an IP literal server
	// address it is the address.
	Target string
	// Port is the TCP port to dial.
	Port uint16
	// Addrs lists the target's addresses with the families interleaved
	// for RFC 8305 connection racing. The slice may be shared with other
	// Results: do not modify it.
	Addrs []netip.Addr
	// Priority and Weight come from the SRV record (zero otherwise).
	Priority, Weight uint16
	// TTL is how long this endpoint stays valid: the least TTL of the
	// records behind it, clamped to the Resolver's MinTTL and MaxTTL.
	TTL time.Duration
	// Note explains anything unusual, such as a fallback or a stale answer.
	Note string
}

// Result is the outcome of a Lookup.
type Result struct {
	// Endpoints are in the order to try them: RFC 2782 order for SRV
	// targets, drawn afresh on each Lookup, even from the cache.
	Endpoints []Endpoint
	// Trace lists every query made and every cached answer used. A cached
	// Result has a shared one-entry trace: do not modify it.
	Trace []TraceEntry
	// Explicit is true when the endpoints come from Request.Server rather
	// than SRV records.
	Explicit bool
}

// plan is a resolved Request, cached until its shortest TTL ends, from which
// each Lookup draws a fresh SRV ordering.
type plan struct {
	endpoints []Endpoint // SRV record order; never handed out
	srv       bool
	explicit  bool
	computed  time.Time
	expires   time.Time
	hitTrace  []TraceEntry
}

// Lookup resolves req into endpoints to connect to, in order. ctx bounds the
// whole lookup, including every query and retry.
//
// With req.Server set, Lookup parses it and resolves the host's A and AAAA
// records (an IP literal needs no DNS). Otherwise it looks up the SRV
// records of _xmpp-component._tcp.<req.Domain>, then the A and AAAA records
// of every target at once, skipping targets without addresses.
//
// The error is an [*Error]; errors.Is matches ErrNoService, ErrNoSRV,
// ErrNoAddresses and ErrBadAddress. On error the Result is still returned,
// holding only the Trace, so that a diagnostic tool can show what happened.
func (r *Resolver) Lookup(ctx context.Context, req Request) (*Result, error) {
	now := r.now()
	r.mu.Lock()
	p := r.plans[req]
	r.mu.Unlock()
	if p != nil && now.Before(p.expires) {
		return r.result(p, p.hitTrace, now), nil
	}
	tr := &tracer{}
	p, err := r.makePlan(ctx, req, tr, now)
	if err != nil {
		return &Result{Trace: tr.list()}, err
	}
	if p.expires.After(now) {
		r.mu.Lock()
		if r.plans == nil || len(r.plans) >= maxCacheSize {
			r.plans = make(map[Request]*plan)
		}
		r.plans[req] = p
		r.mu.Unlock()
	}
	return r.result(p, tr.list(), now), nil
}

// result builds a Result from p with a fresh SRV ordering.
func (r *Resolver) result(p *plan, trace []TraceEntry, now time.Time) *Result {
	eps := make([]Endpoint, len(p.endpoints))
	copy(eps, p.endpoints)
	age := max(now.Sub(p.computed), 0)
	for i := range eps {
		eps[i].TTL = max(eps[i].TTL-age, 0)
	}
	if p.srv {
		r.orderSRV(eps)
	}
	return &Result{Endpoints: eps, Trace: trace, Explicit: p.explicit}
}

func (r *Resolver) makePlan(ctx context.Context, req Request, tr *tracer, now time.Time) (*plan, error) {
	p := &plan{computed: now}
	var eps []Endpoint
	var err error
	if req.Server != "" {
		p.explicit = true
		eps, err = r.explicit(ctx, req, tr)
	} else {
		p.srv = true
		eps, err = r.srv(ctx, req, tr)
	}
	if err != nil {
		return nil, err
	}
	p.endpoints = eps
	ttl := forever
	for _, ep := range eps {
		ttl = min(ttl, ep.TTL)
	}
	p.expires = p.computed.Add(ttl)
	name := req.Server
	if name == "" {
		name = req.Domain
	}
	p.hitTrace = []TraceEntry{{Name: name, Type: "endpoints", Source: SourceCache,
		Note: "whole result cached, expires in " + ttl.Round(time.Second).String()}}
	return p, nil
}

func (r *Resolver) explicit(ctx context.Context, req Request, tr *tracer) ([]Endpoint, error) {
	addr, err := ParseAddress(req.Server)
	if err != nil {
		return nil, err
	}
	if ip, ok := addr.IP(); ok {
		return []Endpoint{{Target: addr.Host, Port: addr.Port, Addrs: []netip.Addr{ip},
			TTL: r.clampTTL(forever), Note: "IP address given; no DNS lookup"}}, nil
	}
	return r.resolveTargets(ctx, []Endpoint{{Target: addr.Host, Port: addr.Port, TTL: forever}}, nil, req.PreferIPv6, tr)
}

func (r *Resolver) srv(ctx context.Context, req Request, tr *tracer) ([]Endpoint, error) {
	domain, reason := normalizeHost(req.Domain)
	if reason != "" {
		return nil, &Error{Op: "parse domain", Name: req.Domain, Kind: KindBadAddress,
			Err: errors.New(reason)}
	}
	name := Service + "." + domain + "."
	set, err := r.query(ctx, name, dns.TypeSRV, tr)
	if err != nil {
		return nil, err
	}
	if len(set.records) == 0 {
		why := "no SRV records (empty answer)"
		if set.nxdomain {
			why = "no SRV records (NXDOMAIN)"
		}
		if !req.FallbackToDomain {
			return nil, &Error{Op: "lookup SRV", Name: name, Kind: KindNoSRV, Err: errors.New(why)}
		}
		ep := Endpoint{Target: domain, Port: DefaultPort, TTL: set.ttl, Note: why + "; fell back to the domain on port 5223"}
		tr.add(TraceEntry{Name: name, Type: "SRV", Source: SourceNote, Note: ep.Note})
		if set.stale {
			tr.add(TraceEntry{Name: name, Type: "SRV", Source: SourceStale, Note: "the negative answer is stale"})
		}
		return r.resolveTargets(ctx, []Endpoint{ep}, nil, req.PreferIPv6, tr)
	}
	if len(set.records) == 1 && set.records[0].(*dns.SRV).Target == "." {
		return nil, &Error{Op: "lookup SRV", Name: name, Kind: KindNoService,
			Err: errors.New(`the domain publishes no such service (single SRV target ".")`)}
	}
	srvTTL := set.ttl
	seen := make(map[string]bool)
	var eps []Endpoint
	for _, rr := range set.records {
		s := rr.(*dns.SRV)
		target := strings.TrimSuffix(dns.CanonicalName(s.Target), ".")
		key := fmt.Sprintf("%s:%d", target, s.Port)
		switch {
		case target == "":
			tr.add(TraceEntry{Name: name, Type: "SRV", Source: SourceNote, Note: "ignored target \".\" listed beside other records"})
			continue
		case !validHostName(target) || s.Port == 0:
			tr.add(TraceEntry{Name: name, Type: "SRV", Source: SourceNote, Note: "ignored invalid record: " + s.String()})
			continue
		case seen[key]:
			continue
		}
		seen[key] = true
		ep := Endpoint{Target: target, Port: s.Port, Priority: s.Priority, Weight: s.Weight, TTL: srvTTL}
		if set.stale {
			ep.Note = "stale SRV answer (every name server failed)"
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, &Error{Op: "lookup SRV", Name: name, Kind: KindNoAddresses,
			Err: errors.New("no usable SRV target")}
	}
	return r.resolveTargets(ctx, eps, set.extra, req.PreferIPv6, tr)
}

// family is the outcome of one A or AAAA lookup of one target.
type family struct {
	addrs []netip.Addr
	ttl   time.Duration
	stale bool
	err   error
}

// resolveTargets fills in the addresses of eps, querying every target's A and
// AAAA records at once (or taking them from extra, the SRV reply's
// additional section), and drops targets without addresses.
func (r *Resolver) resolveTargets(ctx context.Context, eps []Endpoint, extra []dns.RR, preferV6 bool, tr *tracer) ([]Endpoint, error) {
	qtypes := [2]uint16{dns.TypeA, dns.TypeAAAA}
	var targets []string
	index := make(map[string]int)
	for _, ep := range eps {
		if _, ok := index[ep.Target]; !ok {
			index[ep.Target] = len(targets)
			targets = append(targets, ep.Target)
		}
	}
	res := make([][2]family, len(targets))
	type job struct{ t, f int }
	var jobs []job
	for t, target := range targets {
		fqdn := target + "."
		for f, qtype := range qtypes {
			var rrs []dns.RR
			for _, rr := range extra {
				if rr.Header().Rrtype == qtype && dns.CanonicalName(rr.Header().Name) == fqdn && checkRecord(rr) == nil {
					rrs = append(rrs, rr)
				}
			}
			if len(rrs) == 0 {
				jobs = append(jobs, job{t, f})
				continue
			}
			res[t][f] = toFamily(&rrset{records: rrs, ttl: r.clampTTL(minTTL(rrs))})
			tr.add(TraceEntry{Name: fqdn, Type: dns.TypeToString[qtype], Source: SourceAdditional,
				Answers: presentation(rrs, r.maxRecords())})
		}
	}
	run := func(j job) {
		set, err := r.query(ctx, targets[j.t]+".", qtypes[j.f], tr)
		if err != nil {
			res[j.t][j.f] = family{err: err}
			return
		}
		res[j.t][j.f] = toFamily(set)
	}
	if r.sequential {
		for _, j := range jobs {
			run(j)
		}
	} else {
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Go(func() { run(j) })
		}
		wg.Wait()
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError("lookup addresses", targets[0], err)
	}

	var out []Endpoint
	var errs []error
	for _, ep := range eps {
		fam := res[index[ep.Target]]
		if len(fam[0].addrs)+len(fam[1].addrs) == 0 {
			var why error = &Error{Op: "lookup A/AAAA", Name: ep.Target, Kind: KindNotFound,
				Err: errors.New("no A or AAAA records")}
			switch {
			case fam[0].err != nil && fam[1].err != nil:
				why = joinErrors("A and AAAA lookups failed", []error{fam[0].err, fam[1].err})
			case fam[0].err != nil:
				why = fam[0].err
			case fam[1].err != nil:
				why = fam[1].err
			}
			errs = append(errs, why)
			tr.add(TraceEntry{Name: ep.Target + ".", Type: "A/AAAA", Source: SourceNote, Err: why,
				Note: "skipped target " + ep.Target + ": no usable address"})
			continue
		}
		if preferV6 {
			ep.Addrs = interleave(fam[1].addrs, fam[0].addrs)
		} else {
			ep.Addrs = interleave(fam[0].addrs, fam[1].addrs)
		}
		ttl := ep.TTL // the SRV TTL, or forever
		stale := false
		for _, f := range fam {
			if len(f.addrs) > 0 {
				ttl = min(ttl, f.ttl)
				stale = stale || f.stale
			}
		}
		ep.TTL = r.clampTTL(ttl)
		if stale {
			ep.Note = joinNote(ep.Note, "stale address answer (every name server failed)")
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, &Error{Op: "lookup A/AAAA", Name: strings.Join(targets, ", "), Kind: KindNoAddresses,
			Err: joinErrors("no target has an address", errs)}
	}
	return out, nil
}

// joinedError lists several causes on one line; errors.Is and errors.As
// see each of them.
type joinedError struct {
	prefix string
	errs   []error
}

func joinErrors(prefix string, errs []error) error { return &joinedError{prefix, errs} }

func (e *joinedError) Error() string {
	var b strings.Builder
	b.WriteString(e.prefix)
	for i, err := range e.errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *joinedError) Unwrap() []error { return e.errs }

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func minTTL(rrs []dns.RR) time.Duration {
	ttl := forever
	for _, rr := range rrs {
		ttl = min(ttl, ttlOf(rr))
	}
	return ttl
}

func toFamily(set *rrset) family {
	f := family{ttl: set.ttl, stale: set.stale}
	for _, rr := range set.records {
		var ip netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(v.AAAA)
		}
		if ip.IsValid() && !slices.Contains(f.addrs, ip) {
			f.addrs = append(f.addrs, ip)
		}
	}
	return f
}

// interleave alternates the two lists, starting with first (RFC 8305
// section 4).
func interleave(first, second []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(first)+len(second))
	for i := 0; i < len(first) || i < len(second); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) {
			out = append(out, second[i])
		}
	}
	return out
}

// orderSRV sorts eps by priority and orders each priority group by weighted
// random selection (RFC 2782), shuffling groups whose weights are all zero.
func (r *Resolver) orderSRV(eps []Endpoint) {
	slices.SortStableFunc(eps, func(a, b Endpoint) int { return cmp.Compare(a.Priority, b.Priority) })
	for i := 0; i < len(eps); {
		j := i + 1
		for j < len(eps) && eps[j].Priority == eps[i].Priority {
			j++
		}
		r.orderGroup(eps[i:j])
		i = j
	}
}

// orderGroup picks each position in turn from the records left, with
// probability proportional to weight; a weight-0 record is picked with
// probability 1/(sum of weights + 1), as in RFC 2782 where weight-0 records
// sit at the start of the list and the random number may be 0. When every
// weight left is zero, the rest is shuffled uniformly so that many clients
// spread across the servers (RFC 2782 would leave them in answer order).
func (r *Resolver) orderGroup(g []Endpoint) {
	for k := 0; k < len(g)-1; k++ {
		rest := g[k:]
		total, zeros := 0, 0
		for _, e := range rest {
			total += int(e.Weight)
			if e.Weight == 0 {
				zeros++
			}
		}
		if total == 0 {
			for i := len(rest) - 1; i > 0; i-- {
				j := r.intN(i + 1)
				rest[i], rest[j] = rest[j], rest[i]
			}
			return
		}
		pick := 0
		var n int
		if zeros > 0 {
			n = r.intN(total + 1)
		} else {
			n = r.intN(total) + 1
		}
		if n == 0 {
			z := r.intN(zeros)
			for i, e := range rest {
				if e.Weight == 0 {
					if z == 0 {
						pick = i
						break
					}
					z--
				}
			}
		} else {
			sum := 0
			for i, e := range rest {
				sum += int(e.Weight)
				if e.Weight > 0 && sum >= n {
					pick = i
					break
				}
			}
		}
		rest[0], rest[pick] = rest[pick], rest[0]
	}
}
