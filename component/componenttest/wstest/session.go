package wstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/internal/xstream"
)

// Where a session stands in the login.
const (
	stOpen   = iota // waiting for the first <open/>
	stAuth          // features sent: waiting for <auth/>
	stReopen        // authenticated: waiting for the stream restart
	stBind          // waiting for the bind IQ
	stReady         // bound: routing stanzas
)

// maxAuthFailures bounds the failed <auth/> attempts of one session.
const maxAuthFailures = 3

// session is one user's WebSocket connection. The HTTP handler's goroutine
// runs it (reading); it owns one writer goroutine and up to
// MaxPendingIQs goroutines waiting for a component's answer, and waits for
// all of them before it returns.
type session struct {
	s      *Server
	n      uint64
	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	stop   chan struct{} // closed by run: the writer drains out and exits
	wdone  chan struct{} // closed by the writer
	iqs    sync.WaitGroup
	iqSem  chan struct{}

	// reader goroutine only
	state        int
	authFailures int
	iqSeq        uint64
	jid          string // full JID once bound
}

// ending is how a session ends: with a stream error (cond), with the
// close the user asked for (closeFrame), or silently (the peer is gone).
type ending struct {
	cond, text string
	closeFrame bool
}

func (ss *session) run(c *websocket.Conn) {
	o := &ss.s.opts
	ss.c = c
	ss.ctx, ss.cancel = context.WithCancel(ss.s.ctx)
	defer ss.cancel()
	ss.out = make(chan []byte, o.MaxQueued)
	ss.stop = make(chan struct{})
	ss.wdone = make(chan struct{})
	ss.iqSem = make(chan struct{}, o.MaxPendingIQs)
	go ss.writeLoop()

	end := ss.readLoop()

	if ss.jid != "" {
		ss.s.unbind(ss)
	}
	close(ss.stop)
	<-ss.wdone
	ss.cancel() // releases the IQs still waiting
	ss.iqs.Wait()
	if ss.s.ctx.Err() != nil || (end.cond == "" && !end.closeFrame) {
		_ = c.CloseNow()
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), o.WriteTimeout)
	defer cancel()
	if end.cond != "" {
		ss.s.opts.Logf("wstest: session %d: stream error %s %s", ss.n, end.cond, end.text)
		_ = c.Write(wctx, websocket.MessageText, streamError(end.cond, end.text))
	}
	if c.Write(wctx, websocket.MessageText, closeFrame) != nil {
		_ = c.CloseNow()
		return
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}

// writeLoop writes the queued frames until stop (after draining what is
// queued) or until the session's ctx ends.
func (ss *session) writeLoop() {
	defer close(ss.wdone)
	for {
		select {
		case b := <-ss.out:
			if ss.write(b) != nil {
				ss.cancel()
				return
			}
		case <-ss.stop:
			for {
				select {
				case b := <-ss.out:
					if ss.write(b) != nil {
						return
					}
				default:
					return
				}
			}
		case <-ss.ctx.Done():
			return
		}
	}
}

func (ss *session) write(b []byte) error {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.opts.WriteTimeout)
	defer cancel()
	return ss.c.Write(ctx, websocket.MessageText, b)
}

// enqueue queues a frame to the user without blocking; a user whose queue
// is full does not read, and its session is ended.
func (ss *session) enqueue(b []byte) {
	select {
	case ss.out <- b:
	default:
		ss.s.opts.Logf("wstest: session %d: queue full, closing", ss.n)
		ss.cancel()
	}
}

func (ss *session) readLoop() ending {
	login := time.Now().Add(ss.s.opts.LoginTimeout)
	for {
		// Until bound, the login's deadline; then the idle timeout.
		deadline := login
		if ss.state == stReady {
			deadline = time.Now().Add(ss.s.opts.IdleTimeout)
		}
		rctx, cancel := context.WithDeadline(ss.ctx, deadline)
		typ, data, err := ss.c.Read(rctx)
		cancel()
		if err != nil {
			return ending{} // closed by the peer, too big, or ctx ended
		}
		if typ != websocket.MessageText {
			return ending{cond: "unsupported-encoding", text: "RFC 7395 frames are text frames"}
		}
		el, err := parseFrame(data)
		if err != nil {
			return ending{cond: "not-well-formed", text: "a frame must hold exactly one element"}
		}
		if el.Keepalive {
			continue
		}
		if end, done := ss.handle(&el); done {
			return end
		}
	}
}

// handle processes one element; done reports that the session must end.
func (ss *session) handle(el *xstream.Element) (end ending, done bool) {
	local, ns := string(el.Local()), el.AttrString("xmlns")
	if len(el.Prefix()) == 0 && ns == nsFraming {
		switch local {
		case "close":
			return ending{closeFrame: true}, true
		case "open":
			return ss.open(el)
		}
	}
	switch ss.state {
	case stOpen, stReopen:
		return ending{cond: "not-authorized", text: "expected <open/>"}, true
	case stAuth:
		return ss.auth(el, local, ns)
	case stBind:
		return ss.bind(el, local)
	}
	return ss.route(el)
}

func (ss *session) open(el *xstream.Element) (ending, bool) {
	if ss.state != stOpen && ss.state != stReopen {
		return ending{cond: "policy-violation", text: "<open/> after the stream restart"}, true
	}
	domain := ss.s.opts.Domain
	var b []byte
	b = append(b, "<open xmlns='"+nsFraming+"'"...)
	b = xstream.AppendAttr(b, "from", domain)
	b = xstream.AppendAttr(b, "id", randomHex(8))
	b = append(b, " version='1.0' xml:lang='en'/>"...)
	ss.enqueue(b)
	if to := el.AttrString("to"); !strings.EqualFold(to, domain) {
		return ending{cond: "host-unknown", text: "this endpoint serves " + domain}, true
	}
	if v := el.AttrString("version"); v != "1.0" {
		return ending{cond: "unsupported-version"}, true
	}
	if ss.state == stOpen {
		ss.enqueue([]byte("<stream:features xmlns:stream='" + nsStream + "'><mechanisms xmlns='" + nsSASL + "'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>"))
		ss.state = stAuth
	} else {
		ss.enqueue([]byte("<stream:features xmlns:stream='" + nsStream + "'><bind xmlns='" + nsBind + "'/></stream:features>"))
		ss.state = stBind
	}
	return ending{}, false
}

func (ss *session) auth(el *xstream.Element, local, ns string) (ending, bool) {
	if local != "auth" || ns != nsSASL {
		return ending{cond: "not-authorized", text: "log in first (SASL ANONYMOUS)"}, true
	}
	if el.AttrString("mechanism") != "ANONYMOUS" {
		ss.authFailures++
		ss.enqueue([]byte("<failure xmlns='" + nsSASL + "'><invalid-mechanism/></failure>"))
		if ss.authFailures >= maxAuthFailures {
			return ending{cond: "policy-violation", text: "too many failed logins"}, true
		}
		return ending{}, false
	}
	ss.enqueue([]byte("<success xmlns='" + nsSASL + "'/>"))
	ss.state = stReopen
	return ending{}, false
}

func (ss *session) bind(el *xstream.Element, local string) (ending, bool) {
	child, ns, _ := el.FirstChild()
	if local != "iq" || el.AttrString("type") != "set" || string(child) != "bind" || string(ns) != nsBind {
		return ending{cond: "not-authorized", text: "bind a resource first"}, true
	}
	res := childText(el.Inner(), "resource")
	if res == "" || len(res) > 256 || !validText(res) {
		res = "web-" + randomHex(4)
	}
	ss.jid = randomHex(8) + "@" + ss.s.opts.Domain + "/" + res
	ss.s.bind(ss, ss.jid)
	var b []byte
	b = append(b, "<iq xmlns='"+nsClient+"' type='result'"...)
	b = xstream.AppendAttr(b, "id", el.AttrString("id"))
	b = append(b, "><bind xmlns='"+nsBind+"'><jid>"...)
	b = xstream.AppendEscaped(b, ss.jid)
	b = append(b, "</jid></bind></iq>"...)
	ss.enqueue(b)
	ss.state = stReady
	return ending{}, false
}

// route sends a bound user's stanza where its 'to' says.
func (ss *session) route(el *xstream.Element) (ending, bool) {
	name := string(el.Name())
	if name != "iq" && name != "message" && name != "presence" {
		return ending{cond: "unsupported-stanza-type", text: "<" + name + "> is not a stanza"}, true
	}
	if ns := el.AttrString("xmlns"); ns != "" && ns != nsClient {
		return ending{cond: "invalid-namespace"}, true
	}
	if name == "presence" {
		return ending{}, false // no rosters, no rooms: nobody to tell
	}
	typ, id, to := el.AttrString("type"), el.AttrString("id"), el.AttrString("to")
	isIQ := name == "iq"
	request := isIQ && (typ == "get" || typ == "set")
	if isIQ && (id == "" || (!request && typ != "result" && typ != "error")) {
		return ending{cond: "invalid-xml", text: "an IQ needs an id and a type"}, true
	}
	// Errors are answered to requests and to messages, never to errors
	// or results.
	answerable := request || (name == "message" && typ != "error")
	refuse := func(from, typ, cond, text string) {
		if answerable {
			ss.enqueue(appendStanzaError(nil, name, id, from, ss.jid, typ, cond, text))
		}
	}
	domain := ss.s.opts.Domain
	host := domainpart(to)
	switch {
	case to == "" || strings.EqualFold(to, domain):
		if request {
			if child, ns, _ := el.FirstChild(); typ == "get" && string(child) == "ping" && string(ns) == nsPing {
				var b []byte
				b = append(b, "<iq xmlns='"+nsClient+"' type='result'"...)
				b = xstream.AppendAttr(b, "id", id)
				b = xstream.AppendAttr(b, "from", domain)
				b = xstream.AppendAttr(b, "to", ss.jid)
				ss.enqueue(append(b, "/>"...))
			} else {
				refuse(domain, "cancel", "service-unavailable", "")
			}
		}
	case strings.EqualFold(host, domain):
		peer := ss.s.lookup(to)
		if peer == nil {
			refuse(to, "cancel", "service-unavailable", "")
			break
		}
		if b, ok := rewrite(nil, el, nsClient, "from", ss.jid); ok {
			peer.enqueue(b)
		}
	default:
		conn, registered := ss.s.component(host)
		switch {
		case conn == nil && registered:
			refuse(to, "wait", "remote-server-timeout", "component unavailable")
		case conn == nil:
			refuse(to, "cancel", "remote-server-not-found", "")
		case request:
			ss.forwardIQ(el, conn, id, to)
		default:
			b, ok := rewrite(nil, el, "", "from", ss.jid)
			if !ok {
				return ending{cond: "not-well-formed"}, true
			}
			ctx, cancel := context.WithTimeout(ss.ctx, ss.s.opts.WriteTimeout)
			err := conn.Send(ctx, b)
			cancel()
			if err != nil {
				refuse(to, "wait", "remote-server-timeout", "component unavailable")
			}
		}
	}
	return ending{}, false
}

// forwardIQ sends an IQ request to a component on a goroutine of its own
// (bounded by MaxPendingIQs) and queues the answer to the user. The IQ
// travels under an id of the endpoint's, unique on the link, and comes
// back under the user's.
func (ss *session) forwardIQ(el *xstream.Element, conn *componenttest.Conn, id, to string) {
	select {
	case ss.iqSem <- struct{}{}:
	default:
		ss.enqueue(appendStanzaError(nil, "iq", id, to, ss.jid, "wait", "resource-constraint", "too many IQs in flight"))
		return
	}
	ss.iqSeq++
	b, ok := rewrite(nil, el, "", "from", ss.jid, "id", fmt.Sprintf("wstest-%d-%d", ss.n, ss.iqSeq))
	if !ok {
		<-ss.iqSem
		ss.enqueue(appendStanzaError(nil, "iq", id, to, ss.jid, "modify", "bad-request", ""))
		return
	}
	ss.iqs.Add(1)
	go func() {
		defer ss.iqs.Done()
		defer func() { <-ss.iqSem }()
		ctx, cancel := context.WithTimeout(ss.ctx, ss.s.opts.IQTimeout)
		raw, err := conn.SendIQ(ctx, b)
		cancel()
		if ss.ctx.Err() != nil {
			return
		}
		if err == nil {
			if rel, perr := parseFrame(raw); perr == nil {
				if out, ok := rewrite(nil, &rel, nsClient, "id", id, "to", ss.jid); ok {
					ss.enqueue(out)
					return
				}
			}
			err = errors.New("unparsable answer")
		}
		ss.s.opts.Logf("wstest: session %d: IQ to %s: %v", ss.n, to, err)
		if errors.Is(err, componenttest.ErrBadStanza) {
			ss.enqueue(appendStanzaError(nil, "iq", id, to, ss.jid, "modify", "bad-request", ""))
			return
		}
		ss.enqueue(appendStanzaError(nil, "iq", id, to, ss.jid, "wait", "remote-server-timeout", "component unavailable"))
	}()
}

// domainpart returns the domain of a JID string (no validation).
func domainpart(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.LastIndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	return j
}

func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '/' || r == '@' {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
