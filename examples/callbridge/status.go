package main

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/cblink/cblink/callbridge"
)

// bridgeView is what the status server reads from a Bridge.
type bridgeView interface {
	Status() callbridge.Status
	Stats() callbridge.Stats
}

// statusDoc is the body of GET /status. Every key is always present, null
// when it does not apply; durations are in seconds, times in RFC 3339.
type statusDoc struct {
	// State is one of idle, resolving, connecting, tls, authenticating,
	// connected, backoff, stopping, stopped.
	State string `json:"state"`
	// Ready is true while connected: what GET /readyz answers.
	Ready bool `json:"ready"`
	// Server is the FQDN of the XMPP server in use or being tried, Addr
	// its IP:port.
	Server *string `json:"server"`
	Addr   *string `json:"addr"`
	// Since is when State was entered (or a fail-back moved the link);
	// StateSeconds how long ago.
	Since        time.Time `json:"since"`
	StateSeconds float64   `json:"state_seconds"`
	// ConnectedSince is when the current link came up.
	ConnectedSince *time.Time `json:"connected_since"`
	// Preferred says, while connected, whether Server is one of the
	// preferred servers (the lowest SRV priority) or a backup.
	Preferred *bool `json:"preferred"`
	// Attempt counts failed connection cycles since the last success.
	Attempt int `json:"attempt"`
	// BackoffSeconds is what remains of the wait in progress in state
	// backoff.
	BackoffSeconds *float64 `json:"backoff_seconds"`
	// LastError is the latest failure since the link was last up, as
	// text; LastErrorKind its kind (callbridge.ErrorKind); Permanent is
	// true when an operator must fix it.
	LastError     *string `json:"last_error"`
	LastErrorKind *string `json:"last_error_kind"`
	Permanent     bool    `json:"permanent"`
}

func newStatusDoc(st callbridge.Status, now time.Time) statusDoc {
	d := statusDoc{
		State:        st.State.String(),
		Ready:        st.State == callbridge.Connected,
		Server:       nonEmpty(st.Server),
		Addr:         nonEmpty(st.Addr),
		Since:        st.Since,
		StateSeconds: seconds(now.Sub(st.Since)),
		Attempt:      st.Attempt,
		LastError:    nonEmpty(st.LastError()),
		Permanent:    st.Permanent,
	}
	if !st.ConnectedSince.IsZero() {
		t := st.ConnectedSince
		d.ConnectedSince = &t
	}
	if st.State == callbridge.Connected {
		p := !st.Backup
		d.Preferred = &p
	}
	if st.State == callbridge.BackingOff {
		s := seconds(max(st.Backoff-now.Sub(st.Since), 0))
		d.BackoffSeconds = &s
	}
	if st.LastErrKind != callbridge.KindNone {
		d.LastErrorKind = nonEmpty(string(st.LastErrKind))
	}
	return d
}

// seconds is d in seconds, to the millisecond: no float noise
// (1.9999829839999999).
func seconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// statusHandler serves the operator's endpoints:
//
//	GET /status   the bridge's status as JSON (statusDoc)
//	GET /metrics  Prometheus metrics (metrics.go)
//	GET /livez    200 while the process runs
//	GET /readyz   200 while the link is connected, 503 otherwise (also while stopping)
func statusHandler(b bridgeView) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		_ = enc.Encode(newStatusDoc(b.Status(), time.Now()))
	})
	mux.Handle("GET /metrics", metricsHandler(b))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := b.Status()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if st.State != callbridge.Connected {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + st.State.String() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready: connected to " + st.Server + "\n"))
	})
	return mux
}
