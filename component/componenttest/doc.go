// Package componenttest provides an in-process XMPP server that accepts
// XEP-0114 component connections, for tests of Call Bridge programs, in the
// spirit of net/http/httptest.
//
// It implements the receiving side of XEP-0114 (Jabber Component
// Protocol) as a strict server would: its own stream header with a fresh
// random id, a constant-time check of the <handshake/> digest, and the
// stream errors real servers send (not-authorized for a wrong secret,
// host-unknown for an unknown name right after the header as Prosody does,
// conflict for a second link with the same name unless AcceptDuplicates
// is set as on ejabberd, invalid-namespace, improper-addressing for a
// stanza without 'from', invalid-from for a 'from' outside the component's
// address, policy-violation beyond the stanza size limit,
// connection-timeout on the handshake and idle deadlines). XEP-0199 pings
// to the server domain are answered; other IQ get/set to it get
// service-unavailable (unless the test answers them: AnswerIQs).
// Whitespace keepalives are accepted.
//
// # Recorder: handlers without a network
//
// Recorder is the httptest.ResponseRecorder of this package: it calls a
// component.JoinHandler or IQHandler as a live link would and records its
// reply and every stanza it sent, with no socket at all (a real
// component.Session over net.Pipe, against this package's server):
//
//	var rec componenttest.Recorder
//	got, err := rec.Join(ctx, myHandler, &component.JoinRequest{Call: "100"})
//	res, err := got.JoinResult() // or got.Err(): the stanza error sent
//	got.Sent                     // what the handler sent, in order
//
// The handler's ctx carries the session (component.SessionFromContext),
// which is how a handler should send: the recorder cannot give it a
// *callbridge.Bridge. Recorder.AnswerIQs answers the handler's own SendIQ.
//
// # Use
//
//	srv, err := componenttest.NewServer(componenttest.Options{Domain: "example.com"})
//	...
//	defer srv.Close()
//	srv.AddComponent("cb1.example.com", "s3cret") // full component address
//	// point the Call Bridge at srv.Addr(), trusting srv.CertPool()
//	conn, err := srv.WaitConn(ctx, "cb1.example.com")
//	reply, err := conn.SendIQ(ctx, []byte(`<iq type='set' id='j1' from='alice@example.com/web' to='cb1.example.com'>...</iq>`))
//	st, err := conn.Next(ctx) // anything else the component sent
//
// The server listens with direct TLS (TLS from the first byte, as Cisco
// Meeting Server's Call Bridge expects) using a certificate made by an
// in-memory CA whose pool and PEM the test reads with CertPool and RootPEM;
// Options.Plain selects plain TCP.
//
// # Faults
//
// SetFault, SetFaultFunc and Options.Faults inject misbehaviour into
// accepted connections at a Phase: close, TCP reset, stall, blackhole,
// arbitrary bytes, any stream error (see-other-host with its new address,
// system-shutdown, ...) and header tweaks (no id, empty id, wrong
// namespace). A live Conn offers the same as methods (Reset, Stall,
// Blackhole, SendRaw, SendStreamError, SendOversize), and RawReceived shows
// every byte the component sent, so a test can prove for instance that no
// <handshake> followed a header without id.
//
// # Lab
//
// NewLab starts several servers that accept the same component, with
// certificates from one in-memory CA naming the XMPP domain and each server,
// behind a dnstest server publishing their _xmpp-component._tcp SRV records:
// a whole deployment on loopback; LabOptions.ServerOptions sets the
// servers' Options. Lab.Join plays a web user's join request through a
// server; Lab.StartJoin sends one and returns at once (its id now, its
// answer from PendingJoin.Wait). Lab.WaitLink waits for a link newer than
// the one that was up (a reconnection), on any server. Lab.Inbox collects
// what the component sends one web user, and Lab.AnswerIQs answers the
// component's own IQs. Package callbridge/callbridgetest adds a ready
// callbridge.Config on top, and runs the bridge.
//
// # Restart
//
// Stop and Start close and reopen the listener on the same address;
// NewServer with Options.Addr set to an earlier server's Addr brings a
// server back where a dead one was.
//
// Close closes everything and returns once every goroutine of the server
// has exited.
package componenttest
