package wstest

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/cblink/cblink/internal/xstream"
)

// Namespaces of RFC 7395 and RFC 6120.
const (
	nsFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsClient  = "jabber:client"
	nsStream  = "http://etherx.jabber.org/streams"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsPing    = "urn:xmpp:ping"
)

var errBadFrame = errors.New("wstest: a frame must hold exactly one element")

// parseFrame returns the one element a text frame holds (RFC 7395 section
// 3.3.3: every frame is one complete, self-contained element). A frame of
// only white space gives an Element with Keepalive set. A frame with a
// byte sequence that is not UTF-8, or a character XML cannot carry, is not
// well-formed, wherever it is (the decoder would pass some through in
// content).
func parseFrame(b []byte) (xstream.Element, error) {
	if !validXML(string(b)) {
		return xstream.Element{}, errBadFrame
	}
	dec := xstream.NewDecoder(bytes.NewReader(b), len(b)+1, 0)
	el, err := dec.Next()
	if err != nil {
		if len(bytes.TrimLeft(b, " \t\r\n")) == 0 {
			return xstream.Element{Keepalive: true}, nil
		}
		return el, errBadFrame
	}
	if el.Keepalive || int(dec.InputOffset()) != len(bytes.TrimRight(b, " \t\r\n")) {
		return el, errBadFrame
	}
	return el, nil
}

// rewrite appends el with its default namespace set to ns (dropped when ns
// is ""), and with the attributes named in set (name, value pairs) replaced
// by those values (dropped when the value is ""); the other attributes and
// the content are kept as they are. It reports false, appending nothing,
// when the start tag's attributes do not parse.
func rewrite(dst []byte, el *xstream.Element, ns string, set ...string) ([]byte, bool) {
	start := len(dst)
	name := el.Name()
	tag := el.StartTag()
	dst = append(dst, '<')
	dst = append(dst, name...)
	if ns != "" {
		dst = xstream.AppendAttr(dst, "xmlns", ns)
	}
	ok := true
	rest := xstream.EachAttr(tag[1+len(name):], func(n, v []byte) bool {
		if string(n) == "xmlns" {
			return true
		}
		for i := 0; i+1 < len(set); i += 2 {
			if string(n) == set[i] {
				return true
			}
		}
		s, err := xstream.Unescape(v)
		if err != nil || !validXML(s) {
			ok = false
			return false
		}
		dst = xstream.AppendAttr(dst, string(n), s)
		return true
	})
	rest = bytes.TrimLeft(rest, " \t\r\n")
	if !ok || (string(rest) != ">" && string(rest) != "/>") {
		return dst[:start], false
	}
	for i := 0; i+1 < len(set); i += 2 {
		if set[i+1] != "" {
			dst = xstream.AppendAttr(dst, set[i], set[i+1])
		}
	}
	if el.SelfClosing() {
		return append(dst, "/>"...), true
	}
	dst = append(dst, '>')
	dst = append(dst, el.Inner()...)
	dst = append(dst, "</"...)
	dst = append(dst, name...)
	return append(dst, '>'), true
}

// appendStanzaError appends the error reply to a stanza named name
// ("iq" or "message") with the given id, from the entity it was sent to
// (from) to its sender (to).
func appendStanzaError(dst []byte, name, id, from, to, typ, cond, text string) []byte {
	dst = append(dst, '<')
	dst = append(dst, name...)
	dst = append(dst, " xmlns='"+nsClient+"' type='error'"...)
	if id != "" {
		dst = xstream.AppendAttr(dst, "id", id)
	}
	if from != "" {
		dst = xstream.AppendAttr(dst, "from", from)
	}
	dst = xstream.AppendAttr(dst, "to", to)
	dst = append(dst, "><error"...)
	dst = xstream.AppendAttr(dst, "type", typ)
	dst = append(dst, "><"...)
	dst = append(dst, cond...)
	dst = append(dst, " xmlns='"+nsStanzas+"'/>"...)
	if text != "" {
		dst = append(dst, "<text xmlns='"+nsStanzas+"'>"...)
		dst = xstream.AppendEscaped(dst, text)
		dst = append(dst, "</text>"...)
	}
	dst = append(dst, "</error></"...)
	dst = append(dst, name...)
	return append(dst, '>')
}

// streamError is the frame of a stream error: over WebSocket the stream
// prefix is declared on the element itself (RFC 7395 section 3.6.2).
func streamError(cond, text string) []byte {
	b := []byte("<stream:error xmlns:stream='" + nsStream + "'><" + cond + " xmlns='" + nsStreams + "'/>")
	if text != "" {
		b = append(b, "<text xmlns='"+nsStreams+"'>"...)
		b = xstream.AppendEscaped(b, text)
		b = append(b, "</text>"...)
	}
	return append(b, "</stream:error>"...)
}

var closeFrame = []byte("<close xmlns='" + nsFraming + "'/>")

// childText returns the unescaped text of the first <local> element inside
// inner ("" when absent or not plain text).
func childText(inner []byte, local string) string {
	i := bytes.Index(inner, []byte("<"+local+">"))
	if i < 0 {
		return ""
	}
	rest := inner[i+len(local)+2:]
	j := bytes.Index(rest, []byte("</"+local+">"))
	if j < 0 || bytes.IndexByte(rest[:j], '<') >= 0 {
		return ""
	}
	s, err := xstream.Unescape(rest[:j])
	if err != nil {
		return ""
	}
	return s
}

// validXML reports whether s holds only characters XML can carry (the
// decoder lets others through in attribute values; AppendEscaped would
// replace them).
func validXML(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !xstream.IsXMLChar(r) {
			return false
		}
	}
	return true
}
