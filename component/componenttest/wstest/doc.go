// Package wstest is an XMPP-over-WebSocket endpoint (RFC 7395) for web
// users in front of componenttest servers: a browser, or any RFC 7395
// client, logs in anonymously and exchanges stanzas with the components
// registered on those servers, as a web user does through Prosody's
// mod_websocket.
//
// It is a loopback test and demo server, like the rest of componenttest,
// not an XMPP server for real users. It implements exactly this much:
//
//   - the WebSocket handshake with the "xmpp" sub-protocol (a request
//     without it is refused with HTTP 501, as Prosody does), text frames
//     holding one element each;
//   - <open/> and <close/> of urn:ietf:params:xml:ns:xmpp-framing;
//   - SASL ANONYMOUS (RFC 4505; the only mechanism offered), the stream
//     restart, and resource binding (RFC 6120 section 7); the user gets a
//     random local part at the domain;
//   - routing: an IQ or message from the user to a component address
//     registered on one of the servers goes to the live link of that
//     component, with 'from' stamped with the user's full JID, and the
//     answer comes back; the components' other stanzas to a user reach
//     that user (Server.SetRouter). An IQ to a registered component with
//     no live link is answered remote-server-timeout ("component
//     unavailable"), to an unknown domain remote-server-not-found, as
//     Prosody does; the server domain answers XEP-0199 pings.
//
// Anything else ends the session with a stream error: not-authorized for
// a stanza before the login, not-well-formed for a frame that is not one
// element or holds bytes that are not UTF-8 XML characters,
// unsupported-encoding for a binary frame,
// unsupported-stanza-type, invalid-namespace, host-unknown for another
// domain. Every resource is bounded: the frame size, the number of
// sessions, the IQs a session may have waiting for a component, and the
// stanzas queued to a session.
//
// # Use
//
//	ws, err := wstest.New(wstest.Options{Domain: lab.Domain, Servers: lab.Servers})
//	...
//	defer ws.Close()
//	fmt.Println(ws.URL()) // ws://127.0.0.1:port/xmpp-websocket
//
// Close ends every session and returns once every goroutine and
// connection the endpoint started is gone.
package wstest
