package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

type cacheKey struct {
	name  string // canonical FQDN
	qtype uint16
}

type cacheEntry struct {
	set     *rrset
	expires time.Time
}

// flight is one query in progress that concurrent identical queries wait
// for instead of sending their own (a hand-written singleflight).
type flight struct {
	done chan struct{}
	set  *rrset
	err  error
}

// lookupRRset answers (name, qtype) from the cache, from a concurrent
// identical query, or from the name servers, following CNAME chains across
// queries. The returned set must not be modified.
func (r *Resolver) lookupRRset(ctx context.Context, name string, qtype uint16, tr *tracer) (*rrset, error) {
	key := cacheKey{dns.CanonicalName(name), qtype}
	typ := dns.TypeToString[qtype]
	for {
		now := r.now()
		r.mu.Lock()
		if e := r.cache[key]; e != nil && now.Before(e.expires) {
			r.mu.Unlock()
			set := *e.set
			set.ttl = e.expires.Sub(now)
			set.extra = nil // its records were cached on their own (storeExtra)
			tr.add(TraceEntry{Name: key.name, Type: typ, Source: SourceCache, Answers: presentation(set.records, r.maxRecords()),
				Note: fmt.Sprintf("cached, expires in %s", set.ttl.Round(time.Second))})
			return &set, nil
		}
		if f := r.flights[key]; f != nil {
			r.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctxError("lookup "+typ, key.name, ctx.Err())
			}
			if f.err != nil && isContextError(f.err) && ctx.Err() == nil {
				continue // the query we waited for was cancelled by its owner; ask again
			}
			te := TraceEntry{Name: key.name, Type: typ, Source: SourceShared, Err: f.err,
				Note: "answered by a concurrent identical query"}
			if f.set != nil {
				te.Answers = presentation(f.set.records, r.maxRecords())
			}
			tr.add(te)
			return f.set, f.err
		}
		f := &flight{done: make(chan struct{})}
		if r.flights == nil {
			r.flights = make(map[cacheKey]*flight)
		}
		r.flights[key] = f
		r.mu.Unlock()

		f.set, f.err = r.fetchAndCache(ctx, key, tr)

		r.mu.Lock()
		delete(r.flights, key)
		r.mu.Unlock()
		close(f.done)
		return f.set, f.err
	}
}

// fetchAndCache asks the name servers, caches the answer, and serves a stale
// cached answer when they all fail.
func (r *Resolver) fetchAndCache(ctx context.Context, key cacheKey, tr *tracer) (*rrset, error) {
	set, err := r.followCNAMEs(ctx, key.name, key.qtype, tr)
	now := r.now()
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || !staleable(e.Kind) || r.maxStale() <= 0 {
			return nil, err
		}
		r.mu.Lock()
		ent := r.cache[key]
		r.mu.Unlock()
		if ent == nil || !now.Before(ent.expires.Add(r.maxStale())) {
			return nil, err
		}
		stale := *ent.set
		stale.ttl = staleTTL
		stale.extra = nil
		stale.stale = true
		tr.add(TraceEntry{Name: key.name, Type: dns.TypeToString[key.qtype], Source: SourceStale, Err: err,
			Answers: presentation(stale.records, r.maxRecords()),
			Note:    fmt.Sprintf("every name server failed; serving an answer expired %s ago (RFC 8767)", now.Sub(ent.expires).Round(time.Second))})
		return &stale, nil
	}
	set.ttl = r.clampTTL(set.ttl)
	if set.ttl > 0 {
		r.store(key, set, now)
	}
	r.storeExtra(set.extra, now)
	return set, nil
}

// storeExtra caches the A/AAAA record sets of an SRV reply's additional
// section, so that they can stand in for queries until their own TTL ends,
// unless a fresh answer is cached already.
func (r *Resolver) storeExtra(extra []dns.RR, now time.Time) {
	sets := make(map[cacheKey]*rrset)
	for _, rr := range extra {
		if checkRecord(rr) != nil {
			continue
		}
		k := cacheKey{dns.CanonicalName(rr.Header().Name), rr.Header().Rrtype}
		set := sets[k]
		if set == nil {
			set = &rrset{final: k.name, ttl: forever}
			sets[k] = set
		}
		set.records = append(set.records, rr)
		set.ttl = min(set.ttl, ttlOf(rr))
	}
	for k, set := range sets {
		set.ttl = r.clampTTL(set.ttl)
		r.mu.Lock()
		e := r.cache[k]
		r.mu.Unlock()
		if set.ttl > 0 && (e == nil || !now.Before(e.expires)) {
			r.store(k, set, now)
		}
	}
}

func staleable(k Kind) bool {
	switch k {
	case KindTimeout, KindServerFailure, KindRefused, KindNetwork, KindMalformed, KindWrongName, KindTruncated:
		return true
	}
	return false
}

func (r *Resolver) store(key cacheKey, set *rrset, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = make(map[cacheKey]*cacheEntry)
	}
	if len(r.cache) >= maxCacheSize {
		keep := r.maxStale()
		for k, e := range r.cache {
			if !now.Before(e.expires.Add(keep)) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache { // still full: drop arbitrary entries
			if len(r.cache) < maxCacheSize {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = &cacheEntry{set: set, expires: now.Add(set.ttl)}
}
