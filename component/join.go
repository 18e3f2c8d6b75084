package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/xstream"
)

// NSJoin is the namespace of the WebRTC join request the XMPP server
// forwards to the Call Bridge. The request is an IQ set addressed to the
// component:
//
//	<iq type='set' id='...' from='guest123@example.com/webrtc' to='cb1.example.com'>
//	  <join xmlns='urn:cblink:join:0' call='CALL-OR-SPACE-ID' passcode='optional'>
//	    <display-name>Optional Display Name</display-name>
//	  </join>
//	</iq>
//
// It is accepted with an IQ result, optionally carrying
// <joined xmlns='urn:cblink:join:0' session='...'/>, or refused with a
// stanza error: forbidden for a wrong passcode (ErrJoinForbidden),
// item-not-found for an unknown call (ErrJoinUnknownCall), bad-request
// when call is missing (answered without calling the handler).
const NSJoin = "urn:cblink:join:0"

// Errors a JoinHandler returns to refuse a join request.
var (
	ErrJoinForbidden   = stanza.Error{Type: stanza.Auth, Condition: stanza.Forbidden}
	ErrJoinUnknownCall = stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	errJoinBadRequest  = stanza.Error{Type: stanza.Modify, Condition: stanza.BadRequest}
)

// ErrRetryLater is the answer that says "not now, try again": the stanza
// error service-unavailable, type wait. A handler returns it when a
// backend it needs is down for a while; the session answers every request
// a stop cuts short with it (see IQHandler).
var ErrRetryLater = stanza.Error{Type: stanza.Wait, Condition: stanza.ServiceUnavailable}

// JoinRequest is a decoded join request.
type JoinRequest struct {
	From        jid.JID // the web user's address
	ID          string  // the IQ id
	Call        string  // call or space id; never empty in a handler
	Passcode    string  // optional
	DisplayName string  // optional
}

// JoinResult accepts a join request. Session, when set, is sent back in
// <joined session='...'/>.
type JoinResult struct {
	Session string
}

// JoinHandler decides on a join request: return a result (nil for an empty
// IQ result) to accept, or an error to refuse (ErrJoinForbidden,
// ErrJoinUnknownCall or any stanza.Error; other errors become
// internal-server-error). It runs like an IQHandler.
type JoinHandler func(ctx context.Context, req *JoinRequest) (*JoinResult, error)

// joinXML is the wire form of the join payload.
type joinXML struct {
	XMLName     xml.Name `xml:"urn:cblink:join:0 join"`
	Call        string   `xml:"call,attr"`
	Passcode    string   `xml:"passcode,attr,omitempty"`
	DisplayName string   `xml:"urn:cblink:join:0 display-name,omitempty"`
}

// HandleJoin registers h for join requests (payload join in NSJoin); it
// panics like HandleIQ.
func (m *Mux) HandleJoin(h JoinHandler) {
	if h == nil {
		panic("component: Mux.HandleJoin with a nil handler")
	}
	m.HandleIQ("join", NSJoin, func(ctx context.Context, iq *Stanza) (any, error) {
		if iq.Type != string(stanza.SetIQ) {
			return nil, errJoinBadRequest
		}
		p, ok := parseJoinFast(iq.Raw)
		if !ok {
			// Unusual but valid XML (prefixes, CDATA, comments, extra
			// children): let encoding/xml decide.
			var slow joinXML
			if err := iq.DecodePayload(&slow); err != nil {
				return nil, errJoinBadRequest
			}
			p = slow
		}
		if p.Call == "" {
			return nil, errJoinBadRequest
		}
		req := iq.join // allocated with the stanza
		if req == nil {
			req = new(JoinRequest)
		}
		*req = JoinRequest{From: iq.From, ID: iq.ID, Call: p.Call, Passcode: p.Passcode, DisplayName: p.DisplayName}
		res, err := h(ctx, req)
		if err != nil || res == nil {
			return nil, err
		}
		return joined{res}, nil
	})
}

// joined is the payload accepting a join, <joined/>, with Session when
// set. It appends itself to the reply (no buffer of its own), and, one
// pointer wide, it is stored in an interface without an allocation.
type joined struct{ r *JoinResult }

func (j joined) appendXML(dst []byte) []byte {
	dst = append(dst, "<joined xmlns='"+NSJoin+"'"...)
	if j.r.Session != "" {
		dst = xstream.AppendAttr(dst, "session", j.r.Session)
	}
	return append(dst, "/>"...)
}

// AppendJoinPayload appends the <join/> element of req (addresses and id
// are not part of it).
func AppendJoinPayload(dst []byte, req *JoinRequest) []byte {
	dst = append(dst, "<join xmlns='"+NSJoin+"'"...)
	dst = xstream.AppendAttr(dst, "call", req.Call)
	if req.Passcode != "" {
		dst = xstream.AppendAttr(dst, "passcode", req.Passcode)
	}
	if req.DisplayName == "" {
		return append(dst, "/>"...)
	}
	dst = append(dst, "><display-name>"...)
	dst = xstream.AppendEscaped(dst, req.DisplayName)
	return append(dst, "</display-name></join>"...)
}

// MarshalJoinIQ encodes req as the IQ set the XMPP server forwards, from
// req.From (omitted when zero) with id req.ID to the component address to.
// Test servers and demos use it to play the web side.
func MarshalJoinIQ(req *JoinRequest, to jid.JID) []byte {
	var from, toStr string
	if req.From.Domainpart() != "" {
		from = req.From.String()
	}
	if to.Domainpart() != "" {
		toStr = to.String()
	}
	return appendStanza(nil, KindIQ, "set", req.ID, from, toStr, AppendJoinPayload(nil, req))
}

// ParseJoinResponse decodes the reply to a join request (a whole <iq/>
// element): the JoinResult of an accepted request (Session empty when the
// result carried no <joined/>), or the stanza.Error of a refused one.
func ParseJoinResponse(raw []byte) (*JoinResult, error) {
	var iq struct {
		Type   string `xml:"type,attr"`
		Joined *struct {
			Session string `xml:"session,attr"`
		} `xml:"urn:cblink:join:0 joined"`
		Error *stanza.Error `xml:"error"`
	}
	if err := xml.Unmarshal(raw, &iq); err != nil {
		return nil, fmt.Errorf("component: decode join response: %w", err)
	}
	switch iq.Type {
	case "result":
		res := &JoinResult{}
		if iq.Joined != nil {
			res.Session = iq.Joined.Session
		}
		return res, nil
	case "error":
		if iq.Error == nil || iq.Error.Condition == "" {
			return nil, stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}
		}
		return nil, *iq.Error
	}
	return nil, errors.New("component: join response is neither result nor error")
}

// parseJoinFast decodes the join payload of the common shape without
// encoding/xml (which costs most of a join round trip). It reports false
// for anything it does not fully understand; the caller then falls back to
// encoding/xml, so both paths give the same answer.
func parseJoinFast(raw []byte) (p joinXML, ok bool) {
	end := xstream.TagEnd(raw)
	if end <= 0 || raw[end-2] == '/' {
		return p, false
	}
	rest := trimSpace(raw[end:])
	if !bytes.HasPrefix(rest, []byte("<join")) || len(rest) < 6 || (!xstream.IsSpace(rest[5]) && rest[5] != '>' && rest[5] != '/') {
		return p, false
	}
	jend := xstream.TagEnd(rest)
	if jend <= 0 {
		return p, false
	}
	tag := rest[5:jend]
	selfClosing := len(tag) >= 2 && tag[len(tag)-2] == '/'
	good, nsOK := true, false
	var call, passcode, displayName []byte // as received
	var seen [3]bool                       // xmlns, call, passcode
	left := xstream.EachAttr(tag, func(name, val []byte) bool {
		if bytes.ContainsAny(val, "\r\n\t<") || !validText(val) {
			good = false
			return false
		}
		i := -1
		switch string(name) {
		case "xmlns":
			i, nsOK = 0, string(val) == NSJoin
		case "call":
			i, call = 1, val
		case "passcode":
			i, passcode = 2, val
		}
		// Anything else, or an attribute twice: let encoding/xml judge it.
		if i < 0 || seen[i] {
			good = false
		} else {
			seen[i] = true
		}
		return good
	})
	if !good || !nsOK || (string(left) != ">" && string(left) != "/>") {
		return p, false
	}
	rest = rest[jend:]
	if !selfClosing {
		rest = trimSpace(rest)
		const open, closeTag = "<display-name>", "</display-name>"
		if bytes.HasPrefix(rest, []byte(open)) {
			rest = rest[len(open):]
			i := bytes.IndexByte(rest, '<')
			if i < 0 || !bytes.HasPrefix(rest[i:], []byte(closeTag)) || bytes.IndexByte(rest[:i], '\r') >= 0 ||
				bytes.Contains(rest[:i], []byte("]]>")) || !validText(rest[:i]) {
				return p, false
			}
			displayName = rest[:i]
			rest = trimSpace(rest[i+len(closeTag):])
		}
		if !bytes.HasPrefix(rest, []byte("</join>")) {
			return p, false
		}
		rest = rest[len("</join>"):]
	}
	// Nothing but whitespace may follow before the IQ's end tag.
	if !bytes.HasPrefix(trimSpace(rest), []byte("</iq>")) {
		return p, false
	}
	return unescapeJoin(call, passcode, displayName)
}

// unescapeJoin unescapes the join's values; when none holds a reference
// (the usual case) they share one string.
func unescapeJoin(call, passcode, displayName []byte) (p joinXML, ok bool) {
	vals := [...][]byte{call, passcode, displayName}
	var out [len(vals)]string
	if bytes.IndexByte(call, '&') < 0 && bytes.IndexByte(passcode, '&') < 0 && bytes.IndexByte(displayName, '&') < 0 {
		var buf [256]byte
		shared := string(append(append(append(buf[:0], call...), passcode...), displayName...))
		for i, v := range vals {
			out[i], shared = shared[:len(v)], shared[len(v):]
		}
	} else {
		for i, v := range vals {
			var err error
			if out[i], err = xstream.Unescape(v); err != nil {
				return p, false
			}
		}
	}
	return joinXML{Call: out[0], Passcode: out[1], DisplayName: out[2]}, true
}

// validText reports whether b is UTF-8 made of characters XML allows.
func validText(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			return false
		}
		if !xstream.IsXMLChar(r) {
			return false
		}
		b = b[n:]
	}
	return true
}

// trimSpace drops leading XML white space.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && xstream.IsSpace(b[0]) {
		b = b[1:]
	}
	return b
}
