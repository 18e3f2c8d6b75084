package xstream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzDecoder feeds arbitrary bytes after a valid header: the decoder must
// never panic, never return an element larger than its bound, and its
// buffer must stay within the bound.
func FuzzDecoder(f *testing.F) {
	for _, s := range []string{
		"<handshake/>",
		"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
		"<a><![CDATA[]]]]><![CDATA[>]]></a>",
		"<a b='>' c=\"'\"><b/></a></stream:stream>",
		"<a><!-- c --></a>",
		"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
		" \n <a/>\t<b></b>",
		"<a></b>",
		"<a",
		"<",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 512
		d := NewDecoder(io.MultiReader(strings.NewReader(serverHeader), bytes.NewReader(data)), max, 8)
		if _, err := d.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			el, err := d.Next()
			if err != nil {
				var se *SyntaxError
				if !errors.Is(err, ErrStreamEnd) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrTooDeep) && !errors.As(err, &se) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				break
			}
			if len(el.Raw) > max {
				t.Fatalf("element of %d bytes passed a %d-byte bound", len(el.Raw), max)
			}
			if !el.Keepalive {
				_ = el.Name()
				_, _ = el.Attr("id")
				_ = el.AttrString("to")
				_, _, _ = el.FirstChild()
				_ = el.Inner()
			}
		}
		if cap(d.buf) > max+minBuf {
			t.Fatalf("buffer grew to %d", cap(d.buf))
		}
	})
}

// FuzzHeader feeds arbitrary bytes as the peer's stream header.
func FuzzHeader(f *testing.F) {
	f.Add([]byte(serverHeader))
	f.Add([]byte("<?xml version='1.0'?>\n" + serverHeader))
	f.Add([]byte("<stream:stream xmlns:stream='x' id=\"a\" a=b>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), 1024, 8)
		h, err := d.ReadHeader()
		if err == nil && (h.NS != NSComponent || h.StreamNS != NSStream) {
			t.Fatalf("accepted a header with namespaces %q %q", h.NS, h.StreamNS)
		}
	})
}

func BenchmarkDecoderPing(b *testing.B) {
	const ping = "<iq type='get' id='ping-123456' from='example.com' to='cb1.example.com'><ping xmlns='urn:xmpp:ping'/></iq>"
	batch := strings.Repeat(ping, 64)
	r := &repeatReader{data: []byte(batch)}
	d := NewDecoder(io.MultiReader(strings.NewReader(serverHeader), r), 0, 0)
	if _, err := d.ReadHeader(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(ping)))
	for b.Loop() {
		el, err := d.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, ns, ok := el.FirstChild(); !ok || string(ns) != "urn:xmpp:ping" {
			b.Fatal("bad element")
		}
		if _, ok := el.Attr("id"); !ok {
			b.Fatal("no id")
		}
	}
}

type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}
