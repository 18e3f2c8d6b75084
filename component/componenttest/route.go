package componenttest

import (
	"bytes"
	"context"
	"errors"

	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/internal/xstream"
)

func (c *Conn) loop(dec *xstream.Decoder) {
	for {
		el, err := dec.Next()
		if err != nil {
			if c.endSent.Load() && !errors.Is(err, xstream.ErrStreamEnd) {
				return // we closed; the peer went away or the drain ended
			}
			c.readFailed(err, dec)
			return
		}
		if el.Keepalive {
			continue
		}
		n := c.stanzasIn.Add(1)
		if c.handle(&el, dec) {
			return
		}
		if c.runFaults(PhaseStanzas, n, dec) {
			return
		}
	}
}

// handle routes one stanza; it reports whether the connection must end.
func (c *Conn) handle(el *xstream.Element, dec *xstream.Decoder) bool {
	name := el.Name()
	isIQ := string(name) == "iq"
	if !isIQ && string(name) != "message" && string(name) != "presence" {
		c.fail(stream.UnsupportedStanzaType, dec)
		return true
	}
	from, ok := el.Attr("from")
	if !ok || len(from) == 0 {
		c.fail(stream.ImproperAddressing, dec)
		return true
	}
	if !c.fromAllowed(from) {
		c.fail(stream.InvalidFrom, dec)
		return true
	}
	to, _ := el.Attr("to")
	toServer := len(to) == 0 || equalFold(to, c.s.opts.Domain)
	if isIQ {
		typ, _ := el.Attr("type")
		switch string(typ) {
		case "result", "error":
			if c.deliver(el, string(typ) == "error") {
				return false
			}
		case "get", "set":
			if c.answerIQ(el, toServer) {
				return false
			}
			if toServer {
				c.answerServerIQ(el, string(typ) == "get")
				return false
			}
		}
	}
	if !c.toInbox(el) {
		c.enqueue(el)
	}
	return false
}

// fromAllowed reports whether a 'from' is the component address or a JID
// at it (user@addr, addr/res, user@addr/res).
func (c *Conn) fromAllowed(from []byte) bool {
	if bytes.IndexByte(from, '&') >= 0 {
		s, err := xstream.Unescape(from)
		if err != nil {
			return false
		}
		from = []byte(s)
	}
	if i := bytes.IndexByte(from, '/'); i >= 0 {
		if i == len(from)-1 {
			return false
		}
		from = from[:i]
	}
	if i := bytes.LastIndexByte(from, '@'); i >= 0 {
		if i == 0 {
			return false
		}
		from = from[i+1:]
	}
	return equalFold(from, c.addr)
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// deliver hands an IQ result or error to the Ping or SendIQ waiting for
// it, reporting whether one was.
func (c *Conn) deliver(el *xstream.Element, isErr bool) bool {
	id, ok := el.Attr("id")
	if !ok {
		return false
	}
	if bytes.IndexByte(id, '&') >= 0 {
		s, err := xstream.Unescape(id)
		if err != nil {
			return false
		}
		id = []byte(s)
	}
	if bytes.HasPrefix(id, []byte(floodPrefix)) {
		if f := c.flood.Load(); f != nil {
			f.reply(isErr)
			return true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.pending[string(id)]
	if !ok {
		return false
	}
	delete(c.pending, string(id))
	r := reply{isErr: isErr}
	if w.wantRaw {
		r.raw = bytes.Clone(el.Raw)
	}
	w.ch <- r // buffered, and only one send per registration: never blocks
	return true
}

func (c *Conn) answerServerIQ(el *xstream.Element, get bool) {
	id, from := el.AttrString("id"), el.AttrString("from")
	isPing := false
	if get {
		if name, ns, ok := el.FirstChild(); ok {
			local := name
			if i := bytes.IndexByte(local, ':'); i >= 0 {
				local = local[i+1:]
			}
			isPing = string(local) == "ping" && string(ns) == nsPing
		}
	}
	domain := c.s.opts.Domain
	_ = c.write(context.Background(), func(b []byte) []byte {
		if isPing {
			b = append(b, "<iq type='result'"...)
		} else {
			b = append(b, "<iq type='error'"...)
		}
		b = xstream.AppendAttr(b, "id", id)
		b = xstream.AppendAttr(b, "from", domain)
		b = xstream.AppendAttr(b, "to", from)
		if isPing {
			return append(b, "/>"...)
		}
		return append(b, "><error type='cancel'><service-unavailable xmlns='"+nsStanzas+"'/></error></iq>"...)
	})
	c.stanzasOut.Add(1)
}

func (c *Conn) enqueue(el *xstream.Element) {
	st := stanzaOf(el)
	if r := c.s.currentRouter(); r != nil && r(st) {
		return
	}
	c.queue.push(st)
}

// Next returns the next stanza the component sent that was not a reply to
// SendIQ or Ping nor an IQ to the server domain (which the server answers
// itself). Stanzas that arrived before the connection ended are still
// returned; after that Next returns ErrConnClosed.
func (c *Conn) Next(ctx context.Context) (Stanza, error) {
	return c.queue.next(ctx, c.done, ErrConnClosed)
}
