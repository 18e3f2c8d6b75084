//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/component"
)

// c2sClient is a logged-in XMPP client (mellium.im/xmpp) playing the web
// side: it sends join requests and messages to the component through
// Prosody, the way the WebRTC gateway's traffic reaches a Call Bridge.
type c2sClient struct {
	JID      jid.JID // full JID after resource binding
	sess     *xmpp.Session
	conn     net.Conn
	served   chan struct{}      // closed when Serve returned
	Messages chan clientMessage // messages received, buffered
}

// clientMessage is a message the client received.
type clientMessage struct {
	From jid.JID `xml:"from,attr"`
	Type string  `xml:"type,attr"`
	Body string  `xml:"body"`
}

// dialC2S logs user in on p's c2s port: STARTTLS (Prosody's default
// c2s_require_encryption stays on, with the test CA trusted and SNI
// example.com), then SASL SCRAM or PLAIN, then resource binding. The client
// is closed in t.Cleanup.
func dialC2S(ctx context.Context, t testing.TB, p *prosody, user, password string) *c2sClient {
	t.Helper()
	origin, err := jid.New(user, domain, "")
	require.NoError(t, err)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.C2SAddr())
	require.NoError(t, err)
	tlsConf := &tls.Config{ServerName: domain, RootCAs: p.PKI.Pool, MinVersion: tls.VersionTLS12}
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(tlsConf),
		xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		xmpp.BindResource(),
	)
	if err != nil {
		conn.Close()
		require.NoError(t, err, "c2s login of %s", origin)
	}
	c := &c2sClient{
		JID:      sess.LocalAddr(),
		sess:     sess,
		conn:     conn,
		served:   make(chan struct{}),
		Messages: make(chan clientMessage, 16),
	}
	go func() {
		defer close(c.served)
		_ = sess.Serve(xmpp.HandlerFunc(c.handle))
	}()
	t.Cleanup(c.Close)
	return c
}

// handle runs on Serve's goroutine with the session locked: it must not
// send, only decode.
func (c *c2sClient) handle(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil // IQs get service-unavailable from Serve
	}
	var m clientMessage
	// Serve hands over the start element apart from the rest; the decoder
	// must see it to match the end element.
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
	if err := d.Decode(&m); err != nil {
		return nil
	}
	select {
	case c.Messages <- m:
	default: // a test that does not read them does not care
	}
	return nil
}

// Close ends the stream, waits (briefly) for the server's closing tag,
// closes the connection and waits for Serve to return.
func (c *c2sClient) Close() {
	_ = c.sess.Close()
	select {
	case <-c.served:
		c.conn.Close()
	case <-time.After(2 * time.Second):
		c.conn.Close()
		<-c.served
	}
}

// Ping sends an XEP-0199 ping to to; an error reply is an error.
func (c *c2sClient) Ping(ctx context.Context, to jid.JID) error {
	return ping.Send(ctx, c.sess, to)
}

// Join sends req as a join IQ (component.MarshalJoinIQ) to the component
// and decodes the reply with component.ParseJoinResponse.
func (c *c2sClient) Join(ctx context.Context, to jid.JID, req *component.JoinRequest) (*component.JoinResult, error) {
	raw := component.MarshalJoinIQ(req, to)
	reply, err := c.sess.SendIQ(ctx, tokensOf(raw))
	if err != nil {
		return nil, err
	}
	defer reply.Close()
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	if _, err := xmlstream.Copy(enc, withoutXMLNSAttrs(reply)); err != nil {
		return nil, err
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}
	return component.ParseJoinResponse(buf.Bytes())
}

// SendMessage sends a chat message with body to to.
func (c *c2sClient) SendMessage(ctx context.Context, to jid.JID, body string) error {
	msg := stanza.Message{To: to, Type: stanza.ChatMessage}
	return c.sess.Send(ctx, msg.Wrap(xmlstream.Wrap(
		xmlstream.Token(xml.CharData(body)),
		xml.StartElement{Name: xml.Name{Local: "body"}},
	)))
}

// tokensOf turns encoded XML into a token stream for mellium, dropping the
// xmlns attributes that encoding/xml also reports in Name.Space (an encoder
// would otherwise write them twice).
func tokensOf(raw []byte) xml.TokenReader {
	return withoutXMLNSAttrs(xml.NewDecoder(bytes.NewReader(raw)))
}

type nsFilter struct{ r xml.TokenReader }

func withoutXMLNSAttrs(r xml.TokenReader) xml.TokenReader { return nsFilter{r} }

func (f nsFilter) Token() (xml.Token, error) {
	tok, err := f.r.Token()
	if tok == nil {
		if err == nil {
			err = io.EOF
		}
		return nil, err
	}
	tok = xml.CopyToken(tok)
	if se, ok := tok.(xml.StartElement); ok {
		attrs := se.Attr[:0]
		for _, a := range se.Attr {
			if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
				continue
			}
			attrs = append(attrs, a)
		}
		se.Attr = attrs
		tok = se
	}
	if errors.Is(err, io.EOF) {
		err = nil // return the token now, EOF on the next call
	}
	return tok, err
}
