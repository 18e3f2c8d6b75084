package main

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// The HTML report draws the steps as the source technote draws the link:
// a sequence diagram with one lifeline for the Call Bridge (this check),
// one for DNS and one per XMPP server, each step an arrow from the Call
// Bridge to the lifeline it talks to, green when it passed, red when it
// failed (the row highlighted, with its hint), grey and dashed when it was
// not reached. The page is self-contained: inline SVG and CSS, no script,
// no font or image fetched.

// Layout, in SVG user units.
const (
	laneGap    = 230 // between lifelines
	firstLane  = 150 // x of the Call Bridge's lifeline
	headTop    = 20  // top of the lifeline heads
	headHeight = 46
	rowsTop    = headTop + headHeight + 30
	rowHeight  = 58 // a step; a failed step adds hintHeight
	hintHeight = 24
	textMax    = 150 // bytes of detail shown on the arrow's row
	hintMax    = 170
)

// lane is one lifeline.
type lane struct {
	X     int
	Title string // "Call Bridge", "DNS", the server's host:port
	Sub   string
}

// row is one step drawn as an arrow (or, for settings and the result, as a
// note on the Call Bridge's lifeline).
type row struct {
	Step, Target, Status string
	Y                    int
	X1, X2               int // arrow from X1 to X2; equal for a note
	Label                string
	Detail               string
	Hint                 string
	Arrow                string // the arrowhead's points
	Note                 bool
	Failed               bool
	Width                int // of the row's background
}

type report struct {
	Title   string
	Summary string
	OK      bool
	When    string
	Lanes   []lane
	Rows    []row
	Width   int
	Height  int
	Bottom  int // end of the lifelines
	Steps   []Step
}

// writeHTML writes the report of steps as a self-contained HTML page.
func writeHTML(w io.Writer, steps []Step, now time.Time) error {
	r := report{Title: "xmppcheck: can a Call Bridge connect?", When: now.UTC().Format(time.RFC3339), Steps: steps}
	r.Lanes = []lane{{X: firstLane, Title: "Call Bridge", Sub: "this check"}, {X: firstLane + laneGap, Title: "DNS", Sub: "SRV, A/AAAA"}}
	laneOf := map[string]int{}
	for _, s := range steps {
		switch s.Step {
		case stepSettings, stepResult, stepSRV, stepServer:
			continue
		}
		if _, ok := laneOf[s.Target]; !ok && s.Target != "" {
			laneOf[s.Target] = firstLane + laneGap*len(r.Lanes)
			r.Lanes = append(r.Lanes, lane{X: laneOf[s.Target], Title: s.Target, Sub: "XMPP server"})
		}
	}
	r.Width = firstLane + laneGap*(len(r.Lanes)-1) + 230
	y := rowsTop
	for _, s := range steps {
		rw := row{Step: s.Step, Target: s.Target, Status: string(s.Status), Y: y, X1: firstLane, Width: r.Width - 40,
			Detail: clip(s.Detail, textMax), Hint: clip(s.Hint, hintMax), Failed: s.Status == Fail}
		label := stepLabels[s.Step]
		if label == "" {
			label = s.Step
		}
		if s.DurationMS > 0 {
			label += fmt.Sprintf(" · %.1f ms", s.DurationMS)
		}
		rw.Label = strings.ToUpper(string(s.Status)) + "  " + label
		switch s.Step {
		case stepSettings, stepServer, stepResult:
			rw.Note, rw.X2 = true, firstLane
		case stepSRV, stepAddress:
			rw.X2 = firstLane + laneGap
		default:
			rw.X2 = laneOf[s.Target]
		}
		if !rw.Note {
			ay := y + 30
			rw.Arrow = fmt.Sprintf("%d,%d %d,%d %d,%d", rw.X2, ay, rw.X2-10, ay-5, rw.X2-10, ay+5)
		}
		if s.Step == stepResult {
			r.OK = s.Status == OK
			r.Summary = s.Detail
		}
		y += rowHeight
		if rw.Failed && rw.Hint != "" {
			y += hintHeight
		}
		r.Rows = append(r.Rows, rw)
	}
	r.Bottom = y
	r.Height = y + 20
	return reportTemplate.Execute(w, r)
}

// stepLabels say what each step does on the wire.
var stepLabels = map[string]string{
	stepSettings:  "settings",
	stepSRV:       "SRV query and answer",
	stepServer:    "explicit server",
	stepAddress:   "A/AAAA query",
	stepTCP:       "TCP connect",
	stepTLS:       "TLS handshake and chain",
	stepSAN:       "certificate SANs",
	stepHandshake: "stream header and XEP-0114 handshake",
	stepPing:      "XEP-0199 ping",
	stepResult:    "result",
}

// clip cuts s to n bytes on a rune boundary, marking the cut; the table
// under the diagram has every text whole.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.summary { font-size: 16px; margin: 8px 0 16px; padding: 8px 12px; border-radius: 6px; }
.summary.ok { background: #dafbe1; color: #116329; }
.summary.fail { background: #ffebe9; color: #a40e26; }
.meta { color: #59636e; font-size: 12px; }
svg { display: block; margin-top: 8px; }
svg text { font-family: system-ui, sans-serif; }
.head rect { fill: #f6f8fa; stroke: #59636e; }
.head .t { font-weight: 600; font-size: 13px; }
.head .s { fill: #59636e; font-size: 11px; }
.life { stroke: #8c959f; stroke-dasharray: 4 4; }
.step .label { font-size: 12px; font-weight: 600; }
.step .detail { font-size: 11px; fill: #424a53; }
.step .hint { font-size: 12px; font-weight: 600; fill: #a40e26; }
.step.ok line { stroke: #1a7f37; } .step.ok .label { fill: #1a7f37; } .step.ok polygon { fill: #1a7f37; }
.step.fail line { stroke: #cf222e; stroke-width: 2.5; } .step.fail .label { fill: #cf222e; } .step.fail polygon { fill: #cf222e; }
.step.skip line { stroke: #8c959f; stroke-dasharray: 5 4; } .step.skip .label { fill: #6e7781; } .step.skip polygon { fill: #8c959f; }
.step.fail .bg { fill: #ffebe9; }
.step .bg { fill: transparent; }
.note rect.box { fill: #fff8c5; stroke: #d4a72c; }
table { border-collapse: collapse; margin-top: 24px; font-size: 12px; }
td, th { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<div class="meta">generated {{.When}} by xmppcheck; the Call Bridge's connection steps as a sequence diagram: each arrow is one step, from the Call Bridge to whom it talks to</div>
<div id="summary" class="summary {{if .OK}}ok{{else}}fail{{end}}">{{if .OK}}OK{{else}}FAIL{{end}}: {{.Summary}}</div>
<svg id="diagram" xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="connection steps">
{{- range .Lanes}}
<g class="head" data-lane="{{.Title}}"><rect x="{{.X}}" y="20" width="210" height="46" rx="6" transform="translate(-105 0)"/><text class="t" x="{{.X}}" y="40" text-anchor="middle">{{.Title}}</text><text class="s" x="{{.X}}" y="57" text-anchor="middle">{{.Sub}}</text></g>
<line class="life" x1="{{.X}}" y1="66" x2="{{.X}}" y2="{{$.Bottom}}"/>
{{- end}}
{{- range .Rows}}
<g class="step {{.Status}}{{if .Note}} note{{end}}" data-step="{{.Step}}" data-target="{{.Target}}" data-status="{{.Status}}">
<rect class="bg" x="10" y="{{.Y}}" width="{{.Width}}" height="{{if and .Failed .Hint}}80{{else}}56{{end}}" rx="4"/>
{{- if .Note}}
<rect class="box" x="20" y="{{.Y}}" width="{{.Width}}" height="44" rx="4" transform="translate(0 4)"/>
<text class="label" x="30" y="{{.Y}}" dy="22">{{.Label}}</text>
<text class="detail" x="30" y="{{.Y}}" dy="38">{{.Detail}}</text>
{{- else}}
<line x1="{{.X1}}" y1="{{.Y}}" x2="{{.X2}}" y2="{{.Y}}" transform="translate(0 30)"/>
<polygon points="{{.Arrow}}"/>
<text class="label" x="{{.X1}}" y="{{.Y}}" dx="8" dy="24">{{.Label}}</text>
<text class="detail" x="{{.X1}}" y="{{.Y}}" dx="8" dy="46">{{.Detail}}</text>
{{- end}}
{{- if and .Failed .Hint}}
<text class="hint" x="30" y="{{.Y}}" dy="70">hint: {{.Hint}}</text>
{{- end}}
</g>
{{- end}}
</svg>
<table id="steps">
<tr><th>status</th><th>step</th><th>target</th><th>ms</th><th>detail</th><th>hint</th></tr>
{{- range .Steps}}
<tr data-status="{{.Status}}"><td>{{.Status}}</td><td>{{.Step}}</td><td>{{.Target}}</td><td>{{printf "%.1f" .DurationMS}}</td><td>{{.Detail}}</td><td>{{.Hint}}</td></tr>
{{- end}}
</table>
</body>
</html>
`))
