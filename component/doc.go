// Package component implements one authenticated XEP-0114 (Jabber Component
// Protocol) link over an already-dialled connection: the handshake, then
// sending, receiving and dispatching stanzas until the link ends. It never
// reconnects; package callbridge does that.
//
// # Session
//
// NewSession runs the handshake on a connection (direct TLS already set
// up, or plain TCP) and, on success, starts the session's loops:
//
//	s, err := component.NewSession(ctx, conn, component.Config{
//		Name: "cb1", Domain: "example.com", Secret: component.NewSecret(secret), Handler: mux,
//	})
//	if err != nil {
//		// a typed error: errors.Is(err, stream.NotAuthorized), ...
//	}
//	defer s.Close()
//	<-s.Done() // s.Err() says why the link ended
//
// Handshake authenticates without reading anything yet, so that a program
// can publish the session where its handlers will look before calling
// Start; NewSession is Handshake followed by Start.
//
// The component address is Name + "." + Domain (cb1.example.com). The
// handshake follows XEP-0114: the server's header must be in the
// jabber:component:accept namespace, name the component (or omit from) and
// carry a non-empty id; nothing derived from the secret is sent otherwise.
// The secret never appears in errors or logs.
//
// # Errors
//
// A stream error, whether the server sent it or this side did, is a
// *StreamError wrapping mellium's stream.Error, so errors.Is(err,
// stream.NotAuthorized) works; its message is meant for operators.
// Sentinels (ErrClosed, ErrDisconnected, ErrTimeout, ErrNoStreamID, ...)
// cover the rest. Every handshake failure that shows the server does not
// speak XEP-0114 as configured (a client port, an HTTP answer, junk or a
// stanza instead of the reply, no or a bad id, another component's
// address) also wraps ErrHandshakeProtocol, whether it is a *StreamError
// this side sent or a sentinel. Unusable settings give a *ConfigError
// listing every problem by field (Config.Validate checks them before any
// I/O); it matches ErrConfig, and callbridge.Config reports its problems
// with the same type under the same rules. Whether an error is one an
// operator must fix is decided in one place for the whole module:
// callbridge.Classify, which gives a handshake error the same kind whether
// it comes from Handshake directly or through a callbridge.Bridge.
//
// # Sending and receiving
//
// Send, SendIQ and Ping are safe for concurrent use, from handlers too.
// Every outgoing stanza gets the component address as from unless it
// carries one inside the component's domain; others are refused, since
// servers end the stream for them. Stanzas queued together leave in one
// write.
//
// Incoming stanzas go to a Mux: IQ get/set by payload name and namespace,
// messages and presences by kind. Each stanza for a handler runs on a
// goroutine of its own, up to Config.Workers at once and Config.MaxQueuedBytes
// held (optionally one at a time per sender, the others waiting behind
// it, up to Config.QueueSize), so a slow handler never stalls the reader:
// a stanza that finds no room is shed at once (resource-constraint). A
// handler's ctx is cancelled when the link ends; a handler whose ctx
// ended, or that returns an error wrapping context.Canceled or
// context.DeadlineExceeded, is answered service-unavailable (type wait),
// whatever it returns. Unhandled IQs get
// service-unavailable, handler errors become stanza errors, panics are
// recovered. XEP-0199 pings from the server are answered on the reader
// itself, without allocating.
//
// # Ending a session
//
// Every IQ request read gets exactly one reply while the stream can carry
// one. Close answers the requests still queued or running with
// service-unavailable, sends </stream:stream> and returns within about
// Config.CloseTimeout whatever the server does. Shutdown first lets them
// finish, refusing new ones, until its ctx ends. Abort drops the
// connection at once. All three wait for the session's goroutines (see
// Session for the two kinds of handlers that are not waited for) and may
// be called from a handler.
//
// # Join requests
//
// NSJoin documents the shape of the WebRTC join request the XMPP server
// forwards; Mux.HandleJoin decodes it for a typed JoinHandler, and
// MarshalJoinIQ and ParseJoinResponse play the other side.
//
// # Liveness
//
// A single space is sent after Config.KeepaliveIdle without writes, an
// XEP-0199 ping goes to the server every Config.PingInterval, and the link
// is declared dead (ErrTimeout) when a ping goes unanswered while nothing
// at all is read, or nothing is read for Config.ReadTimeout. Keepalives and
// pings never wait for room in the send queue. TCP keepalive is enabled on
// TCP connections.
package component
