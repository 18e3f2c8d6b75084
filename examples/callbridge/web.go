package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
)

// joinPage is the join page: one self-contained file, its RFC 7395
// client written by hand, nothing fetched from elsewhere.
//
//go:embed web/join.html
var joinPage []byte

// webConfig is what the page is told (GET /config.json); its query
// parameters ws, domain and bridge override it.
type webConfig struct {
	WS     string `json:"ws"`     // the XMPP server's WebSocket URL
	Domain string `json:"domain"` // the XMPP domain the page logs in to anonymously
	Bridge string `json:"bridge"` // the Call Bridge's component address
	Demo   bool   `json:"demo"`   // demo lab: /demo/status and /demo/crash exist
}

// pageCSP forbids the page anything but itself and WebSocket connections
// (to any host: the page may be pointed at a real server).
const pageCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src data:; base-uri 'none'; form-action 'none'"

// webHandler serves the join page, its configuration and, with a demo
// lab, the lab's controls.
func webHandler(cfg webConfig, demo *webDemo) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(joinPage)
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, cfg)
	})
	if demo != nil {
		mux.HandleFunc("GET /demo/status", func(w http.ResponseWriter, r *http.Request) {
			st := demo.b.Status()
			writeJSON(w, struct {
				State  string `json:"state"`
				Server string `json:"server"`
				Addr   string `json:"addr"`
			}{st.State.String(), st.Server, st.Addr})
		})
		mux.HandleFunc("POST /demo/crash", func(w http.ResponseWriter, r *http.Request) {
			// Only the page itself may crash a server: a form on another
			// site the person visits posts with its own Origin.
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
			name, err := demo.crash()
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			_, _ = w.Write([]byte(name + " crashed; the other server is up"))
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// webDemo is the demo lab's "crash the server in use" control.
type webDemo struct {
	l *callbridgetest.Lab
	b *callbridge.Bridge
	p *printer

	mu sync.Mutex // one crash at a time
}

// crash makes the server the bridge is connected to crash, after starting
// every other one, so that exactly one is up and the bridge fails over to
// it.
func (d *webDemo) crash() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.b.Status()
	if st.State != callbridge.Connected {
		return "", errors.New("the bridge is not connected now (" + st.State.String() + "): wait for the failover")
	}
	for _, n := range d.l.Names {
		if n != st.Server {
			_ = d.l.StartServer(n) // ErrRunning when it is up already
		}
	}
	if err := d.l.StopServer(st.Server); err != nil {
		return "", err
	}
	d.p.printf("   web: %s crashed from the page (listener stopped, connections dropped)", st.Server)
	return st.Server, nil
}
