// Package closing lets a Close that waits for handler goroutines recognise
// the one handler that called it, so that a handler may close the session
// or bridge it runs in without waiting for itself.
//
// A handler runs on a worker goroutine; Close is an ordinary call on that
// same goroutine. Enter records the calling goroutine as "inside a Close"
// until the returned function is called; a teardown that waits for its
// workers skips those that are inside a Close, because they will only
// return once the teardown has finished.
package closing

import (
	"runtime"
	"strconv"
	"sync"
)

var (
	mu     sync.Mutex
	inside = map[uint64]int{}
)

// ID returns the calling goroutine's id, as the runtime prints it in stack
// traces. It costs about a microsecond: call it once per goroutine, not
// per stanza.
func ID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	// "goroutine 123 [running]:..."
	const prefix = len("goroutine ")
	if len(b) <= prefix {
		return 0
	}
	b = b[prefix:]
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	id, err := strconv.ParseUint(string(b[:i]), 10, 64)
	if err != nil {
		return 0
	}
	return id
}

// Enter records that the calling goroutine is inside a Close until leave
// is called. Calls may nest.
func Enter() (leave func()) {
	id := ID()
	mu.Lock()
	inside[id]++
	mu.Unlock()
	return func() {
		mu.Lock()
		if inside[id]--; inside[id] <= 0 {
			delete(inside, id)
		}
		mu.Unlock()
	}
}

// Inside reports whether goroutine id is inside a Close.
func Inside(id uint64) bool {
	if id == 0 {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	return inside[id] > 0
}
