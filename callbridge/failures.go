package callbridge

import (
	"math/rand/v2"
	"time"

	"github.com/cblink/cblink/discovery"
)

// pacer owns the pacing of the connection cycle: the failures of each
// endpoint, the spacing of the attempts on each endpoint, and the one
// verdict of each cycle that ends without a live link (how long to wait
// before the next, and whether the failure is permanent). The loop reports
// what happened (lookupFailed, attemptFailed, connected, dropped) and asks
// next; it does not weigh failures itself.
//
// The rules, with the Backoff table:
//   - The bridge never waits before trying an endpoint that has not
//     failed: a second failover within a minute goes straight to the next
//     server.
//   - A cycle's failure is permanent only when every endpoint's last
//     failure was permanent; it then waits Backoff.Max. Otherwise it waits
//     a jittered Backoff.ceiling for the fewest failures of any endpoint.
//   - A link is healthy when the server showed itself alive (it answered
//     one of the bridge's pings) or the link lived Backoff.ResetAfter.
//     Stanzas both ways prove nothing: the bridge answers whatever it is
//     sent. A healthy link's drop clears every record, starts an outage
//     (whose length caps the waits) and the next cycle at once; any other
//     drop is a failure of its endpoint (a flapping server).
//   - Attempts on one endpoint start at least Backoff.spacing apart (1 s
//     by default), whatever the server does (start).
//
// It belongs to Run's loop (one goroutine); connectAny calls it from that
// goroutine only.
type pacer struct {
	bo   Backoff // with defaults; set by the loop at each cycle
	rand *rand.Rand
	eps  map[string]*epRecord // by endpoint key (host:port)
	// lookupFails counts consecutive failed lookups (no endpoints at all);
	// lookupPerm says whether the last one was permanent.
	lookupFails int
	lookupPerm  bool
	// cycles counts failed connection cycles since the last link came up
	// (Status.Attempt).
	cycles int
	// lost is the endpoint whose link just ended: tried last next time.
	lost string
	// outage is when a healthy link dropped, while no link is up since;
	// zero otherwise. It caps the waits (Backoff.ceiling).
	outage time.Time
	// end is what ended the current cycle, for next.
	end cycleEnd
}

// cycleEnd is what ended a connection cycle without a live link.
type cycleEnd int

const (
	endNone        cycleEnd = iota
	endLookup               // the lookup failed
	endAllFailed            // every endpoint tried failed
	endDropped              // a link dropped; the next cycle may wait
	endDroppedNext          // a link dropped; the next cycle starts at once
)

type epRecord struct {
	fails     int       // failures since the last healthy link
	permanent bool      // the last failure was permanent (wrong secret, ...)
	tried     time.Time // when the last attempt started (or will start)
	// conflicts counts the attempts in a row refused with conflict since
	// conflictSince (when the first of them started).
	conflicts     int
	conflictSince time.Time
}

// A conflict is transient while it may be this bridge's own stale link,
// which the server drops within seconds. Refused for
// duplicateNameAfter over duplicateNameAttempts attempts or more on one
// server, the name is held by another Call Bridge: a permanent
// misconfiguration (DuplicateNameError).
const (
	duplicateNameAfter    = 30 * time.Second
	duplicateNameAttempts = 3
)

// linkEnd is what the pacer needs to know of a link that ended.
type linkEnd struct {
	lived        time.Duration // from authenticated to its end
	pingAnswered bool          // the server answered a ping of the bridge
}

func newPacer() *pacer {
	return &pacer{
		bo:   Backoff{}.withDefaults(),
		rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		eps:  map[string]*epRecord{},
	}
}

func (p *pacer) rec(ep discovery.Endpoint) *epRecord {
	k := key(ep)
	r := p.eps[k]
	if r == nil {
		r = &epRecord{}
		p.eps[k] = r
	}
	return r
}

// order returns eps in the order to try: as discovery ordered them
// (RFC 2782), with the endpoint whose link just ended moved to the end.
// Records of endpoints that are no longer published are forgotten.
func (p *pacer) order(eps []discovery.Endpoint) []discovery.Endpoint {
	p.lookupFails = 0
	keep := make(map[string]*epRecord, len(eps))
	for _, ep := range eps {
		keep[key(ep)] = p.rec(ep)
	}
	p.eps = keep
	demote(eps, p.lost)
	p.lost = ""
	return eps
}

// start reserves an attempt on ep at time now and returns how long it must
// wait first, so that attempts on one endpoint start at least
// Backoff.spacing apart.
func (p *pacer) start(ep discovery.Endpoint, now time.Time) time.Duration {
	r := p.rec(ep)
	wait := max(r.tried.Add(p.bo.spacing()).Sub(now), 0) // 0 when never tried
	r.tried = now.Add(wait)
	return wait
}

// lookupFailed records a failed lookup: the cycle ends.
func (p *pacer) lookupFailed(err error) {
	p.lookupFails++
	p.lookupPerm = Classify(err).Permanent()
	p.end = endLookup
}

// attemptFailed records a failed attempt to bring a link up on ep. If no
// link comes up in this cycle, every endpoint tried has failed. It returns
// err, or err in a *DuplicateNameError when ep has refused the name with
// conflict for too long.
func (p *pacer) attemptFailed(ep discovery.Endpoint, err error) error {
	r := p.rec(ep)
	r.fails++
	if Classify(err) == KindConflict {
		if r.conflicts == 0 {
			r.conflictSince = r.tried
		}
		r.conflicts++
		if d := r.tried.Sub(r.conflictSince); r.conflicts >= duplicateNameAttempts && d >= duplicateNameAfter {
			err = &DuplicateNameError{For: d, Attempts: r.conflicts, Err: err}
		}
	} else {
		r.conflicts = 0
	}
	r.permanent = Classify(err).Permanent()
	p.end = endAllFailed
	return err
}

// connected records a link up.
func (p *pacer) connected() {
	p.cycles, p.lookupFails, p.outage, p.end = 0, 0, time.Time{}, endNone
	for _, r := range p.eps {
		r.conflicts = 0
	}
}

// dropped records that the link to ep ended at time now. A healthy link
// (the server answered a ping, or the link lived Backoff.ResetAfter)
// clears every record, starts an outage and the next cycle at once. Any
// other drop counts as a failure of ep; the next cycle still starts at
// once for the first such drop, or when another endpoint has not failed.
func (p *pacer) dropped(ep discovery.Endpoint, l linkEnd, now time.Time) {
	p.lost = key(ep)
	r := p.rec(ep)
	if l.pingAnswered || l.lived >= p.bo.ResetAfter {
		for _, o := range p.eps {
			o.fails, o.permanent = 0, false
		}
		p.outage = now
		p.end = endDroppedNext
		return
	}
	r.fails++
	r.permanent = false
	p.end = endDropped
	if r.fails <= 1 || p.anyFresh() {
		p.end = endDroppedNext
	}
}

// anyFresh reports whether some known endpoint has not failed.
func (p *pacer) anyFresh() bool {
	for _, r := range p.eps {
		if r.fails == 0 {
			return true
		}
	}
	return false
}

// next returns the verdict of the cycle that just ended without a live
// link: how long to wait before the next cycle, and whether the failure is
// permanent (every endpoint's last failure was, or the lookup's). A
// permanent failure waits Backoff.Max; a transient one a jittered wait
// below Backoff.ceiling for the fewest failures of any endpoint (or of
// the lookups), capped by the outage so far.
func (p *pacer) next(now time.Time) (wait time.Duration, permanent bool) {
	end := p.end
	p.end = endNone
	var failures int
	switch end {
	case endDroppedNext:
		return 0, false
	case endLookup:
		failures, permanent = p.lookupFails, p.lookupPerm
	default: // endAllFailed, endDropped
		failures, permanent = 0, len(p.eps) > 0
		for _, r := range p.eps {
			if failures == 0 || r.fails < failures {
				failures = r.fails
			}
			permanent = permanent && r.permanent
		}
	}
	p.cycles++
	if permanent {
		// Operators fix the server while the bridge runs, as on CMS:
		// keep trying, at the slowest pace.
		return p.bo.Max, true
	}
	var outage time.Duration
	if !p.outage.IsZero() {
		outage = max(now.Sub(p.outage), 1)
	}
	failures = max(failures, 1)
	if p.bo.NoJitter {
		return p.bo.ceiling(failures, outage), false
	}
	return p.bo.delay(failures, outage, p.rand), false
}

// reset forgets everything (new settings).
func (p *pacer) reset() { *p = *newPacer() }
