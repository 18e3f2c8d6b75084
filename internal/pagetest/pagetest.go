// Package pagetest drives the join page of examples/callbridge in
// headless Chromium, for the browser tests of the example and of the
// integration suite. Only _test files import it, so the shipped binaries
// never link it.
package pagetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath finds Debian's chromium; without it the test skips, unless
// CI is set (.ci/run installs it), where it fails.
func ChromiumPath(t *testing.T) string {
	t.Helper()
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

// Page is the join page open in a headless Chromium tab.
type Page struct {
	t   *testing.T
	ctx context.Context
	seq int
}

// Browser starts headless Chromium with a window of width x height
// (stopped at the test's cleanup) and returns the context of its tab,
// which ends after timeout.
func Browser(t *testing.T, width, height int, timeout time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ChromiumPath(t)), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}

// Open starts Chromium (stopped at the test's cleanup) and opens url,
// waiting until the page has read its configuration.
func Open(t *testing.T, url string) *Page {
	t.Helper()
	ctx := Browser(t, 1200, 900, 90*time.Second)
	p := &Page{t: t, ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS(`body[data-ready="1"]`))); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	return p
}

// Eval evaluates a JavaScript expression in the page; a promise is
// awaited.
func Eval[T any](p *Page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Answer is the answer to one join as the page shows it.
type Answer struct {
	Seq     int
	Outcome string // accepted, a stanza error condition, or failed
	Text    string // the answer line on the page
	// RTT is the join IQ's round trip inside the page (from the send to
	// the answer's arrival), Click from the click to the answer painted.
	RTT, Click time.Duration
}

// Join fills the form, clicks Join and waits until the answer is shown.
func (p *Page) Join(call, passcode, name string) Answer {
	p.t.Helper()
	p.seq++
	n := strconv.Itoa(p.seq)
	form, _ := json.Marshal(map[string]string{"call": call, "passcode": passcode, "name": name})
	err := chromedp.Do(p.ctx,
		chromedp.Evaluate[chromedp.Void](`for (const [k, v] of Object.entries(`+string(form)+`)) document.getElementById(k).value = v;`),
		chromedp.Click(chromedp.CSS("#join")),
	)
	if err != nil {
		p.t.Fatalf("join %s: %v", n, err)
	}
	type view struct {
		Outcome, Text, RTT, Click string
	}
	v, err := chromedp.Run(p.ctx, chromedp.Poll[view](`(() => { const a = document.getElementById('answer');
		return a.dataset.shown === '`+n+`' && {Outcome: a.dataset.outcome, Text: a.textContent, RTT: a.dataset.rtt, Click: a.dataset.click}; })()`,
		chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		p.t.Fatalf("join %s: no answer shown: %v", n, err)
	}
	ms := func(s string) time.Duration {
		f, _ := strconv.ParseFloat(s, 64)
		return time.Duration(f * float64(time.Millisecond))
	}
	return Answer{Seq: p.seq, Outcome: v.Outcome, Text: v.Text, RTT: ms(v.RTT), Click: ms(v.Click)}
}

// JoinTwice submits the form twice at once (a double click before the
// login ends) and returns the outcomes of the two history rows.
func (p *Page) JoinTwice(call, passcode string) string {
	p.t.Helper()
	form, _ := json.Marshal(map[string]string{"call": call, "passcode": passcode})
	p.seq += 2
	n := strconv.Itoa(p.seq)
	err := chromedp.Do(p.ctx, chromedp.Evaluate[chromedp.Void](`for (const [k, v] of Object.entries(`+string(form)+`)) document.getElementById(k).value = v;
		{ const f = document.getElementById('form'); f.requestSubmit(); f.requestSubmit(); }`))
	if err == nil {
		_, err = chromedp.Run(p.ctx, chromedp.Poll[bool](`document.getElementById('answer').dataset.shown === '`+n+`' && document.querySelectorAll('#history tbody tr').length >= 2`,
			chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(30*time.Second)))
	}
	if err != nil {
		p.t.Fatalf("joins %d and %s: %v", p.seq-1, n, err)
	}
	return Eval[string](p, `[...document.querySelectorAll('#history tbody tr')].slice(0, 2).map((r) => r.children[4].textContent).join(',')`)
}

// RoundTrips sends n join IQs for call back to back from the page's
// logged-in client (no click, no history row) and returns each round trip
// as the page measured it: the join without the click and the page's
// rendering. Join must have run once (the client is logged in).
func (p *Page) RoundTrips(n int, call, bridge string) []time.Duration {
	p.t.Helper()
	args, _ := json.Marshal([]any{n, call, bridge})
	ms := Eval[[]float64](p, `(async ([n, call, bridge]) => {
		const out = [];
		for (let i = 0; i < n; i++) {
			const id = "rt-" + i, t0 = performance.now();
			const el = await client.iq(id, bridge, "<iq xmlns='jabber:client' type='set' id='" + id + "' to='" + esc(bridge) +
				"'><join xmlns='urn:cblink:join:0' call='" + esc(call) + "'/></iq>");
			if (el.getAttribute("type") !== "result") throw new Error("join refused: " + new XMLSerializer().serializeToString(el));
			out.push(performance.now() - t0);
		}
		return out;
	})(`+string(args)+`)`)
	ds := make([]time.Duration, len(ms))
	for i, m := range ms {
		ds[i] = time.Duration(m * float64(time.Millisecond))
	}
	return ds
}

// WaitFor waits until a JavaScript predicate is true in the page.
func (p *Page) WaitFor(expr string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		p.t.Fatalf("waiting for %s: %v", expr, err)
	}
}

// Click clicks the element the CSS selector names.
func (p *Page) Click(sel string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.t.Fatalf("click %s: %v", sel, err)
	}
}

// Screenshot returns a PNG of the whole page.
func (p *Page) Screenshot() []byte {
	p.t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	return b
}

// Timings clicks Join 20 times for call (an accepted join: it fails the
// test otherwise), then sends 50 joins to bridge back to back from the
// page's client, and describes the medians and 90th percentiles: click to
// answer shown, the clicked joins' round trips in the page, and the
// back-to-back round trips.
func (p *Page) Timings(call, bridge string) string {
	p.t.Helper()
	var rtts, clicks []time.Duration
	for range 20 {
		a := p.Join(call, "", "Timed")
		if a.Outcome != "accepted" {
			p.t.Fatalf("timed join: %s: %s", a.Outcome, a.Text)
		}
		rtts = append(rtts, a.RTT)
		clicks = append(clicks, a.Click)
	}
	cm, c90 := percentiles(clicks)
	rm, r90 := percentiles(rtts)
	bm, b90 := percentiles(p.RoundTrips(50, call, bridge))
	return fmt.Sprintf("click to answer median %v, p90 %v; join round trip in the page, clicked (20): median %v, p90 %v; back to back from the page's client (50, no click): median %v, p90 %v",
		cm, c90, rm, r90, bm, b90)
}

// percentiles returns the median and the 90th percentile of ds (nearest
// rank).
func percentiles(ds []time.Duration) (median, p90 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.5), rank(0.9)
}
