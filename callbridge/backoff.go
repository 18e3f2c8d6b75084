package callbridge

import (
	"math/rand/v2"
	"time"
)

// Backoff sets the waits between connection cycles: exponential growth from
// Base by Multiplier up to Max, with full jitter (a uniformly random wait
// between 0 and the computed value, so that many bridges restarted together
// do not hammer the server in step). The zero value means DefaultBackoff.
type Backoff struct {
	Base       time.Duration // first wait's upper bound
	Max        time.Duration // cap on every wait; also the interval for permanent errors
	Multiplier float64       // growth per failed cycle
	// ResetAfter is how long a link must stay up before the next failure
	// starts again from Base rather than continuing the growth.
	ResetAfter time.Duration
}

// DefaultBackoff is the Backoff used for zero fields.
var DefaultBackoff = Backoff{
	Base:       time.Second,
	Max:        60 * time.Second,
	Multiplier: 2,
	ResetAfter: 60 * time.Second,
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoff.Base
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultBackoff.Multiplier
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = DefaultBackoff.ResetAfter
	}
	return b
}

// ceiling is the upper bound of the wait after the given number of failed
// cycles (1 for the first failure).
func (b Backoff) ceiling(failures int) time.Duration {
	d := float64(b.Base)
	for i := 1; i < failures && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	return time.Duration(min(d, float64(b.Max)))
}

// delay draws the wait after the given number of failed cycles.
func (b Backoff) delay(failures int, r *rand.Rand) time.Duration {
	c := b.ceiling(failures)
	if c <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(c)) + 1)
}
