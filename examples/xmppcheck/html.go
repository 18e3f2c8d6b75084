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
// one for DNS and one per XMPP server. Each exchange is an arrow from the
// Call Bridge to the lifeline it talks to and a dashed arrow back with
// the answer; the certificate check, done here on the certificate
// received, is a box on the Call Bridge's lifeline. Green when it passed,
// red when it failed (the row highlighted, with its hint), grey and
// dashed when it was not reached; each row carries the technote's step
// numbers. Text is wrapped to the diagram's width, never cut off by it.
// The page is self-contained: inline SVG and CSS, no script, no font or
// image fetched.

// Layout, in SVG user units.
const (
	laneGap    = 230 // between lifelines
	firstLane  = 150 // x of the Call Bridge's lifeline
	headTop    = 20  // top of the lifeline heads
	headHeight = 46
	rowsTop    = headTop + headHeight + 30
	detailLine = 14 // height of a line of detail (11 px)
	hintLine   = 16 // height of a line of hint (12 px, bold)
	maxLines   = 6  // of detail, and of hint, in the diagram; the table has every word
	// Widths of a character, generous for system-ui at these sizes, so
	// that a wrapped line always fits.
	detailChar = 6.6
	hintChar   = 7.6
	labelChar  = 7.6
)

// lane is one lifeline.
type lane struct {
	X     int
	Title string // "Call Bridge", "DNS", the server's host:port
	Sub   string
}

// line is one line of wrapped text, at Y.
type line struct {
	Y    int
	Text string
}

// row is one step: an exchange drawn as an arrow and its answer, or a
// box on the Call Bridge's lifeline (the settings, the result, the
// certificate check done here).
type row struct {
	Step, Target, Status string
	Y, Height            int
	X1, X2               int // request from X1 to X2, answer back
	ReqY, RepY           int // y of the request and answer arrows
	Label                string
	Reply                string // the answer's label
	Detail, Hint         []line
	Arrow, ReplyArrow    string // the arrowheads' points
	Note, Local          bool
	BoxX, BoxW, BoxH     int // a note's box
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
		rw := row{Step: s.Step, Target: s.Target, Status: string(s.Status), Y: y, X1: firstLane, Width: r.Width - 20,
			Failed: s.Status == Fail}
		label := stepLabels[s.Step]
		if label == "" {
			label = s.Step
		}
		if n := technoteSteps[s.Step]; n != "" {
			label = n + " · " + label
		}
		if s.DurationMS > 0 {
			label += fmt.Sprintf(" · %.1f ms", s.DurationMS)
		}
		rw.Label = strings.ToUpper(string(s.Status)) + "  " + label
		textX := 30 // where the detail and the hint start
		switch s.Step {
		case stepSettings, stepServer, stepResult:
			rw.Note, rw.X2, rw.BoxX = true, firstLane, 20
		case stepSAN:
			rw.Note, rw.Local, rw.X2, rw.BoxX = true, true, firstLane, firstLane-100
			textX = rw.BoxX + 10
		case stepSRV, stepAddress:
			rw.X2 = firstLane + laneGap
		default:
			rw.X2 = laneOf[s.Target]
		}
		rw.Label = fit(rw.Label, r.Width-20-textX, labelChar)
		top := y + 28 // first line of detail: under the label of a note
		if !rw.Note {
			rw.ReqY, rw.RepY = y+28, y+42
			rw.Arrow = fmt.Sprintf("%d,%d %d,%d %d,%d", rw.X2, rw.ReqY, rw.X2-10, rw.ReqY-5, rw.X2-10, rw.ReqY+5)
			if s.Status != Skip {
				rw.Reply = replyLabels[s.Step]
				if s.Status == Fail {
					rw.Reply = "error or no answer"
				}
				rw.ReplyArrow = fmt.Sprintf("%d,%d %d,%d %d,%d", rw.X1, rw.RepY, rw.X1+10, rw.RepY-5, rw.X1+10, rw.RepY+5)
			}
			top = y + 58
		}
		ly := top + 10
		for _, t := range wrap(s.Detail, r.Width-20-textX, detailChar) {
			rw.Detail = append(rw.Detail, line{Y: ly, Text: t})
			ly += detailLine
		}
		if rw.Failed && s.Hint != "" {
			ly += 4
			for _, t := range wrap("hint: "+s.Hint, r.Width-20-textX, hintChar) {
				rw.Hint = append(rw.Hint, line{Y: ly, Text: t})
				ly += hintLine
			}
		}
		rw.Height = ly - y
		rw.BoxW, rw.BoxH = r.Width-20-rw.BoxX, rw.Height-6
		if s.Step == stepResult {
			r.OK = s.Status == OK
			r.Summary = s.Detail
		}
		y += rw.Height + 6
		r.Rows = append(r.Rows, rw)
	}
	r.Bottom = y
	r.Height = y + 20
	return reportTemplate.Execute(w, r)
}

// stepLabels say what each step does on the wire.
var stepLabels = map[string]string{
	stepSettings:  "settings",
	stepSRV:       "SRV query",
	stepServer:    "explicit server",
	stepAddress:   "A/AAAA query",
	stepTCP:       "TCP connect",
	stepTLS:       "TLS handshake and chain",
	stepSAN:       "certificate SANs, checked here on the certificate received",
	stepHandshake: "stream header and XEP-0114 handshake",
	stepPing:      "XEP-0199 ping",
	stepResult:    "result",
}

// replyLabels name the answer of each exchange that got one.
var replyLabels = map[string]string{
	stepSRV:       "SRV records",
	stepAddress:   "addresses",
	stepTCP:       "SYN-ACK",
	stepTLS:       "certificate chain",
	stepHandshake: "<handshake/>",
	stepPing:      "pong",
}

// technoteSteps are the numbers of the source technote's steps (Cisco's
// Call Bridge / XMPP signalling figure) that each check covers.
var technoteSteps = map[string]string{
	stepSettings:  "steps 2-3",
	stepSRV:       "step 4",
	stepServer:    "step 4",
	stepAddress:   "step 5",
	stepTCP:       "step 6",
	stepTLS:       "step 7",
	stepSAN:       "step 8",
	stepHandshake: "steps 9-10",
	stepPing:      "steps 11-12",
}

// wrap cuts s into lines that fit width at charWidth per character,
// breaking at spaces where it can (inside a long word where it must), at
// most maxLines, the last marked when text was left out.
func wrap(s string, width int, charWidth float64) []string {
	n := max(int(float64(width)/charWidth), 10)
	var out []string
	for s != "" {
		if len(out) == maxLines-1 && utf8.RuneCountInString(s) > n {
			return append(out, fit(s, width, charWidth))
		}
		if utf8.RuneCountInString(s) <= n {
			return append(out, s)
		}
		cut := byteIndex(s, n)
		if sp := strings.LastIndexByte(s[:cut], ' '); sp > 0 {
			cut = sp
		}
		out = append(out, s[:cut])
		s = strings.TrimLeft(s[cut:], " ")
	}
	return out
}

// fit cuts s to what fits width, marking the cut.
func fit(s string, width int, charWidth float64) string {
	n := max(int(float64(width)/charWidth), 10)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return s[:byteIndex(s, n-1)] + "…"
}

// byteIndex returns the byte offset of rune n of s.
func byteIndex(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
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
.step .replylabel { font-size: 10px; fill: #59636e; }
.step line.reply { stroke-dasharray: 6 3; stroke-width: 1.2; }
.step.ok line { stroke: #1a7f37; } .step.ok .label { fill: #1a7f37; } .step.ok polygon { fill: #1a7f37; }
.step.fail line { stroke: #cf222e; stroke-width: 2.5; } .step.fail .label { fill: #cf222e; } .step.fail polygon { fill: #cf222e; }
.step.skip line { stroke: #8c959f; stroke-dasharray: 5 4; } .step.skip .label { fill: #6e7781; } .step.skip polygon { fill: #8c959f; }
.step.fail .bg { fill: #ffebe9; }
.step .bg { fill: transparent; }
.note rect.box { fill: #f6f8fa; stroke: #8c959f; }
.note.ok rect.box { fill: #dafbe1; stroke: #1a7f37; }
.note.fail rect.box { fill: #ffebe9; stroke: #cf222e; }
.note.local rect.box { stroke-dasharray: 4 3; }
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
<g class="step {{.Status}}{{if .Note}} note{{end}}{{if .Local}} local{{end}}" data-step="{{.Step}}" data-target="{{.Target}}" data-status="{{.Status}}">
<rect class="bg" x="10" y="{{.Y}}" width="{{.Width}}" height="{{.Height}}" rx="4"/>
{{- if .Note}}
<rect class="box" x="{{.BoxX}}" y="{{.Y}}" width="{{.BoxW}}" height="{{.BoxH}}" rx="4" transform="translate(0 3)"/>
<text class="label" x="{{.BoxX}}" y="{{.Y}}" dx="10" dy="20">{{.Label}}</text>
{{- else}}
<line class="request" x1="{{.X1}}" y1="{{.ReqY}}" x2="{{.X2}}" y2="{{.ReqY}}"/>
<polygon points="{{.Arrow}}"/>
<text class="label" x="{{.X1}}" y="{{.Y}}" dx="8" dy="20">{{.Label}}</text>
{{- if .Reply}}
<line class="reply" x1="{{.X2}}" y1="{{.RepY}}" x2="{{.X1}}" y2="{{.RepY}}"/>
<polygon class="reply" points="{{.ReplyArrow}}"/>
<text class="replylabel" x="{{.X2}}" y="{{.RepY}}" dx="-8" dy="11" text-anchor="end">{{.Reply}}</text>
{{- end}}
{{- end}}
{{- $x := 30}}{{if .Local}}{{$x = .BoxX}}{{end}}
{{- range .Detail}}
<text class="detail" x="{{$x}}" y="{{.Y}}" dx="{{if eq $x 30}}0{{else}}10{{end}}">{{.Text}}</text>
{{- end}}
{{- range .Hint}}
<text class="hint" x="{{$x}}" y="{{.Y}}" dx="{{if eq $x 30}}0{{else}}10{{end}}">{{.Text}}</text>
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
