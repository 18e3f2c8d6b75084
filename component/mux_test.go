package component

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestZeroMux: a Mux declared as a variable (no NewMux) takes handlers and
// routes for a session, as http.ServeMux's zero value does.
func TestZeroMux(t *testing.T) {
	var m Mux
	m.HandleIQ("q", "urn:test", func(context.Context, *Stanza) (any, error) {
		return RawXML("<ok xmlns='urn:test'/>"), nil
	})
	m.HandleJoin(func(context.Context, *JoinRequest) (*JoinResult, error) { return nil, nil })
	got := make(chan string, 1)
	m.HandleMessage(func(_ context.Context, st *Stanza) { got <- st.ID })
	assert.Panics(t, func() { m.HandleIQ("q", "urn:test", func(context.Context, *Stanza) (any, error) { return nil, nil }) }, "duplicate")

	cfg := testConfig(nil)
	cfg.Handler = &m
	_, p := startSession(t, cfg)
	p.write(`<iq type='get' id='z1' from='u@example.com/r' to='cb1.example.com'><q xmlns='urn:test'/></iq>`)
	reply := p.nextStanza()
	assert.Equal(t, "result", attr(t, reply, "type"))
	assert.Contains(t, reply, "<ok xmlns='urn:test'/>")
	p.write(`<message id='m1' from='u@example.com/r' to='cb1.example.com'/>`)
	assert.Equal(t, "m1", <-got)

	var unused Mux // a zero Mux with no handler answers like no Mux
	cfg.Handler = &unused
	_, p = startSession(t, cfg)
	p.write(`<iq type='get' id='z2' from='u@example.com/r' to='cb1.example.com'><q xmlns='urn:test'/></iq>`)
	assert.Contains(t, p.nextStanza(), "<service-unavailable ")
}
