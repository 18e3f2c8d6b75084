package discovery

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Source says where a [TraceEntry]'s answer came from.
type Source int

// Sources of answers.
const (
	SourceNetwork    Source = iota // a name server's reply
	SourceCache                    // a fresh cached answer
	SourceStale                    // an expired cached answer, served because every name server failed (RFC 8767)
	SourceShared                   // a concurrent identical query's answer
	SourceAdditional               // the additional section of the SRV reply
	SourceNote                     // no answer: a decision of the resolver, explained in Note
)

// String names s.
func (s Source) String() string {
	switch s {
	case SourceNetwork:
		return "network"
	case SourceCache:
		return "cache"
	case SourceStale:
		return "stale"
	case SourceShared:
		return "shared"
	case SourceAdditional:
		return "additional"
	case SourceNote:
		return "note"
	}
	return "unknown"
}

// TraceEntry records one query or answer used during a Lookup, for
// diagnostics.
type TraceEntry struct {
	Name     string        // name asked, fully qualified
	Type     string        // "SRV", "A", "AAAA"
	Server   string        // name server address; empty unless Source is SourceNetwork
	Net      string        // "udp" or "tcp" for network queries
	Rcode    string        // "NOERROR", "NXDOMAIN", "SERVFAIL"...; empty without a reply
	Answers  []string      // answer records in zone-file form (bounded)
	Duration time.Duration // round trip of a network query
	Source   Source
	Err      error  // why this query failed, if it did
	Note     string // what the resolver did about it
}

// String formats e on one line, like a dig summary.
func (e TraceEntry) String() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(" ")
	b.WriteString(e.Type)
	b.WriteString(" (")
	b.WriteString(e.Source.String())
	if e.Server != "" {
		b.WriteString(" " + e.Net + " " + e.Server + " " + e.Duration.Round(10*time.Microsecond).String())
	}
	b.WriteString(")")
	if e.Rcode != "" {
		b.WriteString(" " + e.Rcode)
	}
	if len(e.Answers) > 0 {
		b.WriteString(" [" + strings.Join(e.Answers, "; ") + "]")
	}
	if e.Err != nil {
		b.WriteString(" error: " + e.Err.Error())
	}
	if e.Note != "" {
		b.WriteString(" -- " + e.Note)
	}
	return b.String()
}

// tracer collects trace entries from concurrent queries.
type tracer struct {
	mu      sync.Mutex
	entries []TraceEntry
}

func (t *tracer) add(e TraceEntry) {
	t.mu.Lock()
	t.entries = append(t.entries, e)
	t.mu.Unlock()
}

func (t *tracer) list() []TraceEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.entries
}

// presentation formats at most limit records for the trace.
func presentation(rrs []dns.RR, limit int) []string {
	if len(rrs) == 0 {
		return nil
	}
	n := min(len(rrs), limit)
	out := make([]string, 0, n+1)
	for _, rr := range rrs[:n] {
		out = append(out, rr.String())
	}
	if len(rrs) > n {
		out = append(out, "... "+strconv.Itoa(len(rrs)-n)+" more")
	}
	return out
}
