package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/cblink/cblink/callbridge"
)

// writeMetrics writes the bridge's state and counters in the Prometheus
// text exposition format.
func writeMetrics(w io.Writer, st callbridge.Status, s callbridge.Stats) {
	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	counter := func(name, help string, v uint64) {
		metric(name, "counter", help)
		fmt.Fprintf(w, "%s %d\n", name, v)
	}
	byKind := func(name, help string, m map[callbridge.ErrorKind]uint64) {
		metric(name, "counter", help)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(w, "%s{kind=\"%s\"} %d\n", name, labelEscape(string(k)), m[k])
		}
	}

	metric("cblink_state", "gauge", "1 for the bridge's current state, 0 for the others.")
	for _, s := range callbridge.States() {
		v := 0
		if st.State == s {
			v = 1
		}
		fmt.Fprintf(w, "cblink_state{state=\"%s\"} %d\n", s, v)
	}
	up := 0
	if st.State == callbridge.Connected {
		up = 1
	}
	metric("cblink_connected", "gauge", "1 while the XMPP link is up.")
	fmt.Fprintf(w, "cblink_connected %d\n", up)
	metric("cblink_attempt", "gauge", "Failed connection cycles since the last successful connection.")
	fmt.Fprintf(w, "cblink_attempt %d\n", st.Attempt)
	counter("cblink_connects_total", "Links brought up.", s.Connects)
	byKind("cblink_disconnects_total", "Links that ended, by cause.", s.Disconnects)
	byKind("cblink_connect_failures_total", "Failed attempts to bring a link up, by cause.", s.ConnectFailures)
	counter("cblink_stanzas_in_total", "Stanzas received.", s.StanzasIn)
	counter("cblink_stanzas_out_total", "Stanzas sent.", s.StanzasOut)
	counter("cblink_joins_handled_total", "Join requests accepted.", s.JoinsHandled)
	counter("cblink_joins_refused_total", "Join requests refused.", s.JoinsRefused)
	counter("cblink_requests_shed_total", "Requests answered resource-constraint: the handlers' queue was full.", s.RequestsShed)
	counter("cblink_requests_refused_total", "Requests answered service-unavailable: their link was closing.", s.RequestsRefused)
	metric("cblink_requests_queued", "gauge", "Stanzas waiting for a handler on the live link.")
	fmt.Fprintf(w, "cblink_requests_queued %d\n", s.Queued)
	metric("cblink_handlers_running", "gauge", "Handlers running on the live link.")
	fmt.Fprintf(w, "cblink_handlers_running %d\n", s.Running)
	metric("cblink_keepalive_rtt_seconds", "gauge", "Round trip of the last XEP-0199 ping to the server (0 before the first).")
	fmt.Fprintf(w, "cblink_keepalive_rtt_seconds %g\n", s.LastKeepaliveRTT.Seconds())
}

// labelEscape escapes a Prometheus label value.
func labelEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
