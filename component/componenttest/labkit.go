package componenttest

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/component"
)

// Inbox returns the inbox of a web user: from now on, what the component
// sends to user through any of the lab's servers goes there rather than to
// Conn.Next. A bare JID (alice@example.com) gets what is sent to any of its
// resources that has no inbox of its own; a full JID only what is sent to
// it. Calls with the same JID return the same Inbox.
func (l *Lab) Inbox(user jid.JID) *Inbox { return l.users.get(user) }

// AnswerIQs makes every server of the lab answer the IQ get and set the
// component sends with f (see Server.AnswerIQs); nil restores the default.
func (l *Lab) AnswerIQs(f IQFunc) {
	for _, s := range l.Servers {
		s.AnswerIQs(f)
	}
}

// Link is the component's link to one of the lab's servers: the server's
// FQDN and its connection.
type Link struct {
	Server string
	*Conn
}

// WaitLink waits until the component has a live link that came up after
// old (authenticated later, on any of the lab's servers) and returns the
// most recent one; with a nil old, any live link will do. Use it to wait
// for a reconnection: the link that was up when the test broke it does not
// count, even while it is still live (draining, or not yet seen dead).
func (l *Lab) WaitLink(ctx context.Context, old *Conn) (Link, error) {
	var since int64 // old's authentication, in ns after its accept
	if old != nil {
		since = old.Timing().Authenticated.UnixNano()
	}
	for {
		var best Link
		var bestAt int64
		cases := make([]reflect.SelectCase, 0, len(l.Servers)+1)
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
		for i, s := range l.Servers {
			s.mu.Lock()
			for _, c := range s.conns {
				if _, live := s.live[c]; !live || c.outcome != HandshakeOK || c.name != l.Addr || c == old {
					continue
				}
				at := c.Timing().Authenticated.UnixNano()
				if at > since && (best.Conn == nil || at > bestAt) {
					best, bestAt = Link{Server: l.Names[i], Conn: c}, at
				}
			}
			closed, ch := s.closed, s.changed
			s.mu.Unlock()
			if closed {
				return Link{}, ErrServerClosed
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if best.Conn != nil {
			return best, nil
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			return Link{}, ctx.Err()
		}
	}
}

// PendingJoin is a join request sent by Lab.StartJoin whose answer may not
// have come yet. Its methods are safe for concurrent use.
type PendingJoin struct {
	// ID is the IQ id of the request; From the web user who sent it;
	// Server the FQDN of the server it went through.
	ID     string
	From   jid.JID
	Server string

	c    *Conn
	w    *waiter
	once sync.Once
	turn chan struct{} // one token: the Wait taking the reply
	done chan struct{}
	res  *component.JoinResult
	err  error
}

// Wait waits for the bridge's answer and returns it as Lab.Join does: a
// result, or the refusal as a stanza.Error. It returns ErrConnClosed when
// the link ended before an answer, and ctx's error when ctx ends first
// (the request stays pending: a later Wait can still get the answer).
func (p *PendingJoin) Wait(ctx context.Context) (*component.JoinResult, error) {
	select {
	case <-p.done: // answered: whatever ctx says
		return p.res, p.err
	default:
	}
	// One Wait at a time takes the reply, so that a concurrent one never
	// mistakes a reply being settled for none.
	select {
	case p.turn <- struct{}{}:
		defer func() { <-p.turn }()
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-p.done:
	case r := <-p.w.ch:
		p.settle(r, nil)
	case <-p.c.done:
		// Every reply read before the end was delivered.
		select {
		case r := <-p.w.ch:
			p.settle(r, nil)
		default:
			p.settle(reply{}, ErrConnClosed)
		}
	case <-ctx.Done():
		select {
		case r := <-p.w.ch: // there all the same
			p.settle(r, nil)
		default:
			return nil, ctx.Err()
		}
	}
	return p.res, p.err
}

func (p *PendingJoin) settle(r reply, err error) {
	p.once.Do(func() {
		if err == nil {
			p.res, p.err = component.ParseJoinResponse(r.raw)
		} else {
			p.err = err
		}
		close(p.done)
	})
}

// StartJoin sends a join request through the server with the given FQDN,
// as Join does, and returns without waiting for the answer: the request's
// id at once, its answer from PendingJoin.Wait. It waits (until ctx ends)
// for the component to have a link to that server.
func (l *Lab) StartJoin(ctx context.Context, server string, req *component.JoinRequest) (*PendingJoin, error) {
	s, err := l.Server(server)
	if err != nil {
		return nil, err
	}
	conn, err := s.WaitConn(ctx, l.Addr)
	if err != nil {
		return nil, err
	}
	r := *req
	if r.From.Domainpart() == "" {
		r.From = jid.MustParse("guest@" + l.Domain + "/web")
	}
	if r.ID == "" {
		r.ID = fmt.Sprintf("lab-join-%d", l.joins.Add(1))
	}
	id, w, err := conn.startIQ(ctx, component.MarshalJoinIQ(&r, jid.MustParse(l.Addr)))
	if err != nil {
		return nil, err
	}
	return &PendingJoin{ID: id, From: r.From, Server: server, c: conn, w: w, turn: make(chan struct{}, 1), done: make(chan struct{})}, nil
}
