package component

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzServerBytes plays arbitrary server bytes (what arrives after the TLS
// layer) against NewSession and, when the handshake succeeds, against the
// session's reader: never a panic, never a hang, and always an error this
// package types (memory is bounded by the xstream decoder, fuzzed there).
func FuzzServerBytes(f *testing.F) {
	const errEl = "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
	for _, s := range []string{
		srvHeader + "<handshake/>",
		"<?xml version='1.0'?>\n\n" + srvHeader + " \n<handshake/>",
		srvHeader + errEl,
		srvHeader + "<handshake/><iq type='get' id='1' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>" +
			"<iq type='set' id='2' from='u@example.com/r'><join xmlns='urn:cblink:join:0' call='1'/></iq>" +
			"<message from='u@example.com'><body>&amp;</body></message><iq type='result' id='x'/></stream:stream>",
		srvHeader + "<handshake/>" + errEl,
		"<stream:stream " + nsHeader + " from='cb1.example.com'>" + errEl,
		"<stream:stream " + nsHeader + " from='other' id='1'>",
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1'>",
		srvHeader + "<handshake>x</handshake>",
		srvHeader + "<handshake/><a><b><c><d><e><f><g><h><i><j/></i></h></g></f></e></d></c></b></a>",
		srvHeader + "<handshake/>" + strings.Repeat("x", 100),
		"HTTP/1.1 400 Bad Request\r\n\r\n",
		"<",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, p := newPeer(t)
		go func() {
			if _, err := p.dec.ReadHeader(); err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, p.conn) }()
			_, _ = p.conn.Write(data)
			p.conn.Close()
		}()
		cfg := testConfig(nil)
		cfg.MaxStanzaSize = 4096
		cfg.MaxDepth = 8
		cfg.CloseTimeout = 50 * time.Millisecond
		cfg.Handler = fuzzMux
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := NewSession(ctx, c, cfg)
		if err == nil {
			err = s.Wait(ctx)
			s.Abort()
		}
		if err == nil {
			t.Fatal("session neither failed nor ended")
		}
		checkTyped(t, err)
		if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), testDigest) {
			t.Fatalf("secret in error: %v", err)
		}
	})
}

var fuzzMux = func() *Mux {
	m := NewMux()
	m.HandleJoin(func(ctx context.Context, req *JoinRequest) (*JoinResult, error) { return nil, nil })
	return m
}()

func checkTyped(t *testing.T, err error) {
	t.Helper()
	var se *StreamError
	switch {
	case errors.As(err, &se),
		errors.Is(err, ErrNoStreamID), errors.Is(err, ErrWrongAddress), errors.Is(err, ErrProtocol),
		errors.Is(err, ErrPeerClosed), errors.Is(err, ErrTimeout),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.ErrClosedPipe), errors.Is(err, io.EOF):
	default:
		t.Fatalf("untyped error %T: %v", err, err)
	}
}

// FuzzJoinParse checks the join fast path against encoding/xml: whenever
// the fast parser accepts a payload, encoding/xml must decode the same
// values from it.
func FuzzJoinParse(f *testing.F) {
	for _, s := range []string{
		`<join xmlns='urn:cblink:join:0' call='1234' passcode='42'><display-name>Ann &amp; Bob</display-name></join>`,
		`<join xmlns="urn:cblink:join:0" call="a&apos;b"/>`,
		` <join xmlns='urn:cblink:join:0' call='1'>  </join> `,
		`<join xmlns='urn:cblink:join:0' call='1'><display-name><![CDATA[x]]></display-name></join>`,
		`<j:join xmlns:j='urn:cblink:join:0' call='1'/>`,
		`<join xmlns='urn:other' call='1'/>`,
		`<join xmlns='urn:cblink:join:0' call='1' passcode='&#x41;'><display-name>é</display-name><extra/></join>`,
		`<join xmlns='urn:cblink:join:0' call='1'><!-- c --></join>`,
		`<join>`,
		`<join call='1'/>`,
		// Found by fuzzing, kept as regressions.
		`<join xmlns='urn:cblink:join:0'''></join>`,
		`<join xmlns="urn:cblink:join:0" 0="0"/>`,
		"<join xmlns='urn:cblink:join:0'><display-name>\x1f</display-name></join>",
		`<join xmlns='urn:cblink:join:0'><display-name>]]></display-name></join>`,
		// A repeated attribute: its first value must be judged too.
		`<join xmlns='urn:cblink:join:0' call='1' passcode='&bad;' passcode='ok'/>`,
		`<join xmlns='urn:cblink:join:0' call='1' call='2'/>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		raw := []byte("<iq type='set' id='1' from='u@example.com'>" + payload + "</iq>")
		fast, ok := parseJoinFast(raw)
		if !ok {
			return
		}
		st := &Stanza{Raw: raw}
		var slow joinXML
		if err := st.DecodePayload(&slow); err != nil {
			t.Fatalf("fast path accepted what encoding/xml rejects (%v): %q", err, payload)
		}
		if fast.Call != slow.Call || fast.Passcode != slow.Passcode || fast.DisplayName != slow.DisplayName {
			t.Fatalf("fast %+v != encoding/xml %+v for %q", fast, slow, payload)
		}
	})
}
