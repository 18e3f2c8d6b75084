package callbridge

import (
	"maps"
	"sync"
	"time"

	"github.com/cblink/cblink/component"
)

// Stats counts what the bridge has done since New. Counters of stanzas
// include the current link.
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
	// Queued and Running are the live link's stanzas waiting for a
	// handler and handlers running, now.
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
	// totals of finished sessions; the live one is added on read
	in, out      uint64
	shed, refsd  uint64
	lastRTT      time.Duration
	joinsHandled uint64
	joinsRefused uint64
}

func newStatsCounters() *statsCounters {
	return &statsCounters{disconnects: map[ErrorKind]uint64{}, connectFailures: map[ErrorKind]uint64{}}
}

func (s *statsCounters) connectFailed(k ErrorKind) {
	s.mu.Lock()
	s.connectFailures[k]++
	s.mu.Unlock()
}

func (s *statsCounters) connected() {
	s.mu.Lock()
	s.connects++
	s.mu.Unlock()
}

// sessionEnded folds a finished session's counters into the totals.
func (s *statsCounters) sessionEnded(st component.Stats, k ErrorKind) {
	s.mu.Lock()
	s.disconnects[k]++
	s.in += st.StanzasIn
	s.out += st.StanzasOut
	s.shed += st.Shed
	s.refsd += st.Refused
	if st.LastPingRTT > 0 {
		s.lastRTT = st.LastPingRTT
	}
	s.mu.Unlock()
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

func (s *statsCounters) snapshot(live *component.Session) Stats {
	s.mu.Lock()
	st := Stats{
		Connects:         s.connects,
		Disconnects:      maps.Clone(s.disconnects),
		ConnectFailures:  maps.Clone(s.connectFailures),
		StanzasIn:        s.in,
		StanzasOut:       s.out,
		JoinsHandled:     s.joinsHandled,
		JoinsRefused:     s.joinsRefused,
		RequestsShed:     s.shed,
		RequestsRefused:  s.refsd,
		LastKeepaliveRTT: s.lastRTT,
	}
	s.mu.Unlock()
	if live != nil {
		ls := live.Stats()
		st.StanzasIn += ls.StanzasIn
		st.StanzasOut += ls.StanzasOut
		st.RequestsShed += ls.Shed
		st.RequestsRefused += ls.Refused
		st.Queued, st.Running = ls.Queued, ls.Running
		if ls.LastPingRTT > 0 {
			st.LastKeepaliveRTT = ls.LastPingRTT
		}
	}
	return st
}
