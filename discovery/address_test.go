package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name string
		in   string
		host string
		port uint16
	}{
		{"host", "xmpp.example.com", "xmpp.example.com", 5223},
		{"host port", "xmpp.example.com:5269", "xmpp.example.com", 5269},
		{"trailing dot", "xmpp.example.com.", "xmpp.example.com", 5223},
		{"trailing dot port", "xmpp.example.com.:5222", "xmpp.example.com", 5222},
		{"upper case", "XMPP.Example.COM:1", "xmpp.example.com", 1},
		{"single label", "localhost:5223", "localhost", 5223},
		{"idn", "bücher.example", "xn--bcher-kva.example", 5223},
		{"idn upper", "BÜCHER.example:65535", "xn--bcher-kva.example", 65535},
		{"a-label", "xn--bcher-kva.example", "xn--bcher-kva.example", 5223},
		{"ipv4", "192.0.2.1", "192.0.2.1", 5223},
		{"ipv4 port", "192.0.2.1:5270", "192.0.2.1", 5270},
		{"ipv6 bare", "2001:db8::1", "2001:db8::1", 5223},
		{"ipv6 upper", "2001:DB8::A", "2001:db8::a", 5223},
		{"ipv6 brackets", "[2001:db8::1]", "2001:db8::1", 5223},
		{"ipv6 brackets port", "[::1]:5224", "::1", 5224},
		{"leading zeros port", "h.example:05223", "h.example", 5223},
		{"hyphen", "cms-xmpp.example.com", "cms-xmpp.example.com", 5223},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAddress(tt.in)
			require.NoError(t, err)
			assert.Equal(t, Address{Host: tt.host, Port: tt.port}, a)
			again, err := ParseAddress(a.String())
			require.NoError(t, err)
			assert.Equal(t, a, again)
		})
	}
}

func TestParseAddressErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"empty host", ":5223"},
		{"only dot", "."},
		{"port zero", "h.example:0"},
		{"port too big", "h.example:65536"},
		{"port far too big", "h.example:999999"},
		{"port not number", "h.example:xmpp"},
		{"negative port", "h.example:-1"},
		{"empty port", "h.example:"},
		{"scheme", "xmpp://h.example:5223"},
		{"path", "h.example/x"},
		{"user", "cb@h.example"},
		{"space inside", "h example"},
		{"leading space", " h.example"},
		{"trailing newline", "h.example\n"},
		{"junk", "h$.example"},
		{"underscore", "_xmpp.example"},
		{"empty label", "a..example"},
		{"leading hyphen", "-a.example"},
		{"long label", strings.Repeat("a", 64) + ".example"},
		{"long name", strings.Repeat("abcdefghi.", 26) + "com"},
		{"bad ipv6", "2001:db8::g"},
		{"ipv6 unbracketed port", "2001:db8::1:99999:1"},
		{"bracket no close", "[::1:5223"},
		{"bracket ipv4", "[192.0.2.1]:5223"},
		{"bracket junk after", "[::1]x"},
		{"ipv4 too short", "192.0.2"},
		{"ipv4 leading zero", "192.0.2.01"},
		{"numeric tld", "a.123"},
		{"double colon host", "h.example:52:23"},
		{"ipv6 zone", "[fe80::1%eth0]:5223"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAddress(tt.in)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrBadAddress)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, KindBadAddress, e.Kind)
			assert.Equal(t, tt.in, e.Name, "the error carries the value")
			assert.False(t, e.IsTemporary())
		})
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"", "h", "h.example:5223", "[::1]:1", "::1", "192.0.2.1:80", "bücher.example.",
		"xmpp://x", "a..b", "[::ffff:1.2.3.4]", "fe80::1%eth0", "[fe80::1%25eth0]:5", "1.2.3.4.:5",
		"ß.example", "\u00a0h", "h.example:65535", "xn--zz", "ＦＵＬＬ.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrBadAddress) {
				t.Fatalf("ParseAddress(%q) error %v is not a bad-address *Error", s, err)
			}
			return
		}
		if a.Port == 0 || a.Host == "" {
			t.Fatalf("ParseAddress(%q) = %+v", s, a)
		}
		again, err := ParseAddress(a.String())
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %+v, but re-parsing %q: %v", s, a, a.String(), err)
		}
		if again != a {
			t.Fatalf("ParseAddress(%q) = %+v, re-parsed %+v", s, a, again)
		}
	})
}
