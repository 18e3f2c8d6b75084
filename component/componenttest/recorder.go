package componenttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/component"
)

// Recorder calls a component handler as a live link would, without any
// network, and records what it answers and sends: the
// httptest.ResponseRecorder of this library. Each call runs a real
// component.Session over an in-memory pipe (net.Pipe) against a server of
// this package, sends the request through it, and returns once the reply
// has come back; the handler's ctx is the session's, so
// component.SessionFromContext(ctx) works in it, and its Send and SendIQ
// go to the recording. Everything the call started is stopped and waited
// for before it returns.
//
// What a handler sends after it returned (from a goroutine of its own) is
// not recorded: the session is closed by then and such sends fail. A
// handler that ignores its ctx once the call is over holds the call until
// Tuning.CloseTimeout, as it would hold Session.Close.
//
// Handlers should send with component.SessionFromContext(ctx) rather than
// through a *callbridge.Bridge they hold: the session is the link that
// carried the request, and the one a Recorder can give them. A handler
// that does use Bridge.Send is tested with the whole bridge instead:
// callbridgetest's Lab runs it (StartBridge) on loopback, and Lab.Inbox
// shows what it sent each web user.
//
// The zero value is ready to use, for the component cb1.example.com.
// A Recorder is only configuration: it may be shared by concurrent calls.
type Recorder struct {
	// Domain is the XMPP domain, Name the component's name; the component
	// address is Name.Domain. Defaults DefaultDomain and "cb1".
	Domain, Name string
	// AnswerIQs answers the IQ get and set the handler sends (SendIQ), as
	// Server.AnswerIQs does. When nil, XEP-0199 pings and IQs to the server
	// domain are answered as the server always does, and IQs to anyone
	// else are never answered: a handler waiting for one waits until the
	// call's ctx ends.
	AnswerIQs IQFunc
	// Tuning configures the session, as component.Config.Tuning (its
	// Workers, timeouts, OrderPerSender...); zero means the defaults.
	component.Tuning
}

// Recording is what a handler did with one request.
type Recording struct {
	// Reply is the IQ result or error the session sent for the request,
	// as the server received it.
	Reply Stanza
	// Sent are the other stanzas the session sent while the handler ran,
	// in the order they left: the handler's Send and SendIQ requests
	// (answered or not), but not the session's own keepalives and pings.
	Sent []Stanza
}

// Err returns the stanza error the request was answered with (a
// stanza.Error, errors.Is-comparable by condition), or nil when it was
// answered with a result.
func (r *Recording) Err() error {
	if r.Reply.Type != "error" {
		return nil
	}
	var iq struct {
		Error *stanza.Error `xml:"error"`
	}
	if err := xml.Unmarshal(r.Reply.Raw, &iq); err != nil || iq.Error == nil || iq.Error.Condition == "" {
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}
	}
	return *iq.Error
}

// JoinResult decodes the reply to a join request: the result, or the
// refusal as a stanza.Error (component.ParseJoinResponse).
func (r *Recording) JoinResult() (*component.JoinResult, error) {
	return component.ParseJoinResponse(r.Reply.Raw)
}

// Join calls h with req as the session would on a join request routed by
// the XMPP server (From defaults to guest@<Domain>/web, ID to a fresh
// one), and records its answer and what it sent. The error is about the
// recording (ctx ended before the reply, say), never the handler's
// answer, which Recording.JoinResult and Err give.
func (r *Recorder) Join(ctx context.Context, h component.JoinHandler, req *component.JoinRequest) (*Recording, error) {
	if h == nil || req == nil {
		return nil, fmt.Errorf("%w: nil handler or request", ErrBadStanza)
	}
	mux := component.NewMux()
	mux.HandleJoin(h)
	domain, addr := r.names()
	jr := *req
	if jr.From.Domainpart() == "" {
		jr.From = jid.MustParse("guest@" + domain + "/web")
	}
	if jr.ID == "" {
		jr.ID = "recorder-join"
	}
	return r.record(ctx, mux, component.MarshalJoinIQ(&jr, jid.MustParse(addr)))
}

// IQ calls h with the IQ get or set raw (one complete <iq> with an id,
// 'from' and 'to' as the XMPP server would route it; its payload's name
// and namespace select h) and records the answer and what h sent.
func (r *Recorder) IQ(ctx context.Context, h component.IQHandler, raw []byte) (*Recording, error) {
	el, err := parseOne(raw)
	if err != nil {
		return nil, err
	}
	name, ns, ok := el.FirstChild()
	if h == nil || !ok || string(el.Name()) != "iq" {
		return nil, fmt.Errorf("%w: nil handler, or not an IQ with a payload", ErrBadStanza)
	}
	mux := component.NewMux()
	mux.HandleIQ(string(name), string(ns), h)
	return r.record(ctx, mux, raw)
}

func (r *Recorder) names() (domain, addr string) {
	domain, name := r.Domain, r.Name
	if domain == "" {
		domain = DefaultDomain
	}
	if name == "" {
		name = "cb1"
	}
	return domain, name + "." + domain
}

// record runs a server and a session over a pipe, sends raw and waits
// for its reply; it closes both before returning.
func (r *Recorder) record(ctx context.Context, mux *component.Mux, raw []byte) (rec *Recording, err error) {
	domain, addr := r.names()
	var b [16]byte
	_, _ = rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	srv, err := newServer(Options{
		Domain: domain, Plain: true,
		Components: map[string]string{addr: secret},
		MaxRawLog:  -1, IdleTimeout: -1,
	})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	srv.setHooks(func(h *hooks) { h.answer, h.record = r.AnswerIQs, true })
	serverSide, componentSide := net.Pipe()
	if srv.adopt(serverSide, time.Now()) == nil {
		_ = componentSide.Close()
		return nil, ErrServerClosed
	}
	sess, err := component.NewSession(ctx, componentSide, component.Config{
		Domain: domain, Address: addr, Secret: component.NewSecret(secret),
		Handler: mux, Tuning: r.Tuning,
	})
	if err != nil {
		_ = componentSide.Close()
		return nil, fmt.Errorf("componenttest: recorder session: %w", err)
	}
	defer sess.Close()
	conn, err := srv.WaitConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	reply, err := conn.SendIQ(ctx, raw)
	if err != nil {
		return nil, err
	}
	el, err := parseOne(reply)
	if err != nil {
		return nil, err
	}
	// The reader queued every stanza that left before the reply when it
	// read them, and it read them before the reply.
	return &Recording{Reply: stanzaOf(&el), Sent: conn.queue.take()}, nil
}
