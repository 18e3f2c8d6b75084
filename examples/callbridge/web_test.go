package main

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/pagetest"
)

// TestJoinPageSelfContained: the page fetches nothing from elsewhere (no
// src, href or import; a CSP that allows only itself and WebSockets) and
// says what is modelled; /config.json carries the settings.
func TestJoinPageSelfContained(t *testing.T) {
	srv := httptest.NewServer(webHandler(webConfig{WS: "ws://127.0.0.1:5280/xmpp-websocket", Domain: "guest.example.com", Bridge: "cb1.example.com"}, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, pageCSP, resp.Header.Get("Content-Security-Policy"))
	page := string(joinPage)
	for _, attr := range []string{"src=", "href=", "@import", "url(", "http://", "https://"} {
		assert.NotContains(t, page, attr, "nothing fetched from elsewhere")
	}
	assert.Contains(t, page, "simplification")
	assert.Contains(t, page, "urn:cblink:join:0")
	assert.Contains(t, page, "the server offers no anonymous login (is -web-domain / ?domain= the server's anonymous host?)")
	assert.JSONEq(t, `{"ws":"ws://127.0.0.1:5280/xmpp-websocket","domain":"guest.example.com","bridge":"cb1.example.com","demo":false}`,
		httpGet(t, srv.URL+"/config.json"))
	resp, err = http.Post(srv.URL+"/demo/crash", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "no crash control without the demo")
}

var pageURL = regexp.MustCompile(`(?m)^\s+(http://127\.0\.0\.1:\d+/)$`)
var wsURL = regexp.MustCompile(`(?m)^\s+(ws://127\.0\.0\.1:\d+/xmpp-websocket)$`)

// TestJoinPageInBrowser opens the page of `-demo -stay -web` in headless
// Chromium: it loads with the lab's endpoint, shows accepted, forbidden,
// item-not-found and bad-request as such, and after "crash the server in
// use" the bridge fails over and the next join is accepted. It logs the
// click-to-answer time and the join round trip inside the page (median,
// p90). CBLINK_SCREENSHOT=FILE keeps the screenshot (the README's is made
// so).
func TestJoinPageInBrowser(t *testing.T) {
	pagetest.ChromiumPath(t)
	p := startProc(t, nil, "-demo", "-stay", "-web", "127.0.0.1:0")
	out := p.waitOutput(t, "/xmpp-websocket")
	page := pageURL.FindStringSubmatch(out)
	ws := wsURL.FindStringSubmatch(out)
	require.NotNil(t, page, out)
	require.NotNil(t, ws, out)

	pg := pagetest.Open(t, page[1])
	assert.Equal(t, ws[1], pagetest.Eval[string](pg, `document.getElementById('ws').value`))
	assert.Equal(t, "cb1.example.com", pagetest.Eval[string](pg, `document.getElementById('bridge').value`))
	// After the scenario xmpp1 (preferred) is back, and the bridge fails
	// back to it (-fail-back is on, the demo probes every 5s); once that
	// is done, nothing moves the link until the crash below.
	p.waitOutput(t, "[bridge] Failed back: to xmpp1.example.com")
	pg.WaitFor(`document.getElementById('server-in-use').textContent === 'xmpp1.example.com'`)

	// Join pressed twice before the first login ends: both joins go out
	// on the one login, and both are answered.
	assert.Equal(t, "accepted,accepted", pg.JoinTwice("100", "1234"), "two joins pressed during one login")

	for _, tc := range []struct {
		name, call, passcode, outcome, text string
	}{
		{"accepted", "100", "1234", "accepted", "session s-100-"},
		{"forbidden", "100", "0000", "forbidden", "wrong passcode"},
		{"item-not-found", "300", "", "item-not-found", "unknown call"},
		{"bad-request", "", "", "bad-request", "malformed"},
	} {
		a := pg.Join(tc.call, tc.passcode, "Ann "+tc.name)
		assert.Equal(t, tc.outcome, a.Outcome, tc.name)
		assert.Contains(t, a.Text, tc.text, tc.name)
		if tc.outcome != "accepted" {
			assert.Contains(t, a.Text, "refused: "+tc.outcome, "the Call Bridge's refusal")
		}
	}

	// The XMPP server's own errors are not the bridge's refusals: the
	// join was not delivered.
	pagetest.Eval[bool](pg, `(document.getElementById('bridge').value = 'nobody.example.net', true)`)
	a := pg.Join("100", "1234", "Wrong bridge")
	assert.Equal(t, "remote-server-not-found", a.Outcome, a.Text)
	assert.Contains(t, a.Text, "not delivered: remote-server-not-found")
	assert.NotContains(t, a.Text, "refused")
	assert.Equal(t, "not delivered,not delivered,not delivered,refused,refused,accepted,failed", pagetest.Eval[string](pg,
		`["remote-server-timeout", "remote-server-not-found", "not-allowed", "forbidden", "service-unavailable", "accepted", "failed"].map(verdict).join()`))
	pagetest.Eval[bool](pg, `(document.getElementById('bridge').value = 'cb1.example.com', true)`)

	// Failover between two joins: crash xmpp1 (in use); xmpp2 is up. The
	// bridge stays on xmpp2: xmpp1 is down, so fail-back probes fail.
	pg.Click("#crash")
	pg.WaitFor(`document.getElementById('server-in-use').textContent === 'xmpp2.example.com' && document.getElementById('state').textContent === 'connected'`)
	a = pg.Join("100", "1234", "After failover")
	assert.Equal(t, "accepted", a.Outcome, a.Text)
	assert.Contains(t, pagetest.Eval[string](pg, `document.querySelector('#history tbody tr').textContent`), "xmpp2.example.com")
	p.waitOutput(t, "web: xmpp1.example.com crashed from the page")
	shot := pg.Screenshot()
	dst := os.Getenv("CBLINK_SCREENSHOT")
	if dst == "" {
		dst = filepath.Join(t.TempDir(), "join-page.png")
	}
	require.NoError(t, os.WriteFile(dst, shot, 0o644))
	img, err := png.Decode(bytes.NewReader(shot))
	require.NoError(t, err)
	green := 0 // the accepted answer's background, #d8f5d8
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r>>8 == 0xd8 && g>>8 == 0xf5 && b>>8 == 0xd8 {
				green++
			}
		}
	}
	assert.Greater(t, green, 1000, "the accepted answer is drawn on green")

	t.Logf("against the lab (after the failover): %s", pg.Timings("200", "cb1.example.com"))

	// An IQ with a pending join's id is its answer only when it comes
	// from the address the join was sent to.
	assert.Equal(t, "waiting,answered by cb1.example.com", pagetest.Eval[string](pg, `(async () => {
		const c = new XMPP("ws://unused", "example.com");
		c.jid = "u@example.com/web"; c.ws = { send() {}, readyState: 1 };
		const p = c.iq("x1", "cb1.example.com", "<iq/>");
		c.receive("<iq xmlns='jabber:client' type='result' id='x1' from='mallory@example.com/web'/>");
		const before = c.pending.has("x1") ? "waiting" : "taken";
		c.receive("<iq xmlns='jabber:client' type='result' id='x1' from='CB1.example.com'/>");
		return before + ",answered by " + (await p).getAttribute("from").toLowerCase();
	})()`))

	// Without a WebSocket URL the page says what to set.
	pagetest.Eval[bool](pg, `(document.getElementById('ws').value = '', true)`)
	a = pg.Join("100", "1234", "No URL")
	assert.Equal(t, "failed", a.Outcome)
	assert.Contains(t, a.Text, "no WebSocket URL")
}

// TestWebFlags: without -demo, -web serves the page configured by -web-ws
// and -web-domain, next to a bridge with the usual settings.
func TestWebFlags(t *testing.T) {
	l, ca := startLab(t)
	p := startProc(t, []string{"CBLINK_SECRET=" + testSecret}, "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(),
		"-ca", ca, "-log-format", "json", "-web", "127.0.0.1:0",
		"-web-ws", "ws://127.0.0.1:5280/xmpp-websocket", "-web-domain", "guest.example.com")
	line := p.waitLog(t, "join page listening")
	page, _ := line["url"].(string)
	require.True(t, strings.HasPrefix(page, "http://127.0.0.1:"), "%v", line)
	assert.JSONEq(t, `{"ws":"ws://127.0.0.1:5280/xmpp-websocket","domain":"guest.example.com","bridge":"cb1.example.com","demo":false}`,
		httpGet(t, page+"config.json"))
	assert.Contains(t, httpGet(t, page), "<title>cblink: join a call as a web user</title>")
}

// TestDemoCrashRefusesOtherOrigins: a form on another site cannot crash
// the demo's servers through the page's endpoint.
func TestDemoCrashRefusesOtherOrigins(t *testing.T) {
	h := webHandler(webConfig{Demo: true}, &webDemo{})
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/demo/crash", nil)
	req.Header.Set("Origin", "http://evil.example")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusForbidden, rec.Code)
}
