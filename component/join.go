package component

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"

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
		var p joinXML
		if err := iq.DecodePayload(&p); err != nil || p.Call == "" {
			return nil, errJoinBadRequest
		}
		res, err := h(ctx, &JoinRequest{From: iq.From, ID: iq.ID, Call: p.Call, Passcode: p.Passcode, DisplayName: p.DisplayName})
		if err != nil || res == nil {
			return nil, err
		}
		b := append([]byte(nil), "<joined xmlns='"+NSJoin+"'"...)
		if res.Session != "" {
			b = xstream.AppendAttr(b, "session", res.Session)
		}
		return RawXML(append(b, "/>"...)), nil
	})
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
