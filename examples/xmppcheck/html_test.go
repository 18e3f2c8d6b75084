package main

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge/callbridgetest"
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

// chromiumPath finds Debian's chromium; without it the browser test
// skips, unless CI is set (.ci/run installs it), where it fails.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install chromium); CI requires the browser test")
	}
	t.Skip("chromium is not installed: apt-get install chromium")
	return ""
}

// TestHTMLReportInBrowser renders the -html report of a real check in
// headless Chromium: two servers, the first with a certificate that lacks
// its FQDN. The page must render, show every step of both lanes, mark the
// SAN step of the first server as failed with its hint, and the screenshot
// must show the red of the failure. CBLINK_SCREENSHOT=FILE keeps the
// screenshot (the README's is made so).
func TestHTMLReportInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	l, ca := startLab(t, callbridgetest.Options{Servers: []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10, Weight: 10, SANs: []string{"example.com"}},
		{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
	}})
	page := filepath.Join(t.TempDir(), "report.html")
	r := runCheck(t, []string{"CBLINK_SECRET=" + testSecret}, "-name", "cb1", "-domain", "example.com",
		"-dns", l.DNS.Addr(), "-ca", ca, "-html", page)
	require.Equal(t, 0, r.code, r.stderr)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

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
	assert.Contains(t, san.Text, "hint: reissue the XMPP server certificate with SANs example.com and xmpp1.example.com")
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
