package wstest

import (
	"bytes"
	"testing"
)

// FuzzFrame checks the framing and the rewriting the endpoint applies to
// every stanza it routes: a frame that parses as one element and is
// rewritten (namespace, stamped from, new id) parses again as the same
// element with those attributes and the same content, and rewriting is
// idempotent. Seeds are in testdata/fuzz/FuzzFrame and below.
func FuzzFrame(f *testing.F) {
	for _, s := range []string{
		"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
		"<iq xmlns='jabber:client' type='set' id='j1' to='cb1.example.com'><join xmlns='urn:cblink:join:0' call='100' passcode='1234'><display-name>A &amp; B</display-name></join></iq>",
		`<message from="x@y/z" to='cb1.example.com' id="a'b"><body>hi</body></message>`,
		"<iq type='result' id='wstest-1-1' from='cb1.example.com' to='a@example.com/web'/>",
		"  ",
		"<a/><b/>",
		"<iq id='&#x41;' >text<![CDATA[<x>]]></iq>",
	} {
		f.Add([]byte(s))
	}
	const from, id = "a@example.com/web", "x&'<1"
	f.Fuzz(func(t *testing.T, frame []byte) {
		el, err := parseFrame(frame)
		if err != nil || el.Keepalive {
			return
		}
		out, ok := rewrite(nil, &el, nsClient, "from", from, "id", id)
		if !ok {
			return
		}
		el2, err := parseFrame(out)
		if err != nil {
			t.Fatalf("rewrite of %q gave %q, which does not parse: %v", frame, out, err)
		}
		if !bytes.Equal(el2.Name(), el.Name()) || el2.SelfClosing() != el.SelfClosing() || !bytes.Equal(el2.Inner(), el.Inner()) {
			t.Fatalf("rewrite of %q changed the element: %q", frame, out)
		}
		if el2.AttrString("from") != from || el2.AttrString("id") != id || el2.AttrString("xmlns") != nsClient {
			t.Fatalf("rewrite of %q: attributes not set: %q", frame, out)
		}
		again, ok := rewrite(nil, &el2, nsClient, "from", from, "id", id)
		if !ok || !bytes.Equal(again, out) {
			t.Fatalf("rewrite not idempotent: %q then %q", out, again)
		}
		// The other attributes survive, unescaped to the same values.
		for _, name := range []string{"to", "type"} {
			if el2.AttrString(name) != el.AttrString(name) {
				t.Fatalf("attribute %s changed: %q -> %q", name, frame, out)
			}
		}
	})
}
