package componenttest

import (
	"context"
	"sync"
)

// stanzaQueue holds stanzas, oldest first, for a reader that waits for
// them: what a component sent to the server (Conn.Next) or to one web
// user (Inbox.Next). Its methods are safe for concurrent use.
type stanzaQueue struct {
	max int // past it the oldest is dropped; 0: no bound

	mu  sync.Mutex
	q   []Stanza
	sig chan struct{} // one token: something was pushed
}

func newStanzaQueue(max int) *stanzaQueue {
	return &stanzaQueue{max: max, sig: make(chan struct{}, 1)}
}

func (q *stanzaQueue) push(st Stanza) {
	q.mu.Lock()
	if q.max > 0 && len(q.q) >= q.max {
		q.q = q.q[1:]
	}
	q.q = append(q.q, st)
	q.mu.Unlock()
	select {
	case q.sig <- struct{}{}:
	default:
	}
}

// pop removes the oldest stanza, if any.
func (q *stanzaQueue) pop() (Stanza, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return Stanza{}, false
	}
	st := q.q[0]
	q.q[0] = Stanza{}
	q.q = q.q[1:]
	return st, true
}

// next returns the oldest stanza, waiting for one until ctx ends. Once
// done is closed and the queue is empty it returns errDone.
func (q *stanzaQueue) next(ctx context.Context, done <-chan struct{}, errDone error) (Stanza, error) {
	for {
		if st, ok := q.pop(); ok {
			return st, nil
		}
		select {
		case <-q.sig:
		case <-done:
			if st, ok := q.pop(); ok {
				return st, nil
			}
			return Stanza{}, errDone
		case <-ctx.Done():
			return Stanza{}, ctx.Err()
		}
	}
}

// take removes and returns everything queued.
func (q *stanzaQueue) take() []Stanza {
	q.mu.Lock()
	defer q.mu.Unlock()
	all := q.q
	q.q = nil
	return all
}
