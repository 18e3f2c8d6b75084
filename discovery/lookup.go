package discovery

import (
	"context"
	"net/netip"
	"time"
)

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
	if ctx == nil {
		return &Result{}, &Error{Op: "lookup", Name: req.Domain, Err: errNilContext}
	}
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
