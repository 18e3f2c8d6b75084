package xstream

import (
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
