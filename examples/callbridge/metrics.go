package main

import (
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/examples/internal/buildinfo"
)

// metricsHandler serves the Prometheus metrics of b: the Go runtime and
// process collectors, cblink_build_info, and the bridge's state and
// counters, read from b at each scrape. Every labelled series exists from
// the start, at zero, so that alerts can be written on rates.
func metricsHandler(b bridgeView) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
		newBridgeCollector(b),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// buildInfo is cblink_build_info: 1, labelled with the binary's version,
// VCS revision and Go version, as -version prints them.
func buildInfo() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "cblink_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// bridgeCollector reads a bridge's Status and Stats at each scrape.
type bridgeCollector struct {
	b bridgeView

	state, connected, attempt, permanent                *prometheus.Desc
	backup, linkStart, server                           *prometheus.Desc
	connects, disconnects, connectFailures              *prometheus.Desc
	stanzasIn, stanzasOut, joinsHandled, joinsRefused   *prometheus.Desc
	requestsShed, requestsRefused, queued, running, rtt *prometheus.Desc
	requestsUnanswered                                  *prometheus.Desc
}

func newBridgeCollector(b bridgeView) *bridgeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &bridgeCollector{
		b:                  b,
		state:              d("cblink_state", "1 for the bridge's current state, 0 for the others.", "state"),
		connected:          d("cblink_connected", "1 while the XMPP link is up."),
		backup:             d("cblink_on_backup", "1 while the XMPP link is up to a backup server: the preferred ones (lowest SRV priority) failed."),
		linkStart:          d("cblink_link_start_time_seconds", "When the current XMPP link came up, in seconds since the Unix epoch; 0 while no link is up."),
		server:             d("cblink_server_info", "1 for the XMPP server in use while the link is up (no series otherwise).", "server", "addr", "preferred"),
		attempt:            d("cblink_failed_cycles", "Failed connection cycles (every server tried failed) since the link was last up."),
		permanent:          d("cblink_permanent_error", "1 while every server's last failure is one an operator must fix (wrong secret, unknown name, certificate, no service, protocol, config)."),
		connects:           d("cblink_connects_total", "Links brought up."),
		disconnects:        d("cblink_disconnects_total", "Links that ended, by cause.", "kind"),
		connectFailures:    d("cblink_connect_failures_total", "Failed attempts to bring a link up, by cause.", "kind"),
		stanzasIn:          d("cblink_stanzas_in_total", "Stanzas received."),
		stanzasOut:         d("cblink_stanzas_out_total", "Stanzas sent."),
		joinsHandled:       d("cblink_joins_handled_total", "Join requests accepted."),
		joinsRefused:       d("cblink_joins_refused_total", "Join requests refused."),
		requestsShed:       d("cblink_requests_shed_total", "Requests answered resource-constraint: the handlers' queue was full."),
		requestsRefused:    d("cblink_requests_refused_total", "Requests answered service-unavailable: their link was closing."),
		requestsUnanswered: d("cblink_requests_unanswered_total", "Requests read that their link's stream could no longer answer: they came after the bridge's closing tag, or the server ended the stream first."),
		queued:             d("cblink_requests_queued", "Stanzas waiting for a handler on the live link."),
		running:            d("cblink_handlers_running", "Handlers running on the live link."),
		rtt:                d("cblink_keepalive_rtt_seconds", "Round trip of the last XEP-0199 ping to the server (0 before the first)."),
	}
}

// Describe implements prometheus.Collector.
func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.state, c.connected, c.backup, c.linkStart, c.server, c.attempt, c.permanent, c.connects, c.disconnects, c.connectFailures,
		c.stanzasIn, c.stanzasOut, c.joinsHandled, c.joinsRefused, c.requestsShed, c.requestsRefused, c.requestsUnanswered,
		c.queued, c.running, c.rtt,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	st, s := c.b.Status(), c.b.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	byKind := func(d *prometheus.Desc, m map[callbridge.ErrorKind]uint64, never ...callbridge.ErrorKind) {
		kinds := slices.DeleteFunc(callbridge.ErrorKinds(), func(k callbridge.ErrorKind) bool { return slices.Contains(never, k) })
		for _, k := range slices.Sorted(maps.Keys(m)) { // a kind this binary does not know yet
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
		for _, k := range kinds {
			counter(d, m[k], string(k))
		}
	}
	for _, state := range callbridge.States() {
		gauge(c.state, bool01(st.State == state), state.String())
	}
	up := st.State == callbridge.Connected
	gauge(c.connected, bool01(up))
	gauge(c.backup, bool01(up && st.Backup))
	start := 0.0
	if up && !st.ConnectedSince.IsZero() {
		start = float64(st.ConnectedSince.UnixNano()) / 1e9
	}
	gauge(c.linkStart, start)
	if up {
		gauge(c.server, 1, st.Server, st.Addr, strconv.FormatBool(!st.Backup))
	}
	gauge(c.attempt, float64(st.Attempt))
	gauge(c.permanent, bool01(st.Permanent))
	counter(c.connects, s.Connects)
	byKind(c.disconnects, s.Disconnects)
	// An attempt is never failed by this side's close or by a fail-back:
	// no series that can never move.
	byKind(c.connectFailures, s.ConnectFailures, callbridge.KindClosed, callbridge.KindFailBack)
	counter(c.stanzasIn, s.StanzasIn)
	counter(c.stanzasOut, s.StanzasOut)
	counter(c.joinsHandled, s.JoinsHandled)
	counter(c.joinsRefused, s.JoinsRefused)
	counter(c.requestsShed, s.RequestsShed)
	counter(c.requestsRefused, s.RequestsRefused)
	counter(c.requestsUnanswered, s.RequestsUnanswered)
	gauge(c.queued, float64(s.Queued))
	gauge(c.running, float64(s.Running))
	gauge(c.rtt, s.LastKeepaliveRTT.Seconds())
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
