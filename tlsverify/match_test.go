package tlsverify

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMatchDNS(t *testing.T) {
	tests := []struct {
		name, ref, san string
		want           bool
	}{
		{"exact", "example.com", "example.com", true},
		{"case", "example.com", "ExAmPlE.CoM", true},
		{"trailing dot on SAN", "example.com", "example.com.", true},
		{"different name", "example.com", "example.org", false},
		{"suffix is not a match", "xmpp.example.com", "example.com", false},
		{"wildcard one label", "xmpp.example.com", "*.example.com", true},
		{"wildcard uppercase", "xmpp.example.com", "*.EXAMPLE.com.", true},
		{"wildcard two labels", "a.xmpp.example.com", "*.example.com", false},
		{"wildcard not bare domain", "example.com", "*.example.com", false},
		{"partial-label wildcard", "xmpp1.example.com", "xmpp*.example.com", false},
		{"wildcard not left-most", "a.b.example.com", "a.*.example.com", false},
		{"wildcard over TLD", "example.com", "*.com", false},
		{"wildcard over public suffix", "example.co.uk", "*.co.uk", false},
		{"wildcard over private suffix", "x.appspot.com", "*.appspot.com", true},
		{"wildcard over single label", "host.local", "*.local", false},
		{"lone star", "com", "*", false},
		{"wildcard over internal domain", "xmpp.corp.internal", "*.corp.internal", true},
		{"KELVIN SIGN is not k", "k.example", "\u212a.example", false},
		{"non-ASCII SAN never matches", "xn--bcher-kva.example", "bücher.example", false},
		{"A-label SAN", "xn--bcher-kva.example", "XN--BCHER-KVA.example", true},
		{"empty SAN", "example.com", "", false},
		{"dot SAN", "example.com", ".", false},
		{"SAN with space", "example.com", "example.com ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, matchDNS(tt.ref, tt.san))
		})
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in, want string
		ip       bool
		bad      bool
	}{
		{in: "Example.COM.", want: "example.com"},
		{in: "Bücher.example", want: "xn--bcher-kva.example"},
		{in: "localhost", want: "localhost"},
		{in: "127.0.0.1", want: "127.0.0.1", ip: true},
		{in: "::1", want: "::1", ip: true},
		{in: "0:0::1", want: "::1", ip: true},
		{in: "", bad: true},
		{in: ".", bad: true},
		{in: "example.com:5223", bad: true},
		{in: "[::1]", bad: true},
		{in: "*.example.com", bad: true},
		{in: "-a.example", bad: true},
		{in: "a_b.example", bad: true},
		{in: strings.Repeat("a", 64) + ".example", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := parseReference(tt.in)
			if tt.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, r.name)
			assert.Equal(t, tt.ip, r.ip != nil)
		})
	}
}

func TestParsePinLeadingSlash(t *testing.T) {
	// A base64 pin starting with "/" must not be mistaken for curl's
	// "sha256//" prefix.
	var want [32]byte
	want[0] = 0xfc // base64 "/A..."
	for i := 1; i < len(want); i++ {
		want[i] = byte(i)
	}
	enc := b64(want[:])
	require.Equal(t, byte('/'), enc[0])
	for _, in := range []string{"sha256/" + enc, "sha256//" + enc, enc} {
		got, err := parsePin(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
}

func labels(s string) int { return strings.Count(s, ".") + 1 }

// FuzzMatchName feeds arbitrary names and SAN lists (one per line) to the
// matcher and the error formatter.
func FuzzMatchName(f *testing.F) {
	for _, seed := range [][2]string{
		{"example.com", "example.com"},
		{"xmpp1.example.com", "*.example.com"},
		{"a.b.example.com", "*.example.com\n*.b.example.com"},
		{"example.com", "*.example.com\nxmpp1.example.com"},
		{"EXAMPLE.COM.", "example.com."},
		{"bücher.example", "xn--bcher-kva.example\n*.xn--bcher-kva.example"},
		{"x.co.uk", "*.co.uk"},
		{"k.example", "\u212a.example"},
		{"127.0.0.1", "127.0.0.1"},
		{"::1", "::1\n*.1"},
		{"", ""},
		{"*.example.com", "*.example.com"},
		{"a", "*.a\n*"},
		{"a..b", "*..b"},
		{"xn--", "xn--\n*.xn--"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, name, sanText string) {
		sans := strings.Split(sanText, "\n")
		for _, san := range sans {
			matchDNS(name, san) // raw input: must not panic
		}
		ref, err := parseReference(name)
		if err != nil {
			return
		}
		cert := &x509.Certificate{DNSNames: sans, Subject: pkix.Name{CommonName: sans[0]}}
		ne := &NameError{Leaf: cert, Missing: []RequiredName{{Name: ref.name, IP: ref.ip, Role: RoleDomain}}, DNSNames: sans, CommonName: sans[0]}
		_ = ne.Error()
		_ = ref.inCommonName(cert)

		if ref.ip != nil {
			if ref.matches(sans, nil) {
				t.Fatalf("IP reference %q matched DNS SANs %q", ref.name, sans)
			}
			if !ref.matches(nil, []net.IP{ref.ip}) {
				t.Fatalf("IP reference %q does not match its own IP SAN", ref.name)
			}
			return
		}
		// Exact ASCII names always match, whatever the case and trailing dot.
		for _, same := range []string{ref.name, strings.ToUpper(ref.name), ref.name + "."} {
			if !matchDNS(ref.name, same) {
				t.Fatalf("%q does not match SAN %q", ref.name, same)
			}
		}
		for _, san := range sans {
			if !matchDNS(ref.name, san) {
				continue
			}
			s, _ := normalizeSAN(san)
			base, wild := strings.CutPrefix(s, "*.")
			switch {
			case !wild && s != ref.name:
				t.Fatalf("non-wildcard SAN %q matched different name %q", san, ref.name)
			case wild && labels(s) != labels(ref.name):
				t.Fatalf("wildcard %q matched %q with a different label count", san, ref.name)
			case wild && !strings.HasSuffix(ref.name, "."+base):
				t.Fatalf("wildcard %q matched %q outside its base", san, ref.name)
			case wild && !strings.Contains(base, "."):
				t.Fatalf("wildcard %q over a single label matched %q", san, ref.name)
			}
		}
	})
}

func FuzzParsePin(f *testing.F) {
	f.Add("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	f.Add("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	f.Add("e3:b0:c4:42:98:fc:1c:14:9a:fb:f4:c8:99:6f:b9:24:27:ae:41:e4:64:9b:93:4c:a4:95:99:1b:78:52:b8:55")
	f.Add("")
	f.Add("sha256/")
	f.Add("sha256//+H3mPzA0YBgGHRl5NDxZ9UaHqXx0nDe6NnxGJF1qXo=")
	f.Fuzz(func(t *testing.T, s string) {
		pin, err := parsePin(s)
		if err != nil {
			return
		}
		// Whatever parsed must round-trip through the canonical form.
		canon := "sha256/" + b64(pin[:])
		again, err := parsePin(canon)
		if err != nil || again != pin {
			t.Fatalf("pin %q: canonical form %q does not round-trip", s, canon)
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
