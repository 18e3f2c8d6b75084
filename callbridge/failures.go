package callbridge

import (
	"time"

	"github.com/cblink/cblink/discovery"
)

// failureBook keeps the connection cycle's failure accounting per endpoint,
// so that the bridge never waits before trying an endpoint that has not
// failed: a second failover within a minute goes straight to the next
// server, while a server that keeps accepting and dropping the link is
// backed off. It belongs to Run's loop (one goroutine).
type failureBook struct {
	eps map[string]*epRecord // by endpoint key (host:port)
	// lookupFails counts consecutive failed lookups (no endpoints at all).
	lookupFails int
	// cycles counts failed connection cycles since the last link came up
	// (Status.Attempt).
	cycles int
	// lost is the endpoint whose link just ended: tried last next time.
	lost string
	// outage is when a healthy link dropped, while no link is up since;
	// zero otherwise. It caps the waits (Backoff.ceiling).
	outage time.Time
}

type epRecord struct {
	fails     int  // failures since this endpoint last held a link
	permanent bool // the last failure was permanent (wrong secret, ...)
}

func newFailureBook() *failureBook { return &failureBook{eps: map[string]*epRecord{}} }

func (f *failureBook) rec(ep discovery.Endpoint) *epRecord {
	k := key(ep)
	r := f.eps[k]
	if r == nil {
		r = &epRecord{}
		f.eps[k] = r
	}
	return r
}

// order returns eps in the order to try: as discovery ordered them
// (RFC 2782), with the endpoint just lost moved to the end. Records of
// endpoints that are no longer published are forgotten.
func (f *failureBook) order(eps []discovery.Endpoint) []discovery.Endpoint {
	f.lookupFails = 0
	keep := make(map[string]*epRecord, len(eps))
	for _, ep := range eps {
		keep[key(ep)] = f.rec(ep)
	}
	f.eps = keep
	demote(eps, f.lost)
	f.lost = ""
	return eps
}

// attemptFailed records a failed attempt to bring a link up on ep.
func (f *failureBook) attemptFailed(ep discovery.Endpoint, err error) {
	r := f.rec(ep)
	r.fails++
	r.permanent = Classify(err).Permanent()
}

// connected records a link up.
func (f *failureBook) connected() { f.cycles, f.lookupFails, f.outage = 0, 0, time.Time{} }

// dropped records that the link to ep ended, at time now, after it was
// healthy (it showed the server alive, or lived Backoff.ResetAfter) or
// not, and says whether the next cycle may start at once. A healthy link
// clears every record (the servers were fine) and starts an outage, whose
// length caps the waits that follow. One that was not healthy counts as a
// failure of ep; the next cycle still starts at once for the first such
// drop, or when another endpoint has not failed.
func (f *failureBook) dropped(ep discovery.Endpoint, healthy bool, now time.Time) (immediate bool) {
	f.lost = key(ep)
	r := f.rec(ep)
	if healthy {
		for _, o := range f.eps {
			o.fails, o.permanent = 0, false
		}
		f.outage = now
		return true
	}
	r.fails++
	r.permanent = false
	return r.fails <= 1 || f.anyFresh()
}

// anyFresh reports whether some known endpoint has not failed.
func (f *failureBook) anyFresh() bool {
	for _, r := range f.eps {
		if r.fails == 0 {
			return true
		}
	}
	return false
}

// cycleFailed records a cycle in which every endpoint failed and returns
// the number of failures to back off for (the fewest of any endpoint) and
// whether every failure was permanent.
func (f *failureBook) cycleFailed() (failures int, permanent bool) {
	f.cycles++
	failures, permanent = 0, len(f.eps) > 0
	for _, r := range f.eps {
		if failures == 0 || r.fails < failures {
			failures = r.fails
		}
		permanent = permanent && r.permanent
	}
	return max(failures, 1), permanent
}

// lookupFailed records a failed lookup and returns the failures to back
// off for.
func (f *failureBook) lookupFailed() int {
	f.cycles++
	f.lookupFails++
	return f.lookupFails
}

// outageFor is how long ago a healthy link dropped, 0 when no such
// outage is in progress.
func (f *failureBook) outageFor(now time.Time) time.Duration {
	if f.outage.IsZero() {
		return 0
	}
	return max(now.Sub(f.outage), 1)
}

// reset forgets everything (new settings).
func (f *failureBook) reset() { *f = *newFailureBook() }
