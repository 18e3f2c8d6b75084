package discovery

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

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
		set, err := r.lookupRRset(ctx, targets[j.t]+".", qtypes[j.f], tr)
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
