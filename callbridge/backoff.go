package callbridge

import (
	"math/rand/v2"
	"time"
)

// Backoff sets the waits between connection cycles: exponential growth from
// Base by Multiplier, with full jitter (a uniformly random wait between 0
// and the computed value, so that many bridges restarted together do not
// hammer the server in step). Zero fields take DefaultBackoff's values.
//
// What each failure waits:
//
//	failure                                        wait before the next cycle
//	a link that was healthy drops                  none: the next cycle starts at once
//	then every endpoint fails (server restarting)  jittered, growing from Base, capped by
//	                                               TransientMax and by half the outage so far
//	                                               (a server back after 4 s is retried within 2 s)
//	an endpoint that has not failed is left        none: it is tried at once
//	every endpoint fails (no link yet)             jittered, growing from Base up to TransientMax
//	a link drops before it was healthy (flapping)  the first time none, then as the line above
//	every endpoint's last failure was permanent    Max, every time
//	(wrong secret, unknown name)
//
// A cycle in which some endpoints failed permanently and others not (a
// preferred server restarting, a backup with a wrong secret) is a
// transient failure. A link is healthy once the server has shown itself
// alive after the handshake (it answered a ping of the bridge) or the link
// lived ResetAfter; stanzas both ways do not count, since the bridge
// answers whatever it is sent. A healthy link clears the failure counts.
//
// Whatever the server does, attempts on one endpoint start at least Base
// or one second apart, whichever is shorter (one second by default): an
// attempt that would come sooner waits that long in the Connecting state.
// Fail-back probes (Config.FailBackInterval) are not counted.
type Backoff struct {
	Base time.Duration // first wait's upper bound
	// Max is the interval between attempts while the server refuses the
	// bridge for a reason an operator must fix, and the cap of every wait.
	Max time.Duration
	// TransientMax caps the wait after transient failures (network,
	// timeouts, stream errors): a Call Bridge that is down is a service
	// that is down, so it keeps trying often.
	TransientMax time.Duration
	Multiplier   float64 // growth per failed cycle: 0 (the default) or at least 1
	// ResetAfter is how long a link must live to count as healthy when the
	// server has not answered a ping on it; links that end sooner count as
	// failures of their server (flapping).
	ResetAfter time.Duration
	// NoJitter makes every wait exactly its computed ceiling instead of a
	// uniformly random wait below it: deterministic, for tests and for
	// operators who want exact waits. Without jitter, bridges restarted
	// together retry in step.
	NoJitter bool
}

// DefaultBackoff returns the Backoff whose values zero fields take: Base
// 1s, Max 60s, TransientMax 10s, Multiplier 2, ResetAfter 10s, with jitter.
func DefaultBackoff() Backoff {
	return Backoff{
		Base:         time.Second,
		Max:          60 * time.Second,
		TransientMax: 10 * time.Second,
		Multiplier:   2,
		ResetAfter:   10 * time.Second,
	}
}

// maxSpacing is the longest spacing of the attempts on one endpoint.
const maxSpacing = time.Second

func (b Backoff) withDefaults() Backoff {
	d := DefaultBackoff()
	if b.Base <= 0 {
		b.Base = d.Base
	}
	if b.Max <= 0 {
		b.Max = d.Max
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.TransientMax <= 0 {
		b.TransientMax = d.TransientMax
	}
	b.TransientMax = min(max(b.TransientMax, b.Base), b.Max)
	if b.Multiplier < 1 {
		b.Multiplier = d.Multiplier
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = d.ResetAfter
	}
	return b
}

// spacing is the least time between the starts of two attempts on one
// endpoint: Base, at most maxSpacing.
func (b Backoff) spacing() time.Duration { return min(b.Base, maxSpacing) }

// ceiling is the upper bound of the wait after the given number of failed
// cycles (1 for the first failure) of a transient kind; outage, when not
// zero, is how long ago a healthy link dropped, and caps the wait at half
// of it (but not below Base).
func (b Backoff) ceiling(failures int, outage time.Duration) time.Duration {
	d := float64(b.Base)
	for i := 1; i < failures && d < float64(b.TransientMax); i++ {
		d *= b.Multiplier
	}
	c := time.Duration(min(d, float64(b.TransientMax)))
	if outage > 0 {
		c = min(c, max(b.Base, outage/2))
	}
	return c
}

// delay draws the wait after the given number of failed cycles.
func (b Backoff) delay(failures int, outage time.Duration, r *rand.Rand) time.Duration {
	c := b.ceiling(failures, outage)
	if c <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(c)) + 1)
}
