package main

import (
	"encoding/json"
	"net/http"

	"github.com/cblink/cblink/callbridge"
)

// bridgeView is what the status server reads from a Bridge.
type bridgeView interface {
	Status() callbridge.Status
	Stats() callbridge.Stats
}

// statusJSON is Status with the last error as text.
type statusJSON struct {
	callbridge.Status
	LastError string `json:"last_error,omitempty"`
}

// statusHandler serves GET /status as JSON and GET /metrics in the
// Prometheus text exposition format (version 0.0.4).
func statusHandler(b bridgeView) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := b.Status()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(statusJSON{Status: st, LastError: st.LastError()})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, b.Status(), b.Stats())
	})
	return mux
}
