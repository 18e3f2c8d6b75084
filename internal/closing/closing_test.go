package closing

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIDDiffersPerGoroutine(t *testing.T) {
	mine := ID()
	assert.NotZero(t, mine)
	assert.Equal(t, mine, ID(), "stable on one goroutine")
	other := make(chan uint64)
	go func() { other <- ID() }()
	assert.NotEqual(t, mine, <-other)
}

func TestEnterNestsAndLeaves(t *testing.T) {
	a, b := new(int), new(int)
	id := ID()
	assert.False(t, Inside(id, a))
	changed := Changed()
	leave1 := Enter(a)
	select {
	case <-changed:
	default:
		t.Fatal("Enter wakes waiters")
	}
	leave2 := Enter(a)
	assert.True(t, Inside(id, a))
	assert.False(t, Inside(id, b), "inside a Close of a, not of b")
	leave2()
	assert.True(t, Inside(id, a), "still inside the outer Close")
	leave1()
	assert.False(t, Inside(id, a))

	seen := make(chan bool)
	leave := Enter(a)
	go func() { seen <- Inside(ID(), a) }()
	assert.False(t, <-seen, "another goroutine is not inside this Close")
	leave()
	assert.False(t, Inside(0, a))
}
