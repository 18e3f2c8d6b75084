package testhelp

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Formattings renders v every way a program might print or encode it: fmt
// with each verb, Sprint and Sprintln, encoding/json and encoding/xml
// (when they accept v), and log/slog's text and JSON handlers. The tests
// that a secret never shows search them all.
func Formattings(v any) []string {
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		out = append(out, fmt.Sprintf(verb, v))
	}
	out = append(out, fmt.Sprint(v), fmt.Sprintln(v))
	if j, err := json.Marshal(v); err == nil {
		out = append(out, string(j))
	}
	if x, err := xml.Marshal(v); err == nil {
		out = append(out, string(x))
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		slog.New(h(&b)).Info("value", "v", v)
		out = append(out, b.String())
	}
	return out
}

// NeverShows fails t when any formatting of any of vs shows secret.
func NeverShows(t testing.TB, secret string, vs ...any) {
	t.Helper()
	for _, v := range vs {
		for _, s := range Formattings(v) {
			if strings.Contains(s, secret) {
				t.Errorf("a formatting of %T shows the secret: %s", v, s)
			}
		}
	}
}
