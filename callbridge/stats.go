package callbridge

import (
	"maps"
	"sync"
	"time"

	"github.com/cblink/cblink/component"
)

// Stats counts what the bridge has done since New. Every counter only
// grows, whatever links come and go: those of stanzas and requests include
// every link that has been live and not yet ended (the live one, and one
// draining after an Update or a fail-back) as they stand now, and the
// final counts of the links that ended.
type Stats struct {
	Connects uint64 `json:"connects"`
	// Disconnects counts links that ended, by cause (an ErrorKind).
	Disconnects map[ErrorKind]uint64 `json:"disconnects"`
	// ConnectFailures counts failed attempts to bring a link up, by cause.
	ConnectFailures map[ErrorKind]uint64 `json:"connect_failures"`
	StanzasIn       uint64               `json:"stanzas_in"`
	StanzasOut      uint64               `json:"stanzas_out"`
	JoinsHandled    uint64               `json:"joins_handled"`
	JoinsRefused    uint64               `json:"joins_refused"`
	// RequestsShed counts requests answered resource-constraint because the
	// handlers' queue was full; RequestsRefused those answered
	// service-unavailable because their link was closing.
	RequestsShed    uint64 `json:"requests_shed"`
	RequestsRefused uint64 `json:"requests_refused"`
	// RequestsUnanswered counts requests read that got no answer because
	// their link's stream could no longer carry one
	// (component.Stats.Unanswered): mostly those the server routed just
	// before it read the bridge's closing tag, at a stop or an Update.
	RequestsUnanswered uint64 `json:"requests_unanswered"`
	// Queued and Running are the stanzas waiting for a handler and the
	// handlers running now, on the live link and any link draining.
	Queued  int `json:"queued"`
	Running int `json:"running"`
	// LastKeepaliveRTT is the round trip of the last XEP-0199 ping to the
	// server, 0 if none yet.
	LastKeepaliveRTT time.Duration `json:"last_keepalive_rtt_ns"`
}

type statsCounters struct {
	mu              sync.Mutex
	connects        uint64
	disconnects     map[ErrorKind]uint64
	connectFailures map[ErrorKind]uint64
	// links are the sessions published and not yet ended: their counts
	// are added on read. A session leaves links and its final counts join
	// the totals in one step (sessionEnded), so a read counts each link
	// exactly once.
	links map[*component.Session]struct{}
	// totals of ended sessions
	in, out      uint64
	shed, refsd  uint64
	unanswered   uint64
	lastRTT      time.Duration
	joinsHandled uint64
	joinsRefused uint64
}

func newStatsCounters() *statsCounters {
	return &statsCounters{disconnects: map[ErrorKind]uint64{}, connectFailures: map[ErrorKind]uint64{}, links: map[*component.Session]struct{}{}}
}

func (s *statsCounters) connectFailed(k ErrorKind) {
	s.mu.Lock()
	s.connectFailures[k]++
	s.mu.Unlock()
}

// connected counts a link published, whose counts are read live from now.
func (s *statsCounters) connected(sess *component.Session) {
	s.mu.Lock()
	s.connects++
	s.links[sess] = struct{}{}
	s.mu.Unlock()
}

// tracks reports whether sess is published and not yet ended.
func (s *statsCounters) tracks(sess *component.Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.links[sess]
	return ok
}

// sessionEnded folds a published session's final counters into the totals
// once it has ended (its goroutines gone: the counts no longer move).
func (s *statsCounters) sessionEnded(sess *component.Session, k ErrorKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.links[sess]; !ok {
		return // folded already
	}
	delete(s.links, sess)
	st := sess.Stats()
	s.disconnects[k]++
	s.in += st.StanzasIn
	s.out += st.StanzasOut
	s.shed += st.Shed
	s.refsd += st.Refused
	s.unanswered += st.Unanswered
	if st.LastPingRTT > 0 {
		s.lastRTT = st.LastPingRTT
	}
}

func (s *statsCounters) join(refused bool) {
	s.mu.Lock()
	if refused {
		s.joinsRefused++
	} else {
		s.joinsHandled++
	}
	s.mu.Unlock()
}

// snapshot reads the totals and the links not yet ended under one lock,
// so that successive snapshots never go back.
func (s *statsCounters) snapshot(live *component.Session) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Connects:           s.connects,
		Disconnects:        maps.Clone(s.disconnects),
		ConnectFailures:    maps.Clone(s.connectFailures),
		StanzasIn:          s.in,
		StanzasOut:         s.out,
		JoinsHandled:       s.joinsHandled,
		JoinsRefused:       s.joinsRefused,
		RequestsShed:       s.shed,
		RequestsRefused:    s.refsd,
		RequestsUnanswered: s.unanswered,
		LastKeepaliveRTT:   s.lastRTT,
	}
	for sess := range s.links {
		ls := sess.Stats()
		st.StanzasIn += ls.StanzasIn
		st.StanzasOut += ls.StanzasOut
		st.RequestsShed += ls.Shed
		st.RequestsRefused += ls.Refused
		st.RequestsUnanswered += ls.Unanswered
		st.Queued += ls.Queued
		st.Running += ls.Running
		if sess == live && ls.LastPingRTT > 0 {
			st.LastKeepaliveRTT = ls.LastPingRTT
		}
	}
	return st
}
