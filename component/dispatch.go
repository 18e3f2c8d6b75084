package component

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/xstream"
)

// queued is a job, the stanza it carries and room for the stanza's
// JoinRequest, allocated together.
type queued struct {
	j    job
	st   Stanza
	join JoinRequest
}

// newJob copies a stanza of the given kind out of the decoder into a new
// job for handler iq (nil for messages and presences).
func (s *Session) newJob(el *xstream.Element, a *rawAttrs, kind Kind, iq IQHandler) *job {
	q := &queued{}
	copyStanza(&q.st, el, a, kind)
	q.st.join = &q.join
	q.j = job{st: &q.st, iq: iq, id: q.st.ID, from: q.st.fromRaw, to: q.st.toRaw, size: len(q.st.Raw)}
	q.j.ctx = jobContext{Context: s.ctx, j: &q.j}
	return &q.j
}

// enqueue hands a job to the pool without ever waiting: the reader must
// keep reading (the server's pongs and the replies handlers wait for come
// through it). A job that finds no room (Workers, MaxQueuedBytes, or its
// sender's queue with OrderPerSender) is shed at once: an IQ request is
// answered with resource-constraint (type wait). While the session
// closes, an IQ request is answered with service-unavailable (type wait).
// Messages and presences are dropped in both cases.
func (s *Session) enqueue(j *job, a *rawAttrs) {
	switch s.pool.push(j) {
	case pushed:
		return
	case refusedFull:
		s.stats.dropped.Add(1)
		s.log.Warn("handlers overloaded: stanza shed", slog.String("kind", j.st.Kind.String()), slog.String("from", j.st.fromRaw))
		if j.iq != nil {
			s.rshed++ // counted once sent
			s.replyErrorRaw(a, stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint})
		}
	case refusedDraining:
		if j.iq == nil {
			s.stats.dropped.Add(1)
			return
		}
		s.rrefused++ // counted once sent
		s.replyErrorRaw(a, errClosing)
		// Answer at once rather than at the next read: the stream is
		// about to close.
		s.flushReplies()
	}
}

// route handles one element on the reader goroutine. Pings, replies to our
// requests and unhandled requests are answered here without a worker hop;
// the rest goes to the workers. It returns false when reading must stop.
func (s *Session) route(el *xstream.Element) bool {
	var kind Kind
	switch string(el.Name()) {
	case "iq":
		kind = KindIQ
	case "message":
		kind = KindMessage
	case "presence":
		kind = KindPresence
	default:
		if isStreamError(el) {
			se, err := xstream.ParseStreamError(el.Raw)
			if err != nil {
				s.fail(fmt.Errorf("%w: unreadable stream error: %w", ErrProtocol, err), endReply, nil)
			} else {
				s.fail(&StreamError{Err: se, Addr: s.cfg.addrStr, Name: s.cfg.Name}, endReply, nil)
			}
			return false
		}
		s.stats.dropped.Add(1)
		s.log.Debug("ignoring unknown top-level element", slog.String("name", truncate(el.Name(), 64)))
		return true
	}
	a := scanAttrs(el)
	fromRaw := a.from
	if kind != KindIQ {
		var h StanzaHandler
		if s.mux != nil {
			h = s.mux.message
			if kind == KindPresence {
				h = s.mux.presence
			}
		}
		if h == nil {
			s.stats.dropped.Add(1)
			return true
		}
		s.enqueue(s.newJob(el, &a, kind, nil), &a)
		return true
	}
	typ := a.typ
	switch string(typ) {
	case "get", "set":
	case "result", "error":
		if !s.deliver(a.id, fromRaw, func() *Stanza {
			st := new(Stanza)
			copyStanza(st, el, &a, KindIQ)
			return st
		}) {
			s.stats.dropped.Add(1)
			s.log.Debug("dropping IQ reply nobody waits for (unknown id or wrong sender)",
				slog.String("from", truncate(fromRaw, 256)))
		}
		return true
	default:
		s.stats.dropped.Add(1)
		return true
	}
	name, ns, ok := el.FirstChild()
	if !ok {
		s.replyErrorRaw(&a, stanza.Error{Type: stanza.Modify, Condition: stanza.BadRequest})
		return true
	}
	if string(typ) == "get" && string(ns) == NSPing && string(name) == "ping" {
		s.replyPing(&a)
		return true
	}
	h := s.mux.lookupIQ(name, ns)
	if h == nil {
		s.replyErrorRaw(&a, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable})
		return true
	}
	s.enqueue(s.newJob(el, &a, KindIQ, h), &a)
	return true
}

// replyFrom is the from of a reply: the request's to when it is ours.
func (s *Session) replyFrom(toRaw []byte) []byte {
	if string(toRaw) == s.cfg.addrStr {
		return toRaw // the usual case
	}
	if len(toRaw) == 0 || !bytes.EqualFold(domainOf(toRaw), []byte(s.cfg.addrStr)) {
		return nil
	}
	return toRaw
}

// appendReplyHead appends the start of an IQ reply to the request a: type,
// the request's id, and from and to swapped (attributes copied as received:
// they are already escaped).
func (s *Session) appendReplyHead(b []byte, typ string, a *rawAttrs) []byte {
	b = append(b, "<iq type='"...)
	b = append(b, typ...)
	b = append(b, '\'')
	b = appendRawAttr(b, "id", a.id)
	if to := s.replyFrom(a.to); len(to) > 0 {
		b = appendRawAttr(b, "from", to)
	} else {
		b = xstream.AppendAttr(b, "from", s.cfg.addrStr)
	}
	if len(a.from) > 0 {
		b = appendRawAttr(b, "to", a.from)
	}
	return b
}

// replyPing answers a ping without allocating: attributes are copied as
// received (they are already escaped).
func (s *Session) replyPing(a *rawAttrs) {
	b := s.appendReplyHead(s.rbatch, "result", a)
	s.rbatch = append(b, "/>"...)
	s.rcount++
	s.rpings++ // counted once sent
	if len(s.rbatch) >= maxReplyBatch {
		s.flushReplies()
	}
}

// replyErrorRaw answers a request with a stanza error, to and from swapped.
func (s *Session) replyErrorRaw(a *rawAttrs, se stanza.Error) {
	b := s.appendReplyHead(s.rbatch, "error", a)
	b = append(b, '>')
	b = xstream.AppendStanzaError(b, se)
	s.rbatch = append(b, "</iq>"...)
	s.rcount++
	if len(s.rbatch) >= maxReplyBatch {
		s.flushReplies()
	}
}

// copyStanza copies an element out of the decoder's buffer into st. The
// routing attributes and the payload's name and namespace share one
// string; only values holding a reference to unescape get their own.
func copyStanza(st *Stanza, el *xstream.Element, a *rawAttrs, kind Kind) {
	name, ns, _ := el.FirstChild()
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	const nameAt = 4 // an element name holds no reference: never unescaped
	vals := [...][]byte{a.typ, a.id, a.from, a.to, name, ns}
	escaped := func(i int) bool { return i != nameAt && bytes.IndexByte(vals[i], '&') >= 0 }
	var buf [256]byte
	all := buf[:0]
	for i, v := range vals {
		if !escaped(i) {
			all = append(all, v...)
		}
	}
	shared := string(all)
	var out [len(vals)]string
	for i, v := range vals {
		if escaped(i) {
			out[i] = unescape(v)
		} else {
			out[i], shared = shared[:len(v)], shared[len(v):]
		}
	}
	*st = Stanza{
		Kind: kind, Type: out[0], ID: out[1], fromRaw: out[2], toRaw: out[3],
		Raw: bytes.Clone(el.Raw), payloadName: out[nameAt], payloadNS: out[5],
	}
}

// unescape returns an attribute value unescaped, "" when invalid.
func unescape(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	v, err := xstream.Unescape(raw)
	if err != nil {
		return ""
	}
	return v
}

// runJob runs a job's handler and answers an IQ. It returns false for an
// IQ left unanswered: the link started to end before the handler could
// start (no handler starts then), or the reply could not be queued (the
// session is closing with its send queue full). The teardown answers it.
func (s *Session) runJob(j *job) (settled bool) {
	if s.closed() {
		if j.iq == nil {
			s.stats.dropped.Add(1)
			return true
		}
		return false
	}
	st := j.st
	st.parseAddrs(&s.cfg)
	if st.fromRaw != "" && st.From.Domainpart() == "" {
		s.stats.dropped.Add(1)
		if j.iq != nil {
			return s.replyError(j, stanza.Error{Type: stanza.Modify, Condition: stanza.JIDMalformed})
		}
		return true
	}
	ctx := &j.ctx
	if j.iq == nil {
		h := s.mux.message
		if st.Kind == KindPresence {
			h = s.mux.presence
		}
		s.call(st, func() { h(ctx, st) })
		return true
	}
	var (
		result any
		err    error
	)
	panicked := s.call(st, func() { result, err = j.iq(ctx, st) })
	switch {
	case ctx.Err() != nil:
		// Cut by a stop: whatever the handler returned, the service may
		// be back soon (on this link's successor).
		return s.answer(j, func(b []byte) []byte { return s.appendErrorReply(b, j, errClosing) }, &s.stats.refused)
	case panicked:
		return s.replyError(j, stanza.Error{Type: stanza.Cancel, Condition: stanza.InternalServerError})
	case err != nil:
		s.stats.handlerErrors.Add(1)
		se := errorFromHandler(err)
		// A stanza error is the handler's answer (a join refused): the
		// program logs its own reasons. Any other error is a fault of the
		// handler, answered internal-server-error (or, wrapping a context
		// error, service-unavailable).
		level, msg := slog.LevelWarn, "IQ handler error"
		if _, ok := xstream.StanzaErrorIn(err); ok {
			level, msg = slog.LevelDebug, "IQ refused by its handler"
		}
		s.log.Log(context.Background(), level, msg, slog.String("payload", st.payloadNS+" "+st.payloadName),
			slog.String("from", j.from), slog.String("answer", string(se.Condition)), slog.Any("err", err))
		return s.replyError(j, se)
	}
	if a, ok := result.(appender); ok { // a join's answer: no buffer of its own
		return s.reply(j, func(b []byte) []byte {
			b = append(appendStanzaHead(b, KindIQ, "result", j.id, s.replyFromStr(j.to), j.from), '>')
			return appendStanzaEnd(a.appendXML(b), KindIQ)
		})
	}
	body, err := encodePayload(result)
	if err != nil {
		s.stats.handlerErrors.Add(1)
		s.log.Error("IQ handler result cannot be encoded", slog.Any("err", err))
		return s.replyError(j, stanza.Error{Type: stanza.Cancel, Condition: stanza.InternalServerError})
	}
	return s.reply(j, func(b []byte) []byte {
		return appendStanza(b, KindIQ, "result", j.id, s.replyFromStr(j.to), j.from, body)
	})
}

// reply queues the answer to request j, unless it has one already or the
// teardown has answered it on its behalf. It returns false when the
// answer could not be queued (the session is closing and the queue is
// full): j then stays unanswered, and the teardown answers it.
func (s *Session) reply(j *job, encode func([]byte) []byte) bool {
	return s.answer(j, encode, nil)
}

// answer is reply, counting the answer in count when it is queued.
func (s *Session) answer(j *job, encode func([]byte) []byte, count *atomic.Uint64) bool {
	s.replyMu.RLock()
	defer s.replyMu.RUnlock()
	if s.repliesClosed || j.answered {
		return true // the teardown answered it, or counted it unanswered
	}
	if s.append(s.ctx, encode) == nil {
		j.answered = true
		if count != nil {
			count.Add(1)
		}
	}
	return j.answered
}

// call runs f, recovering and logging a panic.
func (s *Session) call(st *Stanza, f func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			s.stats.handlerPanics.Add(1)
			s.log.Error("handler panic", slog.String("kind", st.Kind.String()),
				slog.String("payload", st.payloadNS+" "+st.payloadName),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		}
	}()
	f()
	return false
}

// replyFromStr is the from of a reply to a request sent to toRaw: toRaw
// when it is the component or inside it, else the component address.
func (s *Session) replyFromStr(toRaw string) string {
	if toRaw != "" && strings.EqualFold(domainOf(toRaw), s.cfg.addrStr) {
		return toRaw
	}
	return s.cfg.addrStr
}

func (s *Session) replyError(j *job, se stanza.Error) bool {
	return s.reply(j, func(b []byte) []byte { return s.appendErrorReply(b, j, se) })
}

// appendErrorReply appends an IQ error answering request j.
func (s *Session) appendErrorReply(b []byte, j *job, se stanza.Error) []byte {
	b = append(b, "<iq type='error'"...)
	b = xstream.AppendAttr(b, "id", j.id)
	b = xstream.AppendAttr(b, "from", s.replyFromStr(j.to))
	if j.from != "" {
		b = xstream.AppendAttr(b, "to", j.from)
	}
	b = append(b, '>')
	b = xstream.AppendStanzaError(b, se)
	return append(b, "</iq>"...)
}
