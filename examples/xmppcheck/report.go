package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cblink/cblink/internal/xstream"
)

// Result is a step's outcome.
type Result string

// Results.
const (
	OK   Result = "ok"
	Fail Result = "fail"
	Skip Result = "skip"
)

// Step is one checked step, as printed. In JSON, "ok" is true only for a
// passed step; "status" tells a failed step ("fail") from one not reached
// because an earlier one failed ("skip").
type Step struct {
	Step       string  `json:"step"`
	Target     string  `json:"target,omitempty"`
	OK         bool    `json:"ok"`
	Status     Result  `json:"status"`
	Detail     string  `json:"detail"`
	Hint       string  `json:"hint,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

func newStep(step, target string, r Result, d time.Duration, detail, hint string) Step {
	return Step{
		Step: step, Target: target, OK: r == OK, Status: r, Detail: detail, Hint: hint,
		DurationMS: float64(d.Microseconds()) / 1000,
	}
}

func writeJSON(w io.Writer, steps []Step) error {
	if steps == nil {
		steps = []Step{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(steps)
}

// writeText prints one line per step: status, step, target, detail, and
// the hint on its own line below a failure. Control characters (which may
// come from the server, in a stream error's text say) are escaped, so
// that nothing can start a line of its own.
func writeText(w io.Writer, steps []Step) {
	esc := xstream.EscapeControls
	for _, s := range steps {
		target := s.Target
		if target == "" {
			target = "-"
		}
		label := map[Result]string{OK: "OK", Fail: "FAIL", Skip: "SKIP"}[s.Status]
		fmt.Fprintf(w, "%-4s  %-9s  %-24s  %s\n", label, s.Step, esc(target), esc(s.Detail))
		if s.Hint != "" {
			fmt.Fprintf(w, "      %-9s  %-24s  hint: %s\n", "", "", esc(s.Hint))
		}
	}
}
