package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

func (r *Resolver) srv(ctx context.Context, req Request, tr *tracer) ([]Endpoint, error) {
	domain, reason := normalizeHost(req.Domain)
	if reason != "" {
		return nil, &Error{Op: "parse domain", Name: req.Domain, Kind: KindBadAddress,
			Err: errors.New(reason)}
	}
	name := Service + "." + domain + "."
	set, err := r.lookupRRset(ctx, name, dns.TypeSRV, tr)
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
