package xstream

import (
	"errors"

	"mellium.im/xmpp/stanza"
)

// nsStanzas is the namespace of stanza error conditions.
const nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"

// AppendStanzaError appends an <error/> child for se (RFC 6120 8.3): type
// cancel and undefined-condition when se leaves them empty, and its
// default text, if any, escaped.
func AppendStanzaError(dst []byte, se stanza.Error) []byte {
	typ, cond := se.Type, se.Condition
	if typ == "" {
		typ = stanza.Cancel
	}
	if cond == "" {
		cond = stanza.UndefinedCondition
	}
	dst = append(dst, "<error"...)
	dst = AppendAttr(dst, "type", string(typ))
	dst = append(dst, "><"...)
	dst = AppendEscaped(dst, string(cond))
	dst = append(dst, " xmlns='"+nsStanzas+"'/>"...)
	if t := se.Text[""]; t != "" {
		dst = append(dst, "<text xmlns='"+nsStanzas+"'>"...)
		dst = AppendEscaped(dst, t)
		dst = append(dst, "</text>"...)
	}
	return append(dst, "</error>"...)
}

// StanzaErrorIn returns the stanza error in err's chain, as a value or a
// pointer, if there is one.
func StanzaErrorIn(err error) (stanza.Error, bool) {
	var se stanza.Error
	if errors.As(err, &se) {
		return se, true
	}
	var sp *stanza.Error
	if errors.As(err, &sp) && sp != nil {
		return *sp, true
	}
	return stanza.Error{}, false
}
