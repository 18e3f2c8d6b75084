package callbridge

import (
	"context"
	"errors"
	"time"
)

// loop runs connection cycles until ctx ends (a stop: Close, Shutdown or
// Run's ctx) or a permanent error stops it. hard ends when the stop must
// not wait for a drain. On return no link, attempt or probe is left, but
// for background closes counted in b.bg. The pacer decides every wait.
func (b *Bridge) loop(ctx, hard context.Context) error {
	pace := newPacer()
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// This cycle uses the current settings: an Update made before this
		// point needs no reconnection of its own once the cycle is done.
		select {
		case <-b.updated:
		default:
		}
		cfg, res := b.current()
		pace.bo = cfg.Backoff
		b.set(func(s *Status) { s.State = Resolving; s.Backoff = 0; s.Attempt = pace.cycles })
		eps, err := b.endpoints(ctx, cfg, res)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			b.failed(err)
			b.logLookupFailed(cfg, err)
			pace.lookupFailed(err)
			if err := b.backOff(ctx, cfg, pace, err); err != nil {
				return err
			}
			continue
		}
		l, err := b.connectAny(ctx, cfg, pace.order(eps), pace)
		if l != nil {
			l.backup = isBackup(l.ep, eps)
		}
		if l != nil && ctx.Err() != nil {
			// Stopped just as the winner authenticated: it was never
			// published; close it before returning.
			l.sess.Close()
			return ctx.Err()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l == nil {
			if err := b.backOff(ctx, cfg, pace, err); err != nil {
				return err
			}
			continue
		}

		pace.connected()
		reason, last, lerr := b.serve(ctx, hard, cfg, res, l)
		switch reason {
		case stopped:
			return ctx.Err()
		case reconfigured:
			pace.reset()
			continue
		}
		b.set(func(s *Status) { s.LastErr, s.LastErrKind = lerr, Classify(lerr) })
		now := b.now()
		pace.dropped(last.ep, linkEnd{lived: now.Sub(last.up), pingAnswered: last.sess.Stats().LastPingRTT > 0}, now)
		if err := b.backOff(ctx, cfg, pace, lerr); err != nil {
			return err
		}
	}
}

// backOff asks the pacer for the verdict of the cycle that just ended and
// waits it out; err is the cycle's last error. It returns nil when the
// next cycle may start, ctx's error when ctx ended, and a
// *PermanentError wrapping err when the failure is permanent and
// Config.StopOnPermanentError is set. An Update ends the wait early and
// clears the pacer.
func (b *Bridge) backOff(ctx context.Context, cfg *resolved, pace *pacer, err error) error {
	wait, perm := pace.next(b.now())
	b.set(func(s *Status) { s.Permanent = perm }) // the verdict, whatever comes next
	if perm && cfg.StopOnPermanentError {
		return &PermanentError{Err: err}
	}
	if wait <= 0 {
		return nil
	}
	b.set(func(s *Status) { s.State = BackingOff; s.Backoff = wait; s.Attempt = pace.cycles })
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-b.updated:
		pace.reset()
	case <-t.C:
	}
	return nil
}

type endReason int

const (
	dropped endReason = iota
	stopped
	reconfigured
)

// serve publishes l, starts it, and supervises it until it drops, the
// bridge stops or the settings change. With Config.FailBack it probes the
// preferred servers meanwhile on a goroutine of its own, so that a probe
// never delays noticing a drop, an Update or a stop, and moves to a
// preferred server without a gap. It returns the link that was live last;
// that link, any probe and its link are closed when serve returns (but for
// a fail-back's old link, which drains in the background under b.bg).
func (b *Bridge) serve(ctx, hard context.Context, cfg *resolved, res Resolver, l *link) (endReason, *link, error) {
	if !b.publish(ctx, l) {
		// The bridge stopped as the link came up: it was never published.
		l.sess.Close()
		return stopped, l, nil
	}
	l.sess.Start()
	var (
		tick   <-chan time.Time
		pr     *probe     // the fail-back probe in flight, if any
		probeC chan *link // pr's result; nil when none
		warned time.Time  // when the last backup WARN was logged
	)
	if cfg.FailBack {
		t := time.NewTicker(cfg.FailBackInterval)
		defer t.Stop()
		tick = t.C
	}
	endProbe := func() {
		if pr == nil {
			return
		}
		pr.stop()
		if nl := <-pr.c; nl != nil {
			nl.sess.Close() // authenticated as we gave up on it: never published
		}
		pr, probeC = nil, nil
	}
	defer endProbe()
	// A stop wins over everything else that may be ready at the same time
	// (an Update, a probe's result): select picks at random, so it is
	// checked first on every round.
	stop := func() (endReason, *link, error) {
		endProbe()
		// Stopping is published once the link refuses new requests.
		l.sess.StopAccepting()
		b.set(func(s *Status) { s.State = Stopping })
		b.drained(l.sess.Shutdown(hard), hard)
		b.ended(l, KindClosed)
		return stopped, l, nil
	}
	for {
		if ctx.Err() != nil {
			return stop()
		}
		select {
		case <-l.sess.Done():
			err := l.sess.Err()
			b.ended(l, Classify(err))
			return dropped, l, err
		case <-ctx.Done():
			return stop()
		case <-b.updated:
			if ctx.Err() != nil {
				return stop()
			}
			cfg.Logger.Info("xmpp settings changed: reconnecting", "server", l.ep.Target)
			endProbe()
			// The old link refuses new requests while it drains: not
			// Connected (not ready) until the new link is up.
			l.sess.StopAccepting()
			b.set(func(s *Status) { s.State = Draining; s.ConnectedSince = time.Time{} })
			b.drain(hard, cfg, l)
			b.ended(l, KindClosed)
			return reconfigured, l, nil
		case <-tick:
			if pr == nil {
				pr = b.startProbe(ctx, cfg, res, l)
				probeC = pr.c
			}
		case nl := <-probeC:
			perr := pr.err
			pr.stop()
			pr, probeC = nil, nil
			switch {
			case nl == nil:
				if perr != nil && ctx.Err() == nil && l.backup && (warned.IsZero() || b.now().Sub(warned) >= backupWarnEvery) {
					warned = b.now()
					attrs := []any{"server", l.ep.Target, "connected_for", warned.Sub(l.up).Round(time.Second)}
					if ce := (*ConnectError)(nil); errors.As(perr, &ce) {
						attrs = append(attrs, "preferred", ce.Server) // the one that failed; server is in use
					}
					cfg.Logger.Warn("xmpp link on a backup server: the preferred server still fails", append(attrs,
						"err", perr.Error(), "kind", string(Classify(perr)), "permanent", Classify(perr).Permanent())...)
				}
			case ctx.Err() != nil:
				nl.sess.Close() // never published: the bridge is stopping
			default:
				old := l
				l = nl
				b.swap(hard, cfg, old, l)
			}
		}
	}
}

// backupWarnEvery spaces the WARN lines saying that the bridge runs on a
// backup while the preferred server fails its fail-back probes.
const backupWarnEvery = 10 * time.Minute

// probe is a fail-back probe running on a goroutine of its own.
type probe struct {
	c    chan *link // receives the result once: a better link, or nil
	stop context.CancelFunc
	// err is the probe's last failure when it found no better link;
	// written before the send on c, read after the receive.
	err error
}

func (b *Bridge) startProbe(ctx context.Context, cfg *resolved, res Resolver, cur *link) *probe {
	pctx, stop := context.WithCancel(ctx)
	p := &probe{c: make(chan *link, 1), stop: stop}
	go func() {
		l, err := b.failBack(pctx, cfg, res, cur)
		p.err = err
		p.c <- l
	}()
	return p
}

// drain takes l down gracefully within Config.DrainTimeout (less if hard
// ends first).
func (b *Bridge) drain(hard context.Context, cfg *resolved, l *link) {
	ctx, cancel := context.WithTimeout(hard, cfg.DrainTimeout)
	defer cancel()
	b.drained(l.sess.Shutdown(ctx), hard)
}

// drained records a drain that a stop cut short (hard ended: Close, Run's
// ctx, or Shutdown's ctx), whatever link it was, so that Shutdown reports
// it. A drain cut by DrainTimeout alone is not the stop's doing.
func (b *Bridge) drained(err error, hard context.Context) {
	if err == nil || hard.Err() == nil {
		return
	}
	b.mu.Lock()
	b.drainErr = err
	b.mu.Unlock()
}

// publish makes l the live link (Session, Send, Status) before its first
// stanza is dispatched. It returns false, publishing nothing, once the
// bridge is stopping (Close, Shutdown: checked under the lock stop takes;
// or ctx ended): a link published is one the stop takes down.
func (b *Bridge) publish(ctx context.Context, l *link) bool {
	b.mu.Lock()
	if b.closed || ctx.Err() != nil {
		b.mu.Unlock()
		return false
	}
	b.live.Store(l)
	b.mu.Unlock()
	b.stats.connected(l.sess)
	b.set(func(s *Status) {
		s.State, s.Server, s.Addr = Connected, l.ep.Target, l.addr.String()
		s.ConnectedSince, s.Attempt, s.LastErr, s.LastErrKind, s.Permanent, s.Backoff = l.up, 0, nil, KindNone, false, 0
		s.Backup = l.backup
	})
	return true
}

// ended retires a link that has ended or been closed.
func (b *Bridge) ended(l *link, k ErrorKind) {
	if b.live.CompareAndSwap(l, nil) {
		b.set(func(s *Status) { s.ConnectedSince, s.Backup = time.Time{}, false })
	}
	b.stats.sessionEnded(l.sess, k)
}

// swap moves from old to a better link without a gap: the new link is
// published and started first, then the old one drains in the background
// (owned by Run through b.bg) and closes cleanly.
func (b *Bridge) swap(hard context.Context, cfg *resolved, old, l *link) {
	b.live.Store(l)
	b.stats.connected(l.sess)
	b.set(func(s *Status) {
		s.Server, s.Addr, s.ConnectedSince, s.Backup = l.ep.Target, l.addr.String(), l.up, l.backup
	})
	l.sess.Start()
	cfg.Logger.Info("xmpp link failed back to a preferred server", "state", Connected.String(), "server", l.ep.Target, "addr", l.addr.String(), "from", old.ep.Target)
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		b.drain(hard, cfg, old)
		b.stats.sessionEnded(old.sess, KindFailBack)
	}()
}

// failBack probes the endpoints preferred over the current one and returns
// an authenticated (unstarted) link to the first that accepts, or nil and
// the last failure (nil when there was nothing to probe).
func (b *Bridge) failBack(ctx context.Context, cfg *resolved, res Resolver, cur *link) (*link, error) {
	eps, err := b.endpoints(ctx, cfg, res)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	var last error
	for _, ep := range eps {
		if ep.Priority >= cur.ep.Priority || key(ep) == key(cur.ep) {
			continue
		}
		l, err := b.connect(ctx, cfg, ep, true, 0, func() {})
		if err == nil {
			l.backup = isBackup(ep, eps)
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		last = err
		cfg.Logger.Debug("fail-back probe failed", "server", ep.Target, "err", err.Error())
	}
	return nil, last
}
