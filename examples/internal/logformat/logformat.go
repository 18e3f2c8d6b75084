// Package logformat owns the -log-format setting of the example binaries:
// callbridge logs with it, xmppcheck refuses a value the bridge would
// refuse (the same rule, from the same place).
package logformat

import (
	"fmt"
	"io"
	"log/slog"
)

// The formats of -log-format.
const (
	Text = "text"
	JSON = "json"
)

// Check returns an error when format is not one of the formats.
func Check(format string) error {
	switch format {
	case Text, JSON:
		return nil
	}
	return fmt.Errorf("%q is neither text nor json", format)
}

// New returns the logger of -log-format and -v (verbose: debug level)
// writing to w. In JSON, durations are numbers of seconds under a key
// ending in _seconds ("backoff": "backoff_seconds"); in text, Go durations
// ("1.5s"). The error is Check's.
func New(format string, verbose bool, w io.Writer) (*slog.Logger, error) {
	if err := Check(format); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if verbose {
		opts.Level = slog.LevelDebug
	}
	if format == Text {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.Float64(a.Key+"_seconds", a.Value.Duration().Seconds())
		}
		return a
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}
