package component

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// formattings renders v every way a program might print or encode it.
func formattings(t *testing.T, v any) []string {
	t.Helper()
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%T %v"} {
		out = append(out, fmt.Sprintf(verb, v))
	}
	out = append(out, fmt.Sprint(v), fmt.Sprintln(v))
	j, err := json.Marshal(v)
	require.NoError(t, err)
	out = append(out, string(j))
	if x, err := xml.Marshal(v); err == nil {
		out = append(out, string(x))
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		slog.New(h(&b)).Info("config", "cfg", v)
		out = append(out, b.String())
	}
	return out
}

// TestSecretNeverFormatted: the secret shows in no formatting of a Secret
// or a Config, value or pointer, and a JSON config file still loads it.
func TestSecretNeverFormatted(t *testing.T) {
	cfg := Config{Name: "cb1", Domain: "example.com", Secret: testSecret}
	for _, v := range []any{cfg.Secret, &cfg.Secret, cfg, &cfg, struct{ Link Config }{cfg}} {
		for _, s := range formattings(t, v) {
			assert.NotContains(t, s, testSecret, "%T", v)
		}
	}
	assert.Equal(t, "[redacted]", fmt.Sprint(cfg.Secret))
	assert.Equal(t, "[empty]", fmt.Sprint(Secret("")))
	var back Config
	require.NoError(t, json.Unmarshal([]byte(`{"Name":"cb1","Secret":"`+testSecret+`"}`), &back))
	assert.True(t, back.Secret == testSecret, "a JSON config file holds the secret")
}
