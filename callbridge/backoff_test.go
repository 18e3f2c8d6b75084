package callbridge

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}.withDefaults()
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		assert.Equal(t, w*time.Millisecond, b.ceiling(i+1, 0), "failure %d", i+1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for f := 1; f < 50; f++ {
		d := b.delay(f, 0, r)
		assert.Greater(t, d, time.Duration(0))
		assert.LessOrEqual(t, d, b.ceiling(f, 0))
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Second}.withDefaults()
	r := rand.New(rand.NewPCG(3, 4))
	var low, high int
	for range 1000 {
		if b.delay(1, 0, r) < 500*time.Millisecond {
			low++
		} else {
			high++
		}
	}
	// Full jitter: about half below the midpoint.
	assert.InDelta(t, 500, low, 80)
	assert.InDelta(t, 500, high, 80)
}

func TestBackoffDefaults(t *testing.T) {
	b := Backoff{}.withDefaults()
	assert.Equal(t, DefaultBackoff(), b)
	b = Backoff{Base: time.Minute, Max: time.Second}.withDefaults()
	assert.Equal(t, time.Minute, b.Max, "max is raised to base")
}

func TestBackoffTransientCap(t *testing.T) {
	b := Backoff{}.withDefaults()
	assert.Equal(t, 10*time.Second, b.TransientMax)
	assert.Equal(t, 10*time.Second, b.ResetAfter)
	assert.Equal(t, 10*time.Second, b.ceiling(20, 0), "transient failures wait at most TransientMax")
	b = Backoff{Base: time.Second, Max: 5 * time.Second, TransientMax: time.Minute}.withDefaults()
	assert.Equal(t, 5*time.Second, b.TransientMax, "never above Max")
}

func TestBackoffOutageCap(t *testing.T) {
	b := Backoff{}.withDefaults()
	// Half the outage so far, but not below Base, and never above the
	// exponential ceiling.
	assert.Equal(t, time.Second, b.ceiling(5, 500*time.Millisecond))
	assert.Equal(t, 2*time.Second, b.ceiling(5, 4*time.Second))
	assert.Equal(t, 8*time.Second, b.ceiling(4, time.Minute))
	assert.Equal(t, 10*time.Second, b.ceiling(9, time.Hour))
	assert.Equal(t, 2*time.Second, b.ceiling(2, 10*time.Second), "the exponential ceiling is lower")
}
