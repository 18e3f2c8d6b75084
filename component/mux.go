package component

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
)

// IQHandler answers an IQ get or set. It returns the payload of the result
// (nil for an empty result; RawXML or a value encoding/xml marshals) or an
// error: a stanza.Error in the error's chain is sent as is (for example
// stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound});
// ErrRetryLater, or an error wrapping context.Canceled or
// context.DeadlineExceeded, is answered service-unavailable (type wait:
// retry later); any other error is logged and answered with
// internal-server-error, without its text. A panic is recovered, logged
// and answered the same way.
//
// Handlers run on goroutines of their own, never on the reader, so they
// may block, send with SessionFromContext(ctx), and even wait for SendIQ
// replies. ctx is cancelled when the link ends; a request whose ctx has
// ended is answered service-unavailable (type wait), whatever the
// handler returns, as is every request a stop cuts short.
type IQHandler func(ctx context.Context, iq *Stanza) (result any, err error)

// StanzaHandler receives a message or presence stanza; see IQHandler for
// where it runs.
type StanzaHandler func(ctx context.Context, st *Stanza)

// Mux routes incoming stanzas to handlers: IQs by the name and namespace of
// their payload, messages and presences by kind. Build it once, before the
// first session uses it (registering afterwards panics), then share it
// between sessions: a supervisor reuses it for every new link.
// Registration is not safe for concurrent use; routing is.
//
// The zero value is an empty Mux ready to use, as is NewMux's result; a
// Mux must not be copied once a handler is registered.
type Mux struct {
	iq       map[string]map[string]IQHandler // namespace -> local name -> handler
	message  StanzaHandler
	presence StanzaHandler
	frozen   atomic.Bool
}

// NewMux returns an empty Mux; new(Mux) is the same.
func NewMux() *Mux { return new(Mux) }

func (m *Mux) mustOpen(what string) {
	if m.frozen.Load() {
		panic("component: Mux." + what + " after a session started using the Mux")
	}
}

// HandleIQ registers h for IQ get and set requests whose payload is the
// element name in namespace ns. It panics on a nil handler, a duplicate
// registration or a Mux already in use.
func (m *Mux) HandleIQ(name, ns string, h IQHandler) {
	m.mustOpen("HandleIQ")
	if h == nil || name == "" {
		panic("component: Mux.HandleIQ with a nil handler or an empty name")
	}
	if m.iq == nil {
		m.iq = make(map[string]map[string]IQHandler)
	}
	byName := m.iq[ns]
	if byName == nil {
		byName = make(map[string]IQHandler)
		m.iq[ns] = byName
	}
	if _, dup := byName[name]; dup {
		panic(fmt.Sprintf("component: Mux.HandleIQ: {%s}%s registered twice", ns, name))
	}
	byName[name] = h
}

// HandleMessage registers h for every incoming message. It panics on a nil
// handler, a second registration or a Mux already in use.
func (m *Mux) HandleMessage(h StanzaHandler) {
	m.mustOpen("HandleMessage")
	if h == nil || m.message != nil {
		panic("component: Mux.HandleMessage with a nil handler or registered twice")
	}
	m.message = h
}

// HandlePresence registers h for every incoming presence; panics as
// HandleMessage.
func (m *Mux) HandlePresence(h StanzaHandler) {
	m.mustOpen("HandlePresence")
	if h == nil || m.presence != nil {
		panic("component: Mux.HandlePresence with a nil handler or registered twice")
	}
	m.presence = h
}

func (m *Mux) freeze() { m.frozen.Store(true) }

func (m *Mux) lookupIQ(name, ns []byte) IQHandler {
	if m == nil {
		return nil
	}
	byName := m.iq[string(ns)]
	if byName == nil {
		return nil
	}
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:] // a prefixed payload: its xmlns:p was matched as ns
	}
	return byName[string(name)]
}
