package component

import (
	"context"
	"sync"
	"time"

	"github.com/cblink/cblink/internal/closing"
)

// job is one stanza for a handler.
type job struct {
	st *Stanza
	iq IQHandler // nil for messages and presences
	// The request's id and addresses as received, for its reply: the
	// handler owns st and may change it while the teardown answers.
	id, from, to string
	size         int // bytes held while queued
	lane         *lane
	// worker is the goroutine running the handler (set under pool.mu).
	worker uint64
	// answered is set once the IQ's reply is queued (guarded by
	// Session.replyMu), so that a request is answered exactly once: by its
	// handler, or by the teardown on its behalf.
	answered bool
}

// workerIdle is how long a worker waits for a job before it exits.
const workerIdle = 30 * time.Second

// pool runs handler jobs on worker goroutines. Workers start when jobs
// arrive and exit after workerIdle without one, so an idle link runs none.
// A job never waits behind a busy worker while another could start: every
// job queued either wakes a waiting worker or starts a new one, up to the
// lane's bound.
//
// The pool is owned by its Session: the reader pushes, the teardown cuts
// and stops it and waits for its workers.
type pool struct {
	owner any             // whose Close a handler may be inside (the Mux)
	run   func(*job) bool // runs a job; false: an IQ left unanswered

	size     int // bound on the jobs waiting, all lanes together
	laneSize int // bound on the jobs waiting in one lane
	maxBytes int // bound on the bytes of the jobs waiting

	mu        sync.Mutex
	lanes     []*lane
	queued    int               // jobs waiting in all lanes
	bytes     int               // their size
	inflight  map[*job]struct{} // jobs whose handler is running
	unsettled []*job            // IQs whose handler returned but whose reply could not be queued (closing)
	workers   int               // worker goroutines alive
	draining  bool              // no new jobs (Shutdown or teardown)
	stopped   bool              // workers exit as soon as they are idle
	changed   chan struct{}     // closed on the next change; nil when nobody waits
}

// lane is one FIFO queue with its own workers. Without OrderPerSender
// there is one lane; with it, one lane of one worker per slot, so a
// sender's stanzas run in order. The lanes share the pool's bounds on
// waiting jobs and bytes, and each may hold at most its even share of
// the jobs or an eighth of them (laneShare), whichever is more, so that
// a sender whose handler blocks cannot fill the queue for every other
// sender.
type lane struct {
	jobs    []*job // jobs[head:] wait, oldest first
	head    int
	max     int // bound on workers
	workers int
	waiting int           // workers blocked waiting for a job, not yet woken
	wake    chan struct{} // one token per waiting worker woken (cap max)
}

// laneShare is the part of the pool's bound on waiting jobs one lane of
// several may hold.
const laneShare = 8

func newPool(lanes, size, maxBytes, workers int, owner any, run func(*job) bool) *pool {
	p := &pool{owner: owner, run: run, size: size, laneSize: size, maxBytes: maxBytes, lanes: make([]*lane, lanes), inflight: make(map[*job]struct{})}
	if lanes > 1 {
		p.laneSize = max(1, size/lanes, size/laneShare)
	}
	for i := range p.lanes {
		p.lanes[i] = &lane{max: workers, wake: make(chan struct{}, workers)}
	}
	return p
}

func (l *lane) len() int { return len(l.jobs) - l.head }

func (l *lane) pop() *job {
	if l.head == len(l.jobs) {
		return nil
	}
	j := l.jobs[l.head]
	l.jobs[l.head] = nil
	l.head++
	if l.head == len(l.jobs) {
		l.jobs, l.head = l.jobs[:0], 0
	}
	return j
}

// pushResult says what became of a job offered to the pool.
type pushResult uint8

const (
	pushed          pushResult = iota // queued (a worker was woken or started)
	refusedFull                       // the lane is full: shed the job
	refusedDraining                   // the session is closing: refuse the job
)

// push queues j on lane i, within the pool's bounds on jobs and bytes.
// It never blocks.
func (p *pool) push(i int, j *job) pushResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.draining {
		return refusedDraining
	}
	l := p.lanes[i]
	if p.queued >= p.size || l.len() >= p.laneSize || (p.queued > 0 && p.bytes+j.size > p.maxBytes) {
		return refusedFull
	}
	j.lane = l
	l.jobs = append(l.jobs, j)
	p.queued++
	p.bytes += j.size
	switch {
	case l.waiting > 0:
		l.waiting--
		l.wake <- struct{}{} // never blocks: fewer tokens than workers
		return pushed
	case l.workers < l.max:
		p.startLocked(l)
	}
	return pushed // every worker is busy; the first to finish takes it
}

// startLocked starts a worker for lane l (p.mu held, l.workers < l.max).
func (p *pool) startLocked(l *lane) {
	l.workers++
	p.workers++
	go p.work(l)
}

// work is a worker goroutine of lane l.
func (p *pool) work(l *lane) {
	id := closing.ID()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	p.mu.Lock()
	for {
		if j := l.pop(); j != nil {
			p.queued--
			p.bytes -= j.size
			j.worker = id
			p.inflight[j] = struct{}{}
			p.mu.Unlock()
			settled := p.run(j)
			p.mu.Lock()
			delete(p.inflight, j)
			if !settled {
				p.unsettled = append(p.unsettled, j) // for the teardown to answer
			}
			p.notify()
			continue
		}
		if p.stopped {
			break
		}
		l.waiting++
		p.mu.Unlock()
		idle.Reset(workerIdle)
		woken := false
		select {
		case <-l.wake:
			woken = true
		case <-idle.C:
		}
		p.mu.Lock()
		if woken {
			continue
		}
		select {
		case <-l.wake: // a job came as the timer fired: take it
			continue
		default:
		}
		l.waiting--
		break
	}
	l.workers--
	p.workers--
	p.notify()
	p.mu.Unlock()
}

// notify wakes whoever waits for a change (p.mu held).
func (p *pool) notify() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// waitCh returns a channel closed at the next change (p.mu held).
func (p *pool) waitCh() <-chan struct{} {
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.changed
}

// depth returns the jobs waiting and the handlers running.
func (p *pool) depth() (queued, running int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued, len(p.inflight)
}

// busyLocked counts the jobs queued or running that a drain waits for,
// leaving out handlers that are themselves inside a Close of the owner
// (they finish only after it) and queued jobs that only such a handler's
// worker could run (the teardown refuses those). A lane whose workers are
// all inside a Close gets a new worker when its bound allows.
func (p *pool) busyLocked() int {
	n := 0
	self := map[*lane]int{}
	for j := range p.inflight {
		if closing.Inside(j.worker, p.owner) {
			self[j.lane]++
		} else {
			n++
		}
	}
	for _, l := range p.lanes {
		if l.len() == 0 {
			continue
		}
		if l.workers-self[l] == 0 {
			if l.workers >= l.max {
				continue // nobody can run them before the Close
			}
			p.startLocked(l)
		}
		n += l.len()
	}
	return n
}

// drain stops new jobs and waits until every queued and running job has
// finished, ctx ends (it returns ctx's error) or stop is closed.
func (p *pool) drain(ctx context.Context, stop <-chan struct{}) error {
	p.mu.Lock()
	p.draining = true
	for {
		if p.busyLocked() == 0 {
			p.mu.Unlock()
			return nil
		}
		ch := p.waitCh()
		p.mu.Unlock()
		select {
		case <-ch:
		case <-closing.Changed(): // a handler may have entered a Close
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return nil
		}
		p.mu.Lock()
	}
}

// cut refuses new jobs and takes every queued one out, to be answered
// without running: once the link starts to end, no handler starts.
func (p *pool) cut() (queued []*job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	for _, l := range p.lanes {
		for j := l.pop(); j != nil; j = l.pop() {
			queued = append(queued, j)
		}
	}
	p.queued, p.bytes = 0, 0
	return queued
}

// running returns the jobs whose handlers are running, and those whose
// handlers returned without getting their reply out.
func (p *pool) running() []*job {
	p.mu.Lock()
	defer p.mu.Unlock()
	js := append([]*job(nil), p.unsettled...)
	for j := range p.inflight {
		js = append(js, j)
	}
	return js
}

// stop makes every worker exit once its handler (if any) returns. It
// waits for idle workers (they exit at once), then for running handlers
// until deadline, but not for handlers inside a Close of the owner. It
// returns the jobs whose handlers were still running at the deadline.
func (p *pool) stop(deadline <-chan struct{}) (stuck []*job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, l := range p.lanes {
		for ; l.waiting > 0; l.waiting-- {
			l.wake <- struct{}{}
		}
	}
	for {
		self := 0
		for j := range p.inflight {
			if closing.Inside(j.worker, p.owner) {
				self++
			}
		}
		idle := p.workers - len(p.inflight)
		if idle == 0 && len(p.inflight) == self {
			return nil
		}
		expired := false
		select {
		case <-deadline:
			expired = true
		default:
		}
		if idle == 0 && expired {
			for j := range p.inflight {
				if !closing.Inside(j.worker, p.owner) {
					stuck = append(stuck, j)
				}
			}
			return stuck
		}
		ch := p.waitCh()
		p.mu.Unlock()
		dl := deadline
		if idle > 0 {
			dl = nil // idle workers exit at once: wait for them regardless
		}
		select {
		case <-ch:
		case <-closing.Changed():
		case <-dl:
		}
		p.mu.Lock()
	}
}
