package component

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/internal/xstream"
)

// NSPing is the XEP-0199 namespace.
const NSPing = "urn:xmpp:ping"

var pingPayload = []byte("<ping xmlns='" + NSPing + "'/>")

// Send encodes st and queues it for writing. An empty From is stamped with
// the component address; a From outside the component's domain is refused
// with ErrForeignFrom before anything is sent. Send returns once the
// stanza is queued (stanzas queued together leave in one write); it waits
// only while the write queue is full, until ctx ends. On a link that has
// ended it fails at once with ErrClosed or ErrDisconnected. It is safe for
// concurrent use, including from handlers.
func (s *Session) Send(ctx context.Context, st Outgoing) error {
	if ctx == nil {
		return ErrNilContext
	}
	k, typ, id, from, to, payload := st.header()
	fromStr, err := s.stampFrom(from)
	if err != nil {
		return err
	}
	if s.closed() {
		return s.downErr()
	}
	body, err := encodePayload(payload)
	if err != nil {
		return err
	}
	var toStr string
	if to.Domainpart() != "" {
		toStr = to.String()
	}
	return s.append(ctx, func(b []byte) []byte {
		return appendStanza(b, k, typ, id, fromStr, toStr, body)
	})
}

// stampFrom checks a From address and defaults it to the component's.
func (s *Session) stampFrom(from jid.JID) (string, error) {
	if from.Domainpart() == "" {
		return s.cfg.addrStr, nil
	}
	if !strings.EqualFold(from.Domainpart(), s.cfg.addrStr) {
		return "", fmt.Errorf("%w: %s is not %s or inside it", ErrForeignFrom, from, s.cfg.addrStr)
	}
	return from.String(), nil
}

// append queues one encoded stanza and maps writer errors.
func (s *Session) append(ctx context.Context, encode func([]byte) []byte) error {
	if err := s.w.Append(ctx, encode); err != nil {
		if ctx.Err() != nil && !s.closed() {
			return fmt.Errorf("component: send: %w", err)
		}
		if !s.closed() {
			// The writer failed before the reader noticed: end the link.
			s.fail(fmt.Errorf("component: write to the server: %w", err), endAbort, nil)
		}
		return s.downErr()
	}
	s.stats.out.Add(1)
	return nil
}

func (s *Session) writeIQ(ctx context.Context, id, typ, from, to string, payload []byte) error {
	return s.append(ctx, func(b []byte) []byte {
		return appendStanza(b, KindIQ, typ, id, from, to, payload)
	})
}

// iqResult is what a pending request receives.
type iqResult struct {
	st  *Stanza
	err error
}

type pendingIQ struct {
	from string // expected sender, as sent in 'to'
	ch   chan iqResult
}

func (s *Session) nextID() string {
	return s.idPrefix + strconv.FormatUint(s.idSeq.Add(1), 36)
}

// register records a request before it is sent, so that a fast reply
// cannot overtake it.
func (s *Session) register(id, to string) (*pendingIQ, error) {
	p := &pendingIQ{from: to, ch: make(chan iqResult, 1)}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	switch {
	case s.pendErr != nil:
		return nil, s.pendErr
	case len(s.pending) >= s.cfg.MaxPendingIQ:
		return nil, ErrTooManyPending
	}
	if _, dup := s.pending[id]; dup {
		return nil, fmt.Errorf("component: IQ id %q is already waiting for a reply", id)
	}
	s.pending[id] = p
	return p, nil
}

func (s *Session) unregister(id string) {
	s.pmu.Lock()
	delete(s.pending, id)
	s.pmu.Unlock()
}

// failPending releases every waiting request with err; later
// registrations fail with it too.
func (s *Session) failPending(err error) {
	s.pmu.Lock()
	s.pendErr = err
	for id, p := range s.pending {
		p.ch <- iqResult{err: err}
		delete(s.pending, id)
	}
	s.pmu.Unlock()
}

// deliver hands a result or error IQ to the request waiting for it. A reply
// whose sender is not the one the request went to is not delivered.
func (s *Session) deliver(id, fromRaw []byte, build func() *Stanza) bool {
	if bytes.IndexByte(id, '&') >= 0 {
		// The id as sent was escaped on the wire ("a&amp;b"); pending
		// requests are keyed by the id as given.
		u, err := xstream.Unescape(id)
		if err != nil {
			return false
		}
		id = []byte(u)
	}
	s.pmu.Lock()
	p, ok := s.pending[string(id)]
	if !ok || !sameAddr(fromRaw, p.from, s.cfg.serverAddr) {
		s.pmu.Unlock()
		return false
	}
	delete(s.pending, string(id))
	s.pmu.Unlock()
	p.ch <- iqResult{st: build()}
	return true
}

// sameAddr reports whether a reply's raw from matches the address a
// request went to. A reply without from is accepted only for requests to
// the server itself (RFC 6120 10.3.3).
func sameAddr(fromRaw []byte, want, server string) bool {
	if len(fromRaw) == 0 {
		return strings.EqualFold(want, server)
	}
	got, err := xstream.Unescape(fromRaw)
	if err != nil {
		return false
	}
	if strings.EqualFold(got, want) {
		return true
	}
	// Compare canonical forms (case of the localpart, IDN domains).
	gj, err1 := jid.Parse(got)
	wj, err2 := jid.Parse(want)
	return err1 == nil && err2 == nil && gj.Equal(wj)
}

// SendIQ sends an IQ get or set and waits for the reply from the address
// it was sent to. An empty To means the server's domain; an empty ID is
// generated; From is stamped as in Send. A reply of type error is returned
// with a stanza.Error as the error, so
//
//	errors.Is(err, stanza.Error{Condition: stanza.ItemNotFound})
//
// works. ctx bounds the wait (a deadline gives an error wrapping
// ErrTimeout); when the link ends the call fails at once with ErrClosed or
// ErrDisconnected.
func (s *Session) SendIQ(ctx context.Context, iq IQ) (*Stanza, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	if iq.Type != stanza.GetIQ && iq.Type != stanza.SetIQ {
		return nil, fmt.Errorf("component: SendIQ needs type get or set, not %q", iq.Type)
	}
	fromStr, err := s.stampFrom(iq.From)
	if err != nil {
		return nil, err
	}
	toStr := s.cfg.serverAddr
	if iq.To.Domainpart() != "" {
		toStr = iq.To.String()
	}
	body, err := encodePayload(iq.Payload)
	if err != nil {
		return nil, err
	}
	id := iq.ID
	if id == "" {
		id = s.nextID()
	}
	return s.roundTrip(ctx, id, string(iq.Type), fromStr, toStr, body)
}

func (s *Session) roundTrip(ctx context.Context, id, typ, from, to string, body []byte) (*Stanza, error) {
	p, err := s.register(id, to)
	if err != nil {
		return nil, err
	}
	if err := s.writeIQ(ctx, id, typ, from, to, body); err != nil {
		s.unregister(id)
		return nil, err
	}
	select {
	case r := <-p.ch:
		if r.err != nil {
			return nil, r.err
		}
		r.st.parseAddrs(&s.cfg)
		if se, ok := r.st.StanzaError(); ok {
			return r.st, se
		}
		return r.st, nil
	case <-ctx.Done():
		s.unregister(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("component: no reply from %s to IQ %s: %w (%w)", to, id, ErrTimeout, ctx.Err())
		}
		return nil, fmt.Errorf("component: IQ %s to %s: %w", id, to, ctx.Err())
	}
}

// Ping sends an XEP-0199 ping to the server's domain and returns the round
// trip time. Any reply proves the server alive, so an error reply such as
// service-unavailable counts as success.
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	if ctx == nil {
		return 0, ErrNilContext
	}
	start := time.Now()
	s.stats.pingsSent.Add(1)
	_, err := s.roundTrip(ctx, s.nextID(), "get", s.cfg.addrStr, s.cfg.serverAddr, pingPayload)
	var se stanza.Error
	if err != nil && !errors.As(err, &se) {
		return 0, err
	}
	rtt := time.Since(start)
	s.stats.lastRTT.Store(int64(rtt))
	return rtt, nil
}
