package xstream

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"mellium.im/xmpp/stream"
)

// AppendEscaped appends s escaped for use in XML character data or in a
// single- or double-quoted attribute value. Characters that XML cannot carry
// at all are replaced by U+FFFD, so the output is always well-formed.
func AppendEscaped(dst []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '<' && c != '>' && c != '&' && c != '\'' && c != '"' {
			i++
			continue
		}
		var rep string
		width := 1
		switch c {
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '&':
			rep = "&amp;"
		case '\'':
			rep = "&apos;"
		case '"':
			rep = "&quot;"
		case '\t':
			rep = "&#x9;"
		case '\n':
			rep = "&#xA;"
		case '\r':
			rep = "&#xD;"
		default:
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if r == utf8.RuneError && w == 1 || !IsXMLChar(r) {
				rep = "\uFFFD"
			} else {
				i += w
				continue
			}
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, rep...)
		i += width
		last = i
	}
	return append(dst, s[last:]...)
}

// AppendAttr appends ` name='value'` with value escaped.
func AppendAttr(dst []byte, name, value string) []byte {
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, '=', '\'')
	dst = AppendEscaped(dst, value)
	return append(dst, '\'')
}

// AppendStreamError appends <stream:error> with the condition, an optional
// human-readable text, and for see-other-host the new address as content.
func AppendStreamError(dst []byte, condition, content, text string) []byte {
	dst = append(dst, "<stream:error><"...)
	dst = append(dst, condition...)
	dst = append(dst, " xmlns='"+NSStreamErr+"'"...)
	if content != "" {
		dst = append(dst, '>')
		dst = AppendEscaped(dst, content)
		dst = append(dst, "</"...)
		dst = append(dst, condition...)
		dst = append(dst, '>')
	} else {
		dst = append(dst, "/>"...)
	}
	if text != "" {
		dst = append(dst, "<text xmlns='"+NSStreamErr+"'>"...)
		dst = AppendEscaped(dst, text)
		dst = append(dst, "</text>"...)
	}
	return append(dst, "</stream:error>"...)
}

// ParseStreamError decodes a <stream:error> element.
//
// What the server chose to write (the condition, its text, a redirect
// address) comes back through CleanText: bounded and free of control
// characters, since it ends up in errors, logs and status pages. Only the
// first few texts are kept, and no application-specific content.
func ParseStreamError(raw []byte) (stream.Error, error) {
	var se stream.Error
	if err := xml.Unmarshal(raw, &se); err != nil {
		return stream.Error{}, fmt.Errorf("xstream: decode stream error: %s", CleanText(err.Error()))
	}
	if se.Err == "" {
		return stream.Error{}, fmt.Errorf("xstream: stream error without a condition")
	}
	out := stream.Error{Err: CleanText(se.Err), Content: CleanText(se.Content)}
	for i, t := range se.Text {
		if i == maxStreamErrorTexts {
			break
		}
		out.Text = append(out.Text, struct {
			Lang  string
			Value string
		}{CleanText(t.Lang), CleanText(t.Value)})
	}
	return out, nil
}

// maxStreamErrorTexts bounds the <text/> elements kept from a stream error.
const maxStreamErrorTexts = 4

// MaxServerText bounds, in bytes, each piece of text from the server that
// CleanText lets through.
const MaxServerText = 256

// CleanText makes text chosen by the server safe to show: cut to
// MaxServerText bytes (at a character boundary, marked "...[cut N bytes]"),
// then passed through EscapeControls.
func CleanText(s string) string {
	cut := 0
	if len(s) > MaxServerText {
		n := MaxServerText
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		cut = len(s) - n
		s = s[:n]
	}
	s = EscapeControls(s)
	if cut > 0 {
		s += "...[cut " + strconv.Itoa(cut) + " bytes]"
	}
	return s
}

// EscapeControls replaces invalid UTF-8 and writes control characters (C0
// and C1 controls, DEL, line and paragraph separators, bidirectional
// overrides) as Go escapes (\n, \x1b, \u2028), so that the text can
// neither span lines nor steer a terminal. Other text comes back as it is.
func EscapeControls(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case isControl(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isControl reports characters that must not reach a terminal or a log
// line as they are.
func isControl(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r < 0xa0:
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c: // bidi controls
		return true
	}
	return false
}
