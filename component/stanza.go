package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/xstream"
)

// Kind is the kind of a stanza.
type Kind uint8

// Stanza kinds.
const (
	KindMessage Kind = iota + 1
	KindPresence
	KindIQ
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindPresence:
		return "presence"
	case KindIQ:
		return "iq"
	}
	return "unknown"
}

// Stanza is an incoming stanza, copied out of the read buffer: a handler
// owns it and may keep it. Raw holds the element exactly as received;
// decode what you need from it with Decode or DecodePayload (encoding/xml).
type Stanza struct {
	Kind Kind
	// Type is the type attribute ("get", "set", "result", "error",
	// "chat", "unavailable", ...), "" when absent.
	Type string
	// ID is the id attribute.
	ID string
	// From and To are the addresses; zero when absent.
	From, To jid.JID
	// Raw is the whole element, from '<' to its end tag.
	Raw []byte

	fromRaw, toRaw         string // as received (unescaped), for replies
	payloadName, payloadNS string
	join                   *JoinRequest // room for HandleJoin's request, if any
}

// Payload returns the name and namespace of the first child element, or
// empty strings when there is none.
func (s *Stanza) Payload() (name, ns string) { return s.payloadName, s.payloadNS }

// Decode unmarshals the whole stanza into v with encoding/xml.
func (s *Stanza) Decode(v any) error { return xml.Unmarshal(s.Raw, v) }

// DecodePayload unmarshals the first child element into v with
// encoding/xml. It returns io.EOF when the stanza has no child element.
func (s *Stanza) DecodePayload(v any) error {
	d := xml.NewDecoder(bytes.NewReader(s.Raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 1 {
				return d.DecodeElement(v, &t)
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				return io.EOF
			}
		}
	}
}

// StanzaError returns the stanza error carried by a stanza of type
// "error", and whether there was one.
func (s *Stanza) StanzaError() (stanza.Error, bool) {
	if s.Type != "error" {
		return stanza.Error{}, false
	}
	d := xml.NewDecoder(bytes.NewReader(s.Raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}, true
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 1 && t.Name.Local == "error" {
				var se stanza.Error
				if err := d.DecodeElement(&se, &t); err != nil || se.Condition == "" {
					return stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}, true
				}
				return se, true
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

// RawXML is already-encoded XML used as a stanza payload. It is copied to
// the wire as is, so it must be well-formed and come from an encoder, never
// from string formatting of untrusted values.
type RawXML []byte

// Message is an outgoing message stanza.
type Message struct {
	ID   string
	Type stanza.MessageType
	// From defaults to the component address; it must be the component
	// address or a JID whose domainpart is the component address.
	From, To jid.JID
	// Payload is the content: nil, RawXML, or a value encoding/xml can
	// marshal (a struct, an xml.Marshaler, or a slice of them).
	Payload any
}

// Presence is an outgoing presence stanza; fields as in Message.
type Presence struct {
	ID       string
	Type     stanza.PresenceType
	From, To jid.JID
	Payload  any
}

// IQ is an outgoing IQ stanza; fields as in Message. To defaults to the
// server domain in SendIQ.
type IQ struct {
	ID       string
	Type     stanza.IQType
	From, To jid.JID
	Payload  any
}

// Outgoing is a stanza that Session.Send accepts: Message, Presence or IQ.
type Outgoing interface {
	header() (k Kind, typ, id string, from, to jid.JID, payload any)
}

func (m Message) header() (Kind, string, string, jid.JID, jid.JID, any) {
	return KindMessage, string(m.Type), m.ID, m.From, m.To, m.Payload
}

func (p Presence) header() (Kind, string, string, jid.JID, jid.JID, any) {
	return KindPresence, string(p.Type), p.ID, p.From, p.To, p.Payload
}

func (q IQ) header() (Kind, string, string, jid.JID, jid.JID, any) {
	return KindIQ, string(q.Type), q.ID, q.From, q.To, q.Payload
}

// appender is a payload that appends its own XML to a stanza being
// encoded, with no buffer of its own (HandleJoin's answer).
type appender interface{ appendXML(dst []byte) []byte }

// encodePayload turns a payload into bytes, off the writer's lock.
func encodePayload(p any) ([]byte, error) {
	switch v := p.(type) {
	case nil:
		return nil, nil
	case RawXML:
		return v, nil
	case appender:
		return v.appendXML(nil), nil
	default:
		b, err := xml.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("component: encode payload: %w", err)
		}
		return b, nil
	}
}

// appendStanza encodes a stanza; attribute values are escaped.
func appendStanza(dst []byte, k Kind, typ, id, from, to string, payload []byte) []byte {
	dst = appendStanzaHead(dst, k, typ, id, from, to)
	if len(payload) == 0 {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	dst = append(dst, payload...)
	return appendStanzaEnd(dst, k)
}

// appendStanzaHead appends a stanza's start tag without its closing '>'.
func appendStanzaHead(dst []byte, k Kind, typ, id, from, to string) []byte {
	name := k.String()
	dst = append(dst, '<')
	dst = append(dst, name...)
	if typ != "" {
		dst = xstream.AppendAttr(dst, "type", typ)
	}
	if id != "" {
		dst = xstream.AppendAttr(dst, "id", id)
	}
	if from != "" {
		dst = xstream.AppendAttr(dst, "from", from)
	}
	if to != "" {
		dst = xstream.AppendAttr(dst, "to", to)
	}
	return dst
}

// appendStanzaEnd appends a stanza's end tag.
func appendStanzaEnd(dst []byte, k Kind) []byte {
	dst = append(dst, "</"...)
	dst = append(dst, k.String()...)
	return append(dst, '>')
}

// appendRawAttr appends an attribute whose value is still escaped as
// received. A value that came in double quotes may hold a bare
// apostrophe; such values are re-escaped.
func appendRawAttr(dst []byte, name string, raw []byte) []byte {
	if bytes.IndexByte(raw, '\'') < 0 {
		dst = append(dst, ' ')
		dst = append(dst, name...)
		dst = append(dst, '=', '\'')
		dst = append(dst, raw...)
		return append(dst, '\'')
	}
	v, err := xstream.Unescape(raw)
	if err != nil {
		v = ""
	}
	return xstream.AppendAttr(dst, name, v)
}

// errorFromHandler picks the stanza error a handler's error is answered
// with: a stanza.Error in the chain keeps its condition; context.Canceled
// or context.DeadlineExceeded (a backend the handler gave up on) is
// service-unavailable, type wait, as for a request cut by a stop;
// anything else is an internal-server-error without text (the text may
// be private).
func errorFromHandler(err error) stanza.Error {
	if se, ok := xstream.StanzaErrorIn(err); ok {
		return se
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errClosing
	}
	return stanza.Error{Type: stanza.Cancel, Condition: stanza.InternalServerError}
}

// rawAttrs are the routing attributes of a stanza, still escaped.
type rawAttrs struct{ typ, id, from, to []byte }

// scanAttrs reads the routing attributes of a start tag in one pass (the
// reader's hot path; xstream's Attr would scan the tag once per name).
func scanAttrs(el *xstream.Element) (a rawAttrs) {
	xstream.EachAttr(el.StartTag()[1+len(el.Name()):], func(name, val []byte) bool {
		switch string(name) {
		case "type":
			a.typ = val
		case "id":
			a.id = val
		case "from":
			a.from = val
		case "to":
			a.to = val
		}
		return true
	})
	return a
}

// domainOf returns the domainpart of a raw JID (no unescaping: a domain
// holds no XML-special characters).
func domainOf[T ~string | ~[]byte](raw T) T {
	for i := 0; i < len(raw); i++ {
		if raw[i] == '/' {
			raw = raw[:i]
			break
		}
	}
	for i := len(raw) - 1; i >= 0; i-- {
		if raw[i] == '@' {
			raw = raw[i+1:]
			break
		}
	}
	return raw
}

// parseAddrs parses From and To. It is costly (PRECIS), so it runs off the
// reader goroutine. Unparsable addresses stay zero.
func (st *Stanza) parseAddrs(self *settings) {
	if st.fromRaw != "" {
		st.From, _ = jid.Parse(st.fromRaw)
	}
	switch {
	case st.toRaw == self.addrStr:
		st.To = self.addr // the usual case, without PRECIS
	case st.toRaw != "":
		st.To, _ = jid.Parse(st.toRaw)
	}
}
