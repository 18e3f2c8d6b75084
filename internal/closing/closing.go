// Package closing lets a Close that waits for handler goroutines recognise
// the handlers that called it, so that a handler may close the session or
// bridge it runs in without waiting for itself.
//
// A handler runs on a worker goroutine; Close is an ordinary call on that
// same goroutine. Enter records the calling goroutine as inside a Close of
// a given owner until the returned function is called; a drain or teardown
// of that owner that waits for its workers skips those inside its Close,
// because they will only return once it has finished. The owner is the
// thing the handlers belong to (a component.Mux: one per bridge), so that
// a handler inside the Close of some other session is still waited for.
package closing

import (
	"runtime"
	"strconv"
	"sync"
)

type entry struct {
	id    uint64
	owner any
}

var (
	mu      sync.Mutex
	inside  = map[entry]int{}
	changed = make(chan struct{}) // closed and replaced at every Enter
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

// Enter records that the calling goroutine is inside a Close of owner
// until leave is called, and wakes whoever waits on Changed. Calls nest.
func Enter(owner any) (leave func()) {
	e := entry{id: ID(), owner: owner}
	mu.Lock()
	inside[e]++
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()
	return func() {
		mu.Lock()
		if inside[e]--; inside[e] <= 0 {
			delete(inside, e)
		}
		mu.Unlock()
	}
}

// Inside reports whether goroutine id is inside a Close of owner.
func Inside(id uint64, owner any) bool {
	if id == 0 {
		return false
	}
	mu.Lock()
	defer mu.Unlock()
	return inside[entry{id, owner}] > 0
}

// Changed returns a channel closed at the next Enter, for waits that count
// the goroutines inside a Close.
func Changed() <-chan struct{} {
	mu.Lock()
	defer mu.Unlock()
	return changed
}
