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
	id := ID()
	assert.False(t, Inside(id))
	leave1 := Enter()
	leave2 := Enter()
	assert.True(t, Inside(id))
	leave2()
	assert.True(t, Inside(id), "still inside the outer Close")
	leave1()
	assert.False(t, Inside(id))

	seen := make(chan bool)
	leave := Enter()
	go func() { seen <- Inside(ID()) }()
	assert.False(t, <-seen, "another goroutine is not inside this Close")
	leave()
	assert.False(t, Inside(0))
}
