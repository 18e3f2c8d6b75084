package xstream

import (
	"encoding/xml"
	"fmt"
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
func ParseStreamError(raw []byte) (stream.Error, error) {
	var se stream.Error
	if err := xml.Unmarshal(raw, &se); err != nil {
		return se, fmt.Errorf("xstream: decode stream error: %w", err)
	}
	if se.Err == "" {
		return se, fmt.Errorf("xstream: stream error without a condition")
	}
	return se, nil
}
