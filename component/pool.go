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
	lane     *lane // its sender's jobs (OrderPerSender), else nil
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
	spawn    func()                    // p.workReady, as a func value built once

	// mu guards the fields below and the jobs' lane, done and stopping.
	mu      sync.Mutex
	closed  bool              // refusing new jobs (Shutdown's drain, or the teardown)
	running int               // handler goroutines alive
	bytes   int               // size of the jobs in jobs
	jobs    map[*job]struct{} // admitted and not yet settled: running, waiting, or done
	waiting int               // jobs waiting in lanes
	lanes   map[string]*lane  // by sender, while its goroutine runs
	// ready holds the jobs admitted that no goroutine has taken yet,
	// oldest first. Each got a goroutine of its own (go p.spawn(), which
	// allocates nothing where go p.work(j) would allocate a closure), but
	// a goroutine that finishes its job takes the next one here before
	// that goroutine runs: a burst runs on the goroutines already
	// running, their replies leave together, and the goroutine that finds
	// ready empty exits at once. No job waits behind a busy one.
	ready   []*job
	changed chan struct{} // closed at the next change; nil when nobody waits
}

// lane holds one sender's jobs: the one running, and those waiting.
type lane struct {
	cur  *job
	wait []*job
	// stopping: a handler of the lane called Shutdown with its ctx. No
	// drain waits for the lane's jobs, which would run only after it.
	stopping bool
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
	switch l := p.lanes[j.from]; {
	case p.closed:
		return refusedDraining
	case p.bytes > 0 && p.bytes+j.size > p.maxBytes: // one job always fits
		return refusedFull
	case l != nil: // its sender's job runs: wait behind it
		if p.waiting >= p.maxWait || len(l.wait) >= p.laneWait {
			return refusedFull
		}
		l.wait = append(l.wait, j)
		j.lane = l
		p.waiting++
	case p.running >= p.limit:
		return refusedFull
	default:
		if p.ordered {
			j.lane = &lane{cur: j}
			p.lanes[j.from] = j.lane
		}
		p.running++
		p.ready = append(p.ready, j)
		go p.spawn()
	}
	j.pool = p
	p.jobs[j] = struct{}{}
	p.bytes += j.size
	return pushed
}

// workReady is a handler goroutine: it works the jobs in ready until
// there is none.
func (p *pool) workReady() {
	p.mu.Lock()
	j := p.takeLocked()
	p.mu.Unlock()
	for j != nil {
		settled := p.run(j)
		p.mu.Lock()
		p.bytes -= j.size
		if settled {
			delete(p.jobs, j)
		} else {
			j.done = true // the teardown answers it
		}
		if l := j.lane; l != nil && len(l.wait) > 0 {
			j, l.cur, l.wait = l.wait[0], l.wait[0], l.wait[1:] // its sender's next
			p.waiting--
		} else {
			if l != nil {
				delete(p.lanes, j.from)
			}
			j = p.takeLocked()
		}
		p.notifyLocked()
		p.mu.Unlock()
	}
}

// takeLocked takes the oldest job of ready, or retires the calling
// goroutine (running) when there is none.
func (p *pool) takeLocked() *job {
	if len(p.ready) == 0 {
		p.running--
		p.notifyLocked()
		return nil
	}
	j := p.ready[0]
	p.ready[0] = nil
	p.ready = p.ready[1:]
	return j
}

// notifyLocked wakes whoever waits for a change.
func (p *pool) notifyLocked() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// idleLocked waits, with p.mu held, until no job is busy (busyLocked;
// it returns true) or a or b is closed (false).
func (p *pool) idleLocked(drain bool, a, b <-chan struct{}) bool {
	for len(p.busyLocked(drain)) > 0 {
		select {
		case <-a:
			return false
		case <-b:
			return false
		default:
		}
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-a:
		case <-b:
		}
		p.mu.Lock()
	}
	return true
}

// depth returns the jobs waiting and the handlers running.
func (p *pool) depth() (waiting, running int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting, p.running
}

// refuse makes push refuse every job from now on.
func (p *pool) refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
}

// exempt marks j as one whose handler waits for the session to stop (it
// called Shutdown with its ctx, maybe on another goroutine, maybe after
// it returned): no drain waits for it, nor for its sender's other jobs
// (OrderPerSender), and the teardown does not wait for its handler.
func (p *pool) exempt(j *job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	j.stopping = true
	if j.lane != nil {
		j.lane.stopping = true
	}
	p.notifyLocked()
}

// busyLocked returns the jobs a drain (drain) or the teardown waits for:
// every job admitted and not done, but for exempt ones and, for a drain,
// those of an exempt job's sender.
func (p *pool) busyLocked(drain bool) []*job {
	var busy []*job
	for j := range p.jobs {
		if !j.done && !j.stopping && !(drain && j.lane != nil && j.lane.stopping) {
			busy = append(busy, j)
		}
	}
	return busy
}

// drain refuses new jobs and waits until every job admitted has finished
// (but for exempt ones), ctx ends (it returns ctx's error) or stop is
// closed.
func (p *pool) drain(ctx context.Context, stop <-chan struct{}) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if !p.idleLocked(true, ctx.Done(), stop) {
		return ctx.Err() // nil when stop was closed
	}
	return nil
}

// cut refuses new jobs and takes the waiting ones out, to be answered
// without running: once the link starts to end, no handler starts.
func (p *pool) cut() (waiting []*job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.lanes {
		for _, j := range l.wait {
			waiting = append(waiting, j)
			delete(p.jobs, j)
			p.bytes -= j.size
		}
		l.wait = nil
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

// stop waits, after cut, until every handler has returned but for exempt
// ones (their goroutines wait for the session to stop), or until deadline;
// it returns the jobs whose handlers still run then.
func (p *pool) stop(deadline <-chan struct{}) (stuck []*job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleLocked(false, deadline, nil)
	return p.busyLocked(false)
}
