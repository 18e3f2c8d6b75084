package componenttest

import (
	"bytes"
	"context"
	"sync"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/xstream"
)

// IQFunc answers an IQ get or set that the component sent, as the user or
// service it is addressed to would. It returns the payload of the result
// (well-formed XML, nil for an empty result) or an error: a stanza.Error
// in the error's chain is sent as it is; any other error is sent as
// internal-server-error. It is the mirror of component.IQHandler.
//
// It runs on the connection's reader goroutine: the link does not move
// while it runs, as with a slow server, so it should return promptly.
type IQFunc func(iq Stanza) (payload []byte, err error)

// hooks are what the test asked the server to do with the component's
// stanzas besides the defaults; replaced whole, read without a lock.
type hooks struct {
	answer IQFunc
	users  *inboxes
	record bool // queue every IQ request for Next, answered or not (Recorder)
}

func (s *Server) setHooks(f func(h *hooks)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h hooks
	if cur := s.hooks.Load(); cur != nil {
		h = *cur
	}
	f(&h)
	s.hooks.Store(&h)
}

// AnswerIQs makes the server answer every IQ get or set the component
// sends from now on with f, whoever it is addressed to (a web user, the
// server domain), except XEP-0199 pings to the server domain, which the
// server keeps answering itself. f's answers are sent from the IQ's 'to'
// (the server domain when it has none) to its 'from'. nil restores the
// default: IQs to the server domain are answered service-unavailable and
// the rest go to Conn.Next (or an Inbox), unanswered.
func (s *Server) AnswerIQs(f IQFunc) {
	s.setHooks(func(h *hooks) { h.answer = f })
}

// answerIQ answers an IQ get or set with the test's IQFunc, reporting
// whether there was one to do it.
func (c *Conn) answerIQ(el *xstream.Element, toServer bool) bool {
	h := c.s.hooks.Load()
	if h == nil || (toServer && isPing(el)) {
		return false
	}
	if h.answer == nil {
		if h.record && toServer {
			c.enqueue(el) // answered by the server, shown all the same
		}
		return false
	}
	if h.record {
		c.enqueue(el)
	}
	st := stanzaOf(el)
	payload, err := h.answer(st)
	from := st.To
	if from == "" {
		from = c.s.opts.Domain
	}
	_ = c.write(context.Background(), func(b []byte) []byte {
		if err != nil {
			b = append(b, "<iq type='error'"...)
		} else {
			b = append(b, "<iq type='result'"...)
		}
		b = xstream.AppendAttr(b, "id", st.ID)
		b = xstream.AppendAttr(b, "from", from)
		b = xstream.AppendAttr(b, "to", st.From)
		switch {
		case err != nil:
			b = append(b, '>')
			b = xstream.AppendStanzaError(b, stanzaErrorOf(err))
		case len(payload) > 0:
			b = append(b, '>')
			b = append(b, payload...)
		default:
			return append(b, "/>"...)
		}
		return append(b, "</iq>"...)
	})
	c.stanzasOut.Add(1)
	return true
}

func isPing(el *xstream.Element) bool {
	if typ, _ := el.Attr("type"); string(typ) != "get" {
		return false
	}
	name, ns, ok := el.FirstChild()
	if !ok {
		return false
	}
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	return string(name) == "ping" && string(ns) == nsPing
}

func stanzaOf(el *xstream.Element) Stanza {
	return Stanza{
		Name: string(el.Name()),
		Type: el.AttrString("type"),
		ID:   el.AttrString("id"),
		From: el.AttrString("from"),
		To:   el.AttrString("to"),
		Raw:  bytes.Clone(el.Raw),
	}
}

// stanzaErrorOf is the stanza error an IQFunc's error is sent as.
func stanzaErrorOf(err error) stanza.Error {
	if se, ok := xstream.StanzaErrorIn(err); ok {
		return se
	}
	return stanza.Error{Type: stanza.Cancel, Condition: stanza.InternalServerError}
}

// Inbox holds what the component sent to one web user, in the order the
// server received it: messages, presences, IQ requests (unanswered unless
// AnswerIQs is set, which then takes them) and IQ results or errors that
// were not replies to the server's own requests. Get one with Lab.Inbox.
// It keeps everything until read. Its methods are safe for concurrent
// use.
type Inbox struct {
	user   jid.JID
	closed <-chan struct{}
	q      *stanzaQueue
}

// User returns the address whose stanzas the inbox holds.
func (in *Inbox) User() jid.JID { return in.user }

// Next returns the oldest stanza the inbox holds, waiting for one until
// ctx ends. Once the lab is closed and the inbox is empty it returns
// ErrServerClosed.
func (in *Inbox) Next(ctx context.Context) (Stanza, error) {
	return in.q.next(ctx, in.closed, ErrServerClosed)
}

func (in *Inbox) push(st Stanza) { in.q.push(st) }

// inboxes are a lab's inboxes, shared by its servers: a web user gets what
// the component sends them on any of them, as on a cluster.
type inboxes struct {
	closed chan struct{}
	mu     sync.Mutex
	m      map[string]*Inbox // by full or bare JID, as asked
}

func newInboxes() *inboxes {
	return &inboxes{closed: make(chan struct{}), m: map[string]*Inbox{}}
}

func (u *inboxes) get(user jid.JID) *Inbox {
	u.mu.Lock()
	defer u.mu.Unlock()
	k := user.String()
	in, ok := u.m[k]
	if !ok {
		in = &Inbox{user: user, closed: u.closed, q: newStanzaQueue(0)}
		u.m[k] = in
	}
	return in
}

// route puts a stanza addressed to a user with an inbox (their full JID,
// or their bare JID when that has the inbox) there, reporting whether it
// did.
func (u *inboxes) route(el *xstream.Element) bool {
	to, ok := el.Attr("to")
	if !ok || len(to) == 0 {
		return false
	}
	j, err := jid.Parse(el.AttrString("to"))
	if err != nil {
		return false
	}
	u.mu.Lock()
	in, ok := u.m[j.String()]
	if !ok {
		in, ok = u.m[j.Bare().String()]
	}
	u.mu.Unlock()
	if !ok {
		return false
	}
	in.push(stanzaOf(el))
	return true
}

// toInbox routes el to a user's inbox, reporting whether it did.
func (c *Conn) toInbox(el *xstream.Element) bool {
	h := c.s.hooks.Load()
	return h != nil && h.users != nil && h.users.route(el)
}
