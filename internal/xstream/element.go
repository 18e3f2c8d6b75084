package xstream

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Element is one top-level element as it arrived, with cheap accessors for
// what routing needs (name, attributes of the start tag, first child). Its
// bytes belong to the Decoder and are valid until the next call to Next;
// copy what must outlive that.
type Element struct {
	// Raw is the whole element, from '<' to its end tag.
	Raw []byte
	// Keepalive is set, and Raw empty, when only whitespace arrived.
	Keepalive bool

	nameLen int // length of the qualified name at Raw[1:]
	tagEnd  int // index just past the start tag's '>'
}

func (e *Element) init(tagEnd int) {
	n := 1
	for n < len(e.Raw) && isNameByte(e.Raw[n]) {
		n++
	}
	e.nameLen = n - 1
	e.tagEnd = tagEnd
}

// TagEnd returns the index just past the first '>' outside quoted
// attribute values in b (the end of the start tag b begins with), or -1
// when b holds none.
func TagEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c > '>' { // most bytes: letters; all that matter are <= '>'
			continue
		}
		switch c {
		case '>':
			return i + 1
		case '"', '\'':
			j := bytes.IndexByte(b[i+1:], c)
			if j < 0 {
				return -1
			}
			i += j + 1
		}
	}
	return -1
}

// Name returns the qualified name of the element ("iq", "stream:error").
func (e *Element) Name() []byte { return e.Raw[1 : 1+e.nameLen] }

// Local returns the name without its prefix.
func (e *Element) Local() []byte {
	n := e.Name()
	if i := bytes.IndexByte(n, ':'); i >= 0 {
		return n[i+1:]
	}
	return n
}

// Prefix returns the element's namespace prefix, empty when none.
func (e *Element) Prefix() []byte {
	n := e.Name()
	if i := bytes.IndexByte(n, ':'); i >= 0 {
		return n[:i]
	}
	return nil
}

// StartTag returns the element's start tag, '<' to '>'.
func (e *Element) StartTag() []byte { return e.Raw[:e.tagEnd] }

// SelfClosing reports whether the element is empty and written as <x/>.
func (e *Element) SelfClosing() bool { return e.tagEnd >= 2 && e.Raw[e.tagEnd-2] == '/' }

// Inner returns the bytes between the start and end tag.
func (e *Element) Inner() []byte {
	if e.SelfClosing() {
		return nil
	}
	end := bytes.LastIndexByte(e.Raw, '<')
	if end < e.tagEnd {
		return nil
	}
	return e.Raw[e.tagEnd:end]
}

// Attr returns the raw (still escaped) value of the attribute with the
// given qualified name on the start tag, and whether it is present.
func (e *Element) Attr(name string) ([]byte, bool) {
	return findAttr(e.Raw[1+e.nameLen:e.tagEnd], name)
}

// AttrString returns the unescaped value of an attribute, "" when absent or
// when the value holds an invalid reference.
func (e *Element) AttrString(name string) string {
	v, ok := e.Attr(name)
	if !ok {
		return ""
	}
	s, err := Unescape(v)
	if err != nil {
		return ""
	}
	return s
}

// FirstChild returns the local name of the first child element and its
// namespace (raw, as written in the xmlns or xmlns:prefix attribute that
// binds it, on the child or on this element), or ok=false when the element
// has no child element. The namespace is empty when the child inherits the
// stream's default namespace.
func (e *Element) FirstChild() (local, ns []byte, ok bool) {
	in := e.Inner()
	for {
		i := bytes.IndexByte(in, '<')
		if i < 0 || i+1 >= len(in) {
			return nil, nil, false
		}
		in = in[i+1:]
		switch in[0] {
		case '!': // CDATA: skip it
			j := bytes.Index(in, []byte("]]>"))
			if j < 0 {
				return nil, nil, false
			}
			in = in[j+3:]
			continue
		case '/':
			return nil, nil, false
		}
		n := 0
		for n < len(in) && isNameByte(in[n]) {
			n++
		}
		end := TagEnd(in)
		if end < 0 {
			return nil, nil, false
		}
		attrs := in[n:end]
		local = in[:n]
		c := bytes.IndexByte(local, ':')
		if c < 0 {
			ns, _ = findAttr(attrs, "xmlns")
			return local, ns, true
		}
		prefix := local[:c]
		local = local[c+1:]
		// Rare: a prefixed payload. Build the attribute name on the stack.
		var buf [64]byte
		key := append(append(buf[:0], "xmlns:"...), prefix...)
		ns, found := findAttrBytes(attrs, key)
		if !found {
			ns, _ = findAttrBytes(e.Raw[1+e.nameLen:e.tagEnd], key)
		}
		return local, ns, true
	}
}

// findAttr scans the attribute list of a start tag (after the element
// name) for name.
func findAttr(tag []byte, name string) ([]byte, bool) {
	return findAttrBytes(tag, []byte(name))
}

func findAttrBytes(tag, name []byte) (val []byte, found bool) {
	EachAttr(tag, func(n, v []byte) bool {
		if bytes.Equal(n, name) {
			val, found = v, true
		}
		return !found
	})
	return val, found
}

// EachAttr calls f with the name and raw (still escaped) value of each
// attribute in attrs, the part of a start tag after the element name, until
// f returns false. It returns what follows the last attribute it read:
// ">" or "/>" for a well-formed tag, or where the syntax broke (a name
// without a quoted value, attributes not separated by white space). It is
// the one attribute scanner of the module.
func EachAttr(attrs []byte, f func(name, val []byte) bool) (rest []byte) {
	for {
		i := 0
		for i < len(attrs) && IsSpace(attrs[i]) {
			i++
		}
		if i == 0 && len(attrs) > 0 && attrs[0] != '>' && attrs[0] != '/' {
			return attrs // attributes must be separated by white space
		}
		attrs = attrs[i:]
		n := 0
		for n < len(attrs) && isNameByte(attrs[n]) {
			n++
		}
		if n == 0 {
			return attrs
		}
		name := attrs[:n]
		i = n
		for i < len(attrs) && IsSpace(attrs[i]) {
			i++
		}
		if i >= len(attrs) || attrs[i] != '=' {
			return attrs
		}
		i++
		for i < len(attrs) && IsSpace(attrs[i]) {
			i++
		}
		if i >= len(attrs) || (attrs[i] != '"' && attrs[i] != '\'') {
			return attrs
		}
		j := bytes.IndexByte(attrs[i+1:], attrs[i])
		if j < 0 {
			return attrs
		}
		val := attrs[i+1 : i+1+j]
		attrs = attrs[i+2+j:]
		if !f(name, val) {
			return attrs
		}
	}
}

// startTag is a parsed start tag, used for the stream header where all
// attributes matter.
type startTag struct {
	name  []byte
	attrs [][2][]byte
}

func (s *startTag) prefix() []byte {
	if i := bytes.IndexByte(s.name, ':'); i >= 0 {
		return s.name[:i]
	}
	return nil
}

func (s *startTag) get(name string) ([]byte, bool) {
	for _, a := range s.attrs {
		if string(a[0]) == name {
			return a[1], true
		}
	}
	return nil, false
}

var errBadTag = errors.New("malformed start tag")

func parseStartTag(tag []byte) (startTag, error) {
	var st startTag
	if len(tag) < 3 || tag[0] != '<' || tag[len(tag)-1] != '>' {
		return st, errBadTag
	}
	body := tag[1 : len(tag)-1]
	body = bytes.TrimSuffix(body, []byte("/"))
	n := 0
	for n < len(body) && isNameByte(body[n]) {
		n++
	}
	if n == 0 {
		return st, errBadTag
	}
	st.name = body[:n]
	var dup bool
	rest := EachAttr(body[n:], func(name, val []byte) bool {
		if _, dup = st.get(string(name)); dup {
			return false
		}
		st.attrs = append(st.attrs, [2][]byte{name, val})
		return true
	})
	switch {
	case dup:
		return st, errors.New("duplicate attribute")
	case len(bytes.TrimLeft(rest, " \t\r\n")) != 0:
		return st, errBadTag
	}
	return st, nil
}

var errBadRef = errors.New("xstream: invalid character or entity reference")

// Unescape resolves the five predefined entities and character references.
// Other references are an error: XMPP forbids entity declarations.
func Unescape(b []byte) (string, error) {
	i := bytes.IndexByte(b, '&')
	if i < 0 {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i >= 0 {
		out = append(out, b[:i]...)
		b = b[i:]
		semi := bytes.IndexByte(b, ';')
		if semi < 0 || semi > 12 {
			return "", errBadRef
		}
		ref := b[1:semi]
		switch string(ref) {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "quot":
			out = append(out, '"')
		case "apos":
			out = append(out, '\'')
		default:
			if len(ref) < 2 || ref[0] != '#' {
				return "", errBadRef
			}
			var v uint64
			var err error
			if ref[1] == 'x' {
				v, err = strconv.ParseUint(string(ref[2:]), 16, 32)
			} else {
				v, err = strconv.ParseUint(string(ref[1:]), 10, 32)
			}
			if err != nil || !IsXMLChar(rune(v)) {
				return "", errBadRef
			}
			out = utf8.AppendRune(out, rune(v))
		}
		b = b[semi+1:]
		i = bytes.IndexByte(b, '&')
	}
	out = append(out, b...)
	return string(out), nil
}

// IsXMLChar reports whether XML 1.0 allows the character r.
func IsXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}
