package component

import (
	"context"
	"sync"
)

// job is one stanza for a handler.
type job struct {
	// ctx is the handler's context: the session's, which also says which
	// request it serves (see Session.Shutdown).
	ctx jobContext
	st  *Stanza
	iq  IQHandler // nil for messages and presences
	// The request's id and addresses as received, for its reply: the
	// handler owns st and may change it while the teardown answers.
	id, from, to string
	size         int // bytes counted against Config.MaxQueuedBytes
	pool         *pool

	// Guarded by pool.mu:
	lane     *lane // its sender's queue (OrderPerSender), else nil
	next     *job  // the job after it in lane
	done     bool  // its handler returned (or never ran) without an answer out
	stopping bool  // Shutdown was called with ctx: drains do not wait for it

	// answered is guarded by Session.replyMu: set once the IQ's reply is
	// queued, by its handler or by the teardown on its behalf.
	answered bool
}

// jobContext is the context a handler gets: the session's context, which
// also carries the job, so that Shutdown called with it (or with a context
// derived from it, on any goroutine) knows which request not to wait for.
// It lives inside the job: no allocation of its own.
type jobContext struct {
	context.Context
	j *job
}

type jobKey struct{}

func (c *jobContext) Value(key any) any {
	if key == (jobKey{}) {
		return c.j
	}
	return c.Context.Value(key)
}

// pool runs handlers: one goroutine per request, at most limit at once,
// as errgroup.SetLimit with TryGo. A request that finds the limit reached,
// or the byte budget spent, is refused at once (the reader sheds it); the
// reader never waits. With OrderPerSender the requests of one sender run
// in order on one goroutine, the later ones waiting in their sender's
// lane.
//
// The pool is owned by its Session: the reader pushes, Shutdown drains,
// the teardown cuts and waits for the goroutines.
type pool struct {
	run      func(*job) (settled bool) // runs a job; false: an IQ left unanswered
	limit    int                       // Config.Workers
	maxBytes int                       // Config.MaxQueuedBytes
	ordered  bool                      // Config.OrderPerSender
	maxWait  int                       // Config.QueueSize: jobs waiting in lanes
	laneWait int                       // jobs waiting in one lane

	// mu guards the fields below and the jobs' lane, next, done and
	// stopping.
	mu      sync.Mutex
	closed  bool              // refusing new jobs (Shutdown's drain, or the teardown)
	running int               // handler goroutines alive
	bytes   int               // size of the jobs in jobs
	jobs    map[*job]struct{} // admitted and not yet settled: running, waiting, or done
	waiting int               // jobs waiting in lanes
	lanes   map[string]*lane  // by sender, while its goroutine runs
	changed chan struct{}     // closed at the next change; nil when nobody waits
	// ready holds the jobs admitted whose goroutine has not taken them
	// yet: push starts spawn, a func value built once, so that starting a
	// goroutine allocates nothing (go p.work(j) would allocate a closure
	// for every request).
	ready []*job
	spawn func()
}

// lane is the FIFO of one sender's jobs, served by one goroutine.
type lane struct {
	key        string
	cur        *job // running
	head, tail *job // waiting
	n          int
}

// laneShare is the part of QueueSize one sender may take, at least: a
// sender whose handler blocks cannot fill the queue for the others.
const laneShare = 8

func newPool(limit, maxWait, maxBytes int, ordered bool, run func(*job) bool) *pool {
	p := &pool{run: run, limit: limit, maxBytes: maxBytes, ordered: ordered, maxWait: maxWait, jobs: make(map[*job]struct{})}
	if ordered {
		p.lanes = make(map[string]*lane)
		p.laneWait = max(1, maxWait/limit, maxWait/laneShare)
	}
	p.spawn = p.workReady
	return p
}

// pushResult says what became of a job offered to the pool.
type pushResult uint8

const (
	pushed          pushResult = iota // running, or waiting behind its sender's job
	refusedFull                       // no room (goroutines, bytes or lane): shed it
	refusedDraining                   // the session is closing: refuse it
)

// push admits j: it starts a goroutine for it, or queues it behind the
// job of the same sender that runs (OrderPerSender). It never blocks.
func (p *pool) push(j *job) pushResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return refusedDraining
	}
	if p.bytes > 0 && p.bytes+j.size > p.maxBytes {
		return refusedFull // a job always fits when nothing else is held
	}
	var l *lane
	if p.ordered {
		if l = p.lanes[j.from]; l != nil {
			if p.waiting >= p.maxWait || l.n >= p.laneWait {
				return refusedFull
			}
			j.lane = l
			if l.tail == nil {
				l.head = j
			} else {
				l.tail.next = j
			}
			l.tail = j
			l.n++
			p.waiting++
			p.admitLocked(j)
			return pushed
		}
	}
	if p.running >= p.limit {
		return refusedFull
	}
	if p.ordered {
		l = &lane{key: j.from, cur: j}
		p.lanes[j.from] = l
		j.lane = l
	}
	p.admitLocked(j)
	p.running++
	p.ready = append(p.ready, j)
	go p.spawn()
	return pushed
}

func (p *pool) admitLocked(j *job) {
	j.pool = p
	p.jobs[j] = struct{}{}
	p.bytes += j.size
}

// workReady takes a job from ready and works it.
func (p *pool) workReady() {
	p.mu.Lock()
	j := p.ready[len(p.ready)-1]
	p.ready[len(p.ready)-1] = nil
	p.ready = p.ready[:len(p.ready)-1]
	p.mu.Unlock()
	p.work(j)
}

// work runs j, then the jobs that wait behind it in its lane.
func (p *pool) work(j *job) {
	for j != nil {
		settled := p.run(j)
		p.mu.Lock()
		p.bytes -= j.size
		if settled {
			delete(p.jobs, j)
		} else {
			j.done = true // the teardown answers it
		}
		j = p.nextLocked(j.lane)
		if j == nil {
			p.running--
		}
		p.notifyLocked()
		p.mu.Unlock()
	}
}

// nextLocked takes the next job of lane l, or retires l when it has none.
func (p *pool) nextLocked(l *lane) *job {
	if l == nil {
		return nil
	}
	j := l.head
	if j == nil {
		delete(p.lanes, l.key)
		return nil
	}
	l.head, j.next = j.next, nil
	if l.head == nil {
		l.tail = nil
	}
	l.n--
	p.waiting--
	l.cur = j
	return j
}

// notifyLocked wakes whoever waits for a change.
func (p *pool) notifyLocked() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// waitLocked returns a channel closed at the next change.
func (p *pool) waitLocked() <-chan struct{} {
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.changed
}

// depth returns the jobs waiting and the handlers running.
func (p *pool) depth() (waiting, running int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting, p.running
}

// exempt marks j as one whose handler waits for the session to stop: no
// drain waits for it, nor for the jobs waiting behind it in its lane.
func (p *pool) exempt(j *job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	j.stopping = true
	p.notifyLocked()
}

// refuse makes push refuse every job from now on.
func (p *pool) refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
}

// busyLocked counts the jobs a drain waits for: those running or waiting,
// but for exempt ones and those waiting behind an exempt one.
func (p *pool) busyLocked() int {
	n := 0
	for j := range p.jobs {
		switch {
		case j.done:
		case j.lane == nil || j.lane.cur == j:
			if !j.stopping {
				n++
			}
		case !j.lane.cur.stopping:
			n++
		}
	}
	return n
}

// drain refuses new jobs and waits until every job admitted has finished
// (but for exempt ones), ctx ends (it returns ctx's error) or stop is
// closed.
func (p *pool) drain(ctx context.Context, stop <-chan struct{}) error {
	p.mu.Lock()
	p.closed = true
	for p.busyLocked() > 0 {
		ch := p.waitLocked()
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return nil
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// cut refuses new jobs and takes the waiting ones out, to be answered
// without running: once the link starts to end, no handler starts.
func (p *pool) cut() (waiting []*job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.lanes {
		for j := l.head; j != nil; j = j.next {
			waiting = append(waiting, j)
			delete(p.jobs, j)
			p.bytes -= j.size
		}
		l.head, l.tail, l.n = nil, nil, 0
	}
	p.waiting = 0
	return waiting
}

// unsettled returns the jobs admitted and not yet settled: those whose
// handlers run, and those whose handlers returned without getting their
// answer out.
func (p *pool) unsettled() []*job {
	p.mu.Lock()
	defer p.mu.Unlock()
	js := make([]*job, 0, len(p.jobs))
	for j := range p.jobs {
		js = append(js, j)
	}
	return js
}

// stop waits until every handler goroutine has exited, but for those of
// exempt jobs (they wait for the session to stop), or until deadline; it
// then returns the jobs whose handlers still run. Call it after cut.
func (p *pool) stop(deadline <-chan struct{}) []*job {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		stuck, self := p.runningLocked()
		if p.running == self {
			return nil
		}
		ch := p.waitLocked()
		p.mu.Unlock()
		select {
		case <-ch:
			p.mu.Lock()
		case <-deadline:
			p.mu.Lock()
			if stuck, self = p.runningLocked(); p.running == self {
				return nil
			}
			return stuck
		}
	}
}

// runningLocked returns the jobs whose handlers run, leaving out and
// counting the exempt ones.
func (p *pool) runningLocked() (running []*job, exempt int) {
	for j := range p.jobs {
		switch {
		case j.done:
		case j.stopping:
			exempt++
		default:
			running = append(running, j)
		}
	}
	return running, exempt
}
