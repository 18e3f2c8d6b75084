package component

import (
	"fmt"
	"io"
	"log/slog"
)

// Secret is a shared secret. Make one with NewSecret; the zero value is
// the empty (unset) secret. However it is printed it shows "[redacted]"
// ("[empty]" when empty): fmt with any verb (%v, %+v, %#v, %s, %q, %x...),
// log/slog, encoding/json, encoding/xml and other text marshalers. That
// holds for a value holding a Secret too, even in an unexported field,
// where fmt prints by reflection without calling any method: the text
// sits behind a pointer, and fmt prints a pointer inside a value as an
// address. Only the handshake reads the text; nothing in the package
// returns it.
//
// A Secret decodes from text (UnmarshalText), so a JSON, XML, YAML or TOML
// configuration file can hold it as a plain string. Copies share the text,
// which never changes. Two Secrets are == only when one is a copy of the
// other (or both are zero).
type Secret struct {
	// p points to a string, not to a struct: for a verb a pointer does
	// not take (%s, %q), fmt prints the pointer inside a value at depth 0
	// as a bad verb, and at depth 0 it would show a struct's fields
	// (%!s(*T=&{text})) but shows a pointer to a string as an address.
	p *string
}

// NewSecret returns s as a Secret; NewSecret("") is the zero Secret.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{&s}
}

// IsZero reports whether the secret is empty. It also makes encoding/json's
// omitzero leave an unset Secret out.
func (s Secret) IsZero() bool { return s.p == nil }

// reveal returns the secret's text, for the handshake only.
func (s Secret) reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// redacted is what a Secret shows.
func (s Secret) redacted() string {
	if s.IsZero() {
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

// MarshalText redacts the secret in text encodings (encoding/json,
// encoding/xml, ...).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// UnmarshalText sets the secret to text, so that a configuration file can
// hold it as a string (empty text gives the zero Secret).
func (s *Secret) UnmarshalText(text []byte) error {
	*s = NewSecret(string(text))
	return nil
}
