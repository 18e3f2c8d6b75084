package component

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
)

// Secret is a shared secret. However it is printed it shows "[redacted]"
// ("[empty]" when empty): fmt with any verb (%v, %+v, %#v, %s, %q, %x...),
// log/slog, encoding/json, encoding/xml and other text marshalers. Convert
// it to a string only where the secret itself is needed. It decodes from
// JSON as a plain string, so a configuration file can hold it.
type Secret string

// redacted is what a Secret shows.
func (s Secret) redacted() string {
	if s == "" {
		return "[empty]"
	}
	return "[redacted]"
}

// String returns "[redacted]" (or "[empty]").
func (s Secret) String() string { return s.redacted() }

// GoString is the %#v form, redacted.
func (s Secret) GoString() string { return "component.Secret(" + s.redacted() + ")" }

// Format redacts the secret for every fmt verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	_, _ = io.WriteString(f, s.redacted())
}

// LogValue redacts the secret in log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalText redacts the secret in text encodings (encoding/xml, ...).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// MarshalJSON redacts the secret in JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }
