package callbridge

import (
	"context"
	"sync"
	"time"
)

// maxQueued bounds the events held for one slow subscriber; past it the
// oldest are dropped (and counted) so the supervisor never waits.
const maxQueued = 1024

// hub holds the status and fans state changes out to subscribers without
// ever blocking the supervisor: each subscriber has its own queue and
// goroutine.
type hub struct {
	mu      sync.Mutex
	status  Status
	changed chan struct{} // closed on every event; nil until someone waits
	seq     uint64        // events published
	subs    map[*subscription]struct{}
	final   bool // Stopped was published: no new subscribers get events
}

func newHub() *hub {
	return &hub{status: Status{State: Idle, Since: time.Now()}, subs: map[*subscription]struct{}{}}
}

func (h *hub) snapshot() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// update applies fn to the status and publishes an Event when the state
// changed, or when a connected bridge moved to another server (fail-back:
// From and To are then both Connected). Once Stopping, the state only
// moves on to Stopped. fn runs under the hub's lock and must not block.
func (h *hub) update(fn func(*Status)) (Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.status
	fn(&h.status)
	if prev.State == Stopping && h.status.State != Stopped {
		h.status.State = Stopping
	}
	if prev.State == Stopped {
		h.status.State = Stopped
	}
	moved := h.status.State == Connected && (h.status.Server != prev.Server || h.status.Addr != prev.Addr)
	if h.status.State == prev.State && !moved {
		return Event{}, false
	}
	ev := Event{From: prev.State, To: h.status.State}
	if h.status.State != prev.State || moved {
		h.status.Since = time.Now()
	}
	h.seq++
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	ev.Status = h.status
	for s := range h.subs {
		s.push(ev)
	}
	if ev.To == Stopped {
		h.final = true
		for s := range h.subs {
			s.finish()
		}
	}
	return ev, true
}

// waitChange blocks until the state differs from `from`, an event is
// published (a state change, or a move to another server while
// Connected), or ctx ends.
func (h *hub) waitChange(ctx context.Context, from State) bool {
	h.mu.Lock()
	if h.status.State != from {
		h.mu.Unlock()
		return true
	}
	if from == Stopped {
		h.mu.Unlock()
		return false // final: nothing will change
	}
	seq := h.seq
	for h.seq == seq {
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		ch := h.changed
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
		h.mu.Lock()
	}
	h.mu.Unlock()
	return true
}

func (h *hub) subscribe() (<-chan Event, func()) {
	s := &subscription{ch: make(chan Event), fin: make(chan struct{}), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	h.mu.Lock()
	if h.final {
		h.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go s.run()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
			s.halt()
			<-s.done
		})
	}
	return s.ch, cancel
}

// closeAll ends every subscription; used when the bridge shuts down. It
// does not wait for subscribers: each subscription delivers what is still
// queued to a reader that takes it, and is cut off closeGrace after this
// call if its reader does not, so no subscriber ever holds Close or Run.
func (h *hub) closeAll() {
	h.mu.Lock()
	subs := h.subs
	h.subs = map[*subscription]struct{}{}
	h.final = true
	h.mu.Unlock()
	for s := range subs {
		s.finish()
	}
}

// closeGrace bounds how long a subscription goes on delivering its last
// events after the bridge stopped.
const closeGrace = time.Second

type subscription struct {
	mu       sync.Mutex
	queue    []Event
	dropped  int           // events dropped since the last one taken from queue
	finished bool          // no more events: close ch once the queue is drained
	fin      chan struct{} // closed by finish
	finOnce  sync.Once
	ch       chan Event
	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// halt ends the subscription, dropping what is still queued.
func (s *subscription) halt() { s.stopOnce.Do(func() { close(s.stop) }) }

func (s *subscription) push(ev Event) {
	s.mu.Lock()
	if len(s.queue) >= maxQueued {
		s.queue = s.queue[1:]
		s.dropped++
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) finish() {
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
	s.finOnce.Do(func() { close(s.fin) })
	s.signal()
}

func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run feeds the channel from the queue. Once finished, it delivers what is
// left for at most closeGrace, then gives up on a reader that went away.
func (s *subscription) run() {
	defer close(s.done)
	defer close(s.ch)
	fin := s.fin
	var grace <-chan time.Time
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			over := s.finished
			s.mu.Unlock()
			if over {
				return
			}
			select {
			case <-s.wake:
			case <-s.stop:
				return
			}
			continue
		}
		ev := s.queue[0]
		s.queue = s.queue[1:]
		ev.Dropped, s.dropped = s.dropped, 0 // the gap is just before ev
		s.mu.Unlock()
		for sent := false; !sent; {
			select {
			case s.ch <- ev:
				sent = true
			case <-s.stop:
				return
			case <-fin:
				fin, grace = nil, time.After(closeGrace)
			case <-grace:
				return
			}
		}
	}
}
