package xstream

import (
	"bytes"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
)

// Header is a stream header as read from or written to the wire. Values are
// unescaped.
type Header struct {
	To, From, ID, Lang, Version string
	// NS is the default namespace (jabber:component:accept on a component
	// stream); StreamNS the namespace bound to the header's prefix.
	NS, StreamNS string
}

// HeaderError reports a stream header that is not one of a component
// stream; Condition is the stream error condition to answer with.
type HeaderError struct {
	Condition string // "invalid-namespace", "bad-namespace-prefix", "bad-format"
	Msg       string
}

func (e *HeaderError) Error() string { return "xstream: stream header: " + e.Msg }

func headerFromTag(st *startTag) (Header, error) {
	var h Header
	prefix := st.prefix()
	local := st.name[len(prefix):]
	if len(prefix) > 0 {
		local = local[1:]
	}
	if string(local) != "stream" {
		return h, &HeaderError{Condition: "bad-format", Msg: fmt.Sprintf("element %q is not a stream header", CleanText(string(st.name)))}
	}
	nsAttr := "xmlns"
	if len(prefix) > 0 {
		nsAttr = "xmlns:" + string(prefix)
	}
	get := func(name string) (string, error) {
		v, ok := st.get(name)
		if !ok {
			return "", nil
		}
		s, err := Unescape(v)
		if err != nil {
			return "", &HeaderError{Condition: "bad-format", Msg: "attribute " + name + ": " + err.Error()}
		}
		return s, nil
	}
	var err error
	fields := []struct {
		name string
		dst  *string
	}{
		{"to", &h.To}, {"from", &h.From}, {"id", &h.ID}, {"xml:lang", &h.Lang},
		{"version", &h.Version}, {nsAttr, &h.StreamNS},
	}
	for _, f := range fields {
		if *f.dst, err = get(f.name); err != nil {
			return h, err
		}
	}
	if len(prefix) > 0 {
		if h.NS, err = get("xmlns"); err != nil {
			return h, err
		}
	} else {
		h.NS = h.StreamNS
	}
	if h.StreamNS != NSStream {
		if h.StreamNS == "" {
			return h, &HeaderError{Condition: "bad-namespace-prefix", Msg: fmt.Sprintf("prefix %q is not bound to %s", CleanText(string(prefix)), NSStream)}
		}
		return h, &HeaderError{Condition: "invalid-namespace", Msg: fmt.Sprintf("stream namespace is %q, want %s", CleanText(h.StreamNS), NSStream)}
	}
	if h.NS != NSComponent {
		return h, &HeaderError{Condition: "invalid-namespace", Msg: fmt.Sprintf("default namespace is %q, want %s", CleanText(h.NS), NSComponent)}
	}
	return h, nil
}

// AppendHeader appends a component stream header. Empty fields are left out.
func AppendHeader(dst []byte, h Header) []byte {
	dst = append(dst, "<stream:stream xmlns='"+NSComponent+"' xmlns:stream='"+NSStream+"'"...)
	dst = appendAttrIf(dst, "to", h.To)
	dst = appendAttrIf(dst, "from", h.From)
	dst = appendAttrIf(dst, "id", h.ID)
	dst = appendAttrIf(dst, "xml:lang", h.Lang)
	dst = appendAttrIf(dst, "version", h.Version)
	return append(dst, '>')
}

func appendAttrIf(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	return AppendAttr(dst, name, v)
}

// StreamEnd is the closing tag of a stream.
const StreamEnd = "</stream:stream>"

// HandshakeDigest returns the XEP-0114 handshake value: the lowercase hex
// SHA-1 of the stream id followed by the secret, both as UTF-8 bytes.
func HandshakeDigest(id, secret string) [40]byte {
	h := sha1.New()
	h.Write([]byte(id))
	h.Write([]byte(secret))
	var sum [sha1.Size]byte
	var out [40]byte
	hex.Encode(out[:], h.Sum(sum[:0]))
	return out
}

// CheckHandshake reports, in constant time, whether got is the handshake
// value for id and secret. Uppercase hex is accepted as some clients send it.
func CheckHandshake(id, secret string, got []byte) bool {
	want := HandshakeDigest(id, secret)
	if len(got) != len(want) {
		return false
	}
	var lower [40]byte
	for i, c := range got {
		if c >= 'A' && c <= 'F' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return subtle.ConstantTimeCompare(lower[:], want[:]) == 1
}

// ReadHeader reads an optional XML declaration, whitespace, and the peer's
// stream header <stream:stream ...>.
func (d *Decoder) ReadHeader() (Header, error) {
	var h Header
	if _, err := d.skipSpace(false); err != nil {
		return h, err
	}
	if err := d.need(2); err != nil {
		return h, err
	}
	if d.buf[d.r0+1] == '?' {
		end, err := d.findFrom(d.r0+2, []byte("?>"))
		if err != nil {
			return h, err
		}
		if !bytes.HasPrefix(d.buf[d.r0:], []byte("<?xml")) || (d.r0+5 < end && !IsSpace(d.buf[d.r0+5])) {
			return h, d.syntax(true, "processing instruction before stream header", 0)
		}
		d.consume(end + 2 - d.r0)
		if _, err := d.skipSpace(false); err != nil {
			return h, err
		}
	}
	if err := d.need(2); err != nil {
		return h, err
	}
	if d.buf[d.r0] != '<' || d.buf[d.r0+1] == '/' || d.buf[d.r0+1] == '!' || d.buf[d.r0+1] == '?' {
		return h, d.syntax(d.buf[d.r0] == '<', "expected stream header", 0)
	}
	// Scan the start tag: up to '>' outside quotes.
	p := d.r0 + 1
	var q byte
	for {
		for ; p < d.w0; p++ {
			c := d.buf[p]
			switch {
			case q != 0:
				if c == q {
					q = 0
				} else if c == '<' {
					return h, d.syntax(false, "'<' in attribute value", p-d.r0)
				}
			case c == '"' || c == '\'':
				q = c
			case c == '<':
				return h, d.syntax(false, "'<' in stream header", p-d.r0)
			case c == '>':
				goto done
			}
		}
		if p-d.r0 > d.maxSize {
			return h, ErrTooLarge
		}
		off := p - d.r0
		if err := d.fill(); err != nil {
			return h, err
		}
		p = d.r0 + off
	}
done:
	tag := d.buf[d.r0 : p+1]
	if tag[len(tag)-2] == '/' {
		return h, d.syntax(false, "self-closing stream header", 0)
	}
	st, err := parseStartTag(tag)
	if err != nil {
		return h, d.syntax(false, err.Error(), 0)
	}
	h, err = headerFromTag(&st)
	if err != nil {
		return h, err
	}
	d.streamPrefix = append(d.streamPrefix[:0], st.prefix()...)
	d.consume(len(tag))
	return h, nil
}
