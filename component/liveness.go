package component

import (
	"fmt"
	"log/slog"
	"time"
)

// run is the session's housekeeping goroutine: keepalives, pings,
// writer failures, and the teardown. It never waits for room in the write
// queue: keepalives and pings bypass its bound, so a ping times out on
// schedule even while a server that stopped reading holds the queue full.
func (s *Session) run() {
	defer s.teardown()
	var kaC, pingC, pingTO <-chan time.Time
	var kaTimer *time.Timer
	if d := s.cfg.KeepaliveIdle; d > 0 {
		kaTimer = time.NewTimer(d)
		defer kaTimer.Stop()
		kaC = kaTimer.C
	}
	if d := s.cfg.PingInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		pingC = t.C
	}
	var (
		pingRes   chan iqResult
		pingID    string
		pingStart time.Time
		pingReads uint64 // reads from the server when the ping was sent
		pingTimer *time.Timer
	)
	defer func() {
		if pingTimer != nil {
			pingTimer.Stop()
		}
	}()
	writerDone := s.w.Done()
	for {
		select {
		case <-s.quit:
			return
		case <-writerDone:
			writerDone = nil
			s.fail(fmt.Errorf("component: write to the server: %w", s.w.Err()), endAbort, nil)
		case <-kaC:
			idle := s.cfg.KeepaliveIdle
			if since := time.Since(s.w.LastWrite()); since < idle || s.w.Pending() > 0 {
				kaTimer.Reset(max(idle-since, idle/4))
				continue
			}
			// Counted first: the peer may see the space before this
			// goroutine runs again.
			s.stats.keepalivesOut.Add(1)
			if err := s.w.AppendControl(func(b []byte) []byte { return append(b, ' ') }); err != nil {
				s.stats.keepalivesOut.Add(^uint64(0))
			}
			kaTimer.Reset(idle)
		case <-pingC:
			if pingRes != nil {
				continue // the previous ping is still out; its timeout runs
			}
			id := s.nextID()
			p, err := s.register(id, s.cfg.serverAddr)
			if err != nil {
				continue
			}
			pingRes, pingID, pingStart, pingReads = p.ch, id, time.Now(), s.rd.reads.Load()
			err = s.w.AppendControl(func(b []byte) []byte {
				return appendStanza(b, KindIQ, "get", id, s.cfg.addrStr, s.cfg.serverAddr, pingPayload)
			})
			if err != nil {
				s.unregister(pingID)
				pingRes = nil
				continue
			}
			s.stats.out.Add(1)
			s.stats.pingsSent.Add(1)
			pingTimer = time.NewTimer(s.cfg.PingTimeout)
			pingTO = pingTimer.C
		case r := <-pingRes:
			pingRes, pingTO = nil, nil
			pingTimer.Stop()
			if r.err != nil {
				continue // the link is ending; quit follows
			}
			s.stats.lastRTT.Store(int64(time.Since(pingStart)))
		case <-pingTO:
			s.unregister(pingID)
			pingRes, pingTO = nil, nil
			if s.rd.reads.Load() != pingReads {
				// The pong has not come, but the server has sent
				// something since the ping: it is alive (its pong may
				// wait behind what it is sending). Liveness measures the
				// server, not this side's backlog.
				s.log.Debug("ping unanswered in time, but the server is sending: alive", slog.Duration("timeout", s.cfg.PingTimeout))
				continue
			}
			s.fail(fmt.Errorf("component: ping to %s unanswered after %v, nothing read meanwhile: %w", s.cfg.serverAddr, s.cfg.PingTimeout, ErrTimeout), endAbort, nil)
		}
	}
}
