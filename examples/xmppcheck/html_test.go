package main

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/internal/pagetest"
)

// TestHTMLReportSelfContained: no script, nothing fetched, server text
// escaped, one group per step.
func TestHTMLReportSelfContained(t *testing.T) {
	steps := []Step{
		newStep(stepSettings, "", OK, time.Millisecond, "component cb1.example.com", ""),
		newStep(stepSRV, "_xmpp-component._tcp.example.com", OK, 2*time.Millisecond, "1 record", ""),
		newStep(stepAddress, "xmpp1.example.com:5223", OK, 0, "127.0.0.1", ""),
		newStep(stepTCP, "xmpp1.example.com:5223", OK, time.Millisecond, "connected", ""),
		newStep(stepTLS, "xmpp1.example.com:5223", OK, time.Millisecond, "TLS 1.3", ""),
		newStep(stepSAN, "xmpp1.example.com:5223", OK, 0, "both", ""),
		newStep(stepHandshake, "xmpp1.example.com:5223", Fail, time.Millisecond, `stream error: <script>alert(1)</script> & "x"`, "fix <it>"),
		newStep(stepPing, "xmpp1.example.com:5223", Skip, 0, "not reached", ""),
		newStep(stepResult, "", Fail, 0, "no server accepts this Call Bridge", ""),
	}
	var b bytes.Buffer
	require.NoError(t, writeHTML(&b, steps, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)))
	page := b.String()
	assert.NotContains(t, page, "<script")
	assert.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;")
	for _, attr := range []string{"src=", "href=", "@import", "url("} {
		assert.NotContains(t, page, attr, "nothing fetched")
	}
	assert.Equal(t, len(steps), strings.Count(page, `<g class="step `))
	assert.Contains(t, page, `data-step="handshake" data-target="xmpp1.example.com:5223" data-status="fail"`)
	assert.Contains(t, page, "hint: fix &lt;it&gt;")
	assert.Contains(t, page, `class="summary fail"`)
}

// TestHTMLReportInBrowser renders the -html report of a real check in
// headless Chromium: two servers, the first with a certificate that lacks
// its FQDN. The page must render, show every step of both lanes, mark the
// SAN step of the first server as failed with its hint, and the screenshot
// must show the red of the failure. CBLINK_SCREENSHOT=FILE keeps the
// screenshot (the README's is made so).
func TestHTMLReportInBrowser(t *testing.T) {
	pagetest.ChromiumPath(t) // skip early without a browser
	l, ca := startLab(t, callbridgetest.Options{Servers: []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10, Weight: 10, SANs: []string{"example.com"}},
		{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
	}})
	page := filepath.Join(t.TempDir(), "report.html")
	r := runCheck(t, []string{"CBLINK_SECRET=" + testSecret}, "-name", "cb1", "-domain", "example.com",
		"-dns", l.DNS.Addr(), "-ca", ca, "-html", page)
	require.Equal(t, 0, r.code, r.stderr)

	ctx := pagetest.Browser(t, 1400, 900, 60*time.Second)

	type stepView struct {
		Step, Target, Status string
		Visible              bool
		Text                 string
	}
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate("file://"+page),
		chromedp.WaitVisible(chromedp.ID("diagram")),
	))
	title, err := chromedp.Run(ctx, chromedp.Title())
	require.NoError(t, err)
	summary, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("summary")))
	require.NoError(t, err)
	views, err := chromedp.Run(ctx, chromedp.Evaluate[[]stepView](`[...document.querySelectorAll('g[data-step]')].map(g => {
			const b = g.getBoundingClientRect();
			return {Step: g.dataset.step, Target: g.dataset.target, Status: g.dataset.status,
				Visible: b.width > 0 && b.height > 0 && getComputedStyle(g).visibility !== 'hidden', Text: g.textContent};
		})`))
	require.NoError(t, err)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	assert.Equal(t, "xmppcheck: can a Call Bridge connect?", title)
	assert.Contains(t, summary, "OK: 1 of 2 servers would work")

	got := map[string]stepView{}
	for _, v := range views {
		assert.True(t, v.Visible, "step %s %s is drawn", v.Step, v.Target)
		got[v.Step+" "+strings.SplitN(v.Target, ":", 2)[0]] = v
	}
	for _, s := range targetSteps {
		for _, server := range []string{"xmpp1.example.com", "xmpp2.example.com"} {
			assert.Contains(t, got, s+" "+server, "step %s of %s", s, server)
		}
	}
	for _, s := range []string{stepSettings + " ", stepSRV + " _xmpp-component._tcp.example.com", stepResult + " "} {
		assert.Contains(t, got, s)
	}
	san := got["san xmpp1.example.com"]
	assert.Equal(t, "fail", san.Status)
	assert.Contains(t, san.Text, "hint: reissue the XMPP server certificate with SANs example.com and")
	assert.Contains(t, san.Text, "xmpp1.example.com")

	// The technote's step numbers.
	for key, n := range map[string]string{"srv _xmpp-component._tcp.example.com": "step 4 ", "address xmpp2.example.com": "step 5 ",
		"tcp xmpp2.example.com": "step 6 ", "tls xmpp2.example.com": "step 7 ", "san xmpp2.example.com": "step 8 ",
		"handshake xmpp2.example.com": "steps 9-10 ", "ping xmpp2.example.com": "steps 11-12 "} {
		assert.Contains(t, got[key].Text, n, key)
	}
	type shape struct {
		Step, Target, Status string
		Requests, Replies    int
		Local                bool
		BoxFill              string
	}
	shapes, err := chromedp.Run(ctx, chromedp.Evaluate[[]shape](`[...document.querySelectorAll('g[data-step]')].map(g => {
			const box = g.querySelector('rect.box');
			return {Step: g.dataset.step, Target: g.dataset.target, Status: g.dataset.status,
				Requests: g.querySelectorAll('line.request').length, Replies: g.querySelectorAll('line.reply').length,
				Local: g.classList.contains('local'), BoxFill: box ? getComputedStyle(box).fill : ''};
		})`))
	require.NoError(t, err)
	for _, sh := range shapes {
		switch sh.Step {
		case stepSAN:
			assert.True(t, sh.Local, "the SAN check is drawn on the Call Bridge's lifeline, not as a message: %+v", sh)
			assert.Zero(t, sh.Requests+sh.Replies, "%+v", sh)
		case stepSettings, stepResult:
			assert.Zero(t, sh.Requests+sh.Replies, "%+v", sh)
		default:
			assert.Equal(t, 1, sh.Requests, "%+v", sh)
			if sh.Status != "skip" {
				assert.Equal(t, 1, sh.Replies, "the answer is drawn back: %+v", sh)
			}
		}
		if sh.Step == stepResult {
			assert.Equal(t, "rgb(218, 251, 225)", sh.BoxFill, "an OK result is green")
		}
	}
	assertNoTextClipped(ctx, t)
	assert.Equal(t, "skip", got["handshake xmpp1.example.com"].Status)
	assert.Equal(t, "ok", got["ping xmpp2.example.com"].Status)

	img, err := png.Decode(bytes.NewReader(shot))
	require.NoError(t, err)
	assert.Greater(t, countPixels(img, isRed), 200, "the failed step is drawn in red")
	assert.Greater(t, countPixels(img, isGreen), 200, "passed steps are drawn in green")
	if out := os.Getenv("CBLINK_SCREENSHOT"); out != "" {
		require.NoError(t, os.WriteFile(out, shot, 0o644))
	} else {
		require.NoError(t, os.WriteFile(filepath.Join(t.TempDir(), "report.png"), shot, 0o644))
	}
}

// assertNoTextClipped checks that every text of the diagram lies inside
// the SVG's box: none is cut off by its edge.
func assertNoTextClipped(ctx context.Context, t *testing.T) {
	t.Helper()
	clipped, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
			const svg = document.getElementById('diagram').getBoundingClientRect();
			return [...document.querySelectorAll('#diagram text')].filter(e => {
				const b = e.getBoundingClientRect();
				return b.left < svg.left - 0.5 || b.right > svg.right + 0.5 || b.top < svg.top - 0.5 || b.bottom > svg.bottom + 0.5;
			}).map(e => e.textContent);
		})()`))
	require.NoError(t, err)
	assert.Empty(t, clipped, "texts cut off by the diagram's edge")
}

// TestHTMLReportLongTextsInBrowser: with one server (the narrowest
// diagram) and texts longer than a line (a DNS error, a CA path, a hint
// with a long word), every text is wrapped inside the diagram, whole
// words kept where they fit.
func TestHTMLReportLongTextsInBrowser(t *testing.T) {
	pagetest.ChromiumPath(t) // skip early without a browser
	long := "/etc/cblink/" + strings.Repeat("very-long-directory-name-", 8) + "ca.pem"
	steps := []Step{
		newStep(stepSettings, "", OK, time.Millisecond, "component cb1.example.com, server SRV _xmpp-component._tcp.example.com, secret from file /etc/cblink/secret (redacted), CA "+long+", DNS 127.0.0.1:53; timeouts: dial 10s, handshake 10s, ping 10s", ""),
		newStep(stepSRV, "_xmpp-component._tcp.example.com", Fail, 2*time.Millisecond, `discovery: lookup SRV "_xmpp-component._tcp.example.com.": no SRV records (NXDOMAIN) `+strings.Repeat("and more words ", 20),
			"check -domain first: is example.com the XMPP domain (as on the XMPP server and CMS's XMPP page)? no name _xmpp-component._tcp.example.com exists (NXDOMAIN); if it is right, publish _xmpp-component._tcp.example.com SRV records or set -server"),
		newStep(stepAddress, "xmpp1.example.com:5223", OK, 0, "127.0.0.1", ""),
		newStep(stepTCP, "xmpp1.example.com:5223", Fail, time.Millisecond, strings.Repeat("dial tcp 127.0.0.1:5223: connect: connection refused; ", 6), "check "+long),
		newStep(stepResult, "", Fail, 0, "no server to connect to: a Call Bridge with these settings would not connect", ""),
	}
	page := filepath.Join(t.TempDir(), "long.html")
	f, err := os.Create(page)
	require.NoError(t, err)
	require.NoError(t, writeHTML(f, steps, time.Now()))
	require.NoError(t, f.Close())

	ctx := pagetest.Browser(t, 1400, 900, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitVisible(chromedp.ID("diagram"))))
	assertNoTextClipped(ctx, t)
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#diagram text')].map(e => e.textContent)`))
	require.NoError(t, err)
	text := strings.Join(lines, " ")
	assert.Contains(t, text, "no SRV records (NXDOMAIN)", "not cut mid-word")
	assert.Contains(t, text, "publish _xmpp-component._tcp.example.com SRV records or set -server", "the whole hint")
}

func isRed(r, g, b uint32) bool   { return r > 0xb000 && g < 0x5000 && b < 0x6000 }
func isGreen(r, g, b uint32) bool { return g > 0x6000 && r < 0x4000 && b < 0x6000 }

func countPixels(img image.Image, match func(r, g, b uint32) bool) int {
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if match(r, g, b) {
				n++
			}
		}
	}
	return n
}
