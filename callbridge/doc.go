// Package callbridge plays the Call Bridge of Cisco Meeting Server toward its
// XMPP server: it finds the server (explicit address or DNS SRV), connects
// over direct TLS, checks that the certificate names both the XMPP domain and
// the server, logs in as an XEP-0114 component, and keeps exactly one healthy
// link up for as long as its context lives, dispatching incoming join
// requests to the program's handlers.
//
// It composes the lower packages: discovery (SRV per RFC 2782, then A/AAAA),
// tlsverify (chain and SANs), and component (one link). Only this package
// reconnects.
//
// # Use
//
//	b, err := callbridge.New(callbridge.Config{
//		Name:       "cb1",
//		Domain:     "example.com",
//		SecretFile: "/etc/cblink/secret",
//	})
//	if err != nil { ... }  // every settings problem at once
//	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
//		return &component.JoinResult{Session: "..."}, nil
//	})
//	err = b.Run(ctx)       // returns when ctx ends, after closing the stream
//
// To stop a running bridge gracefully (on SIGTERM, say), call Shutdown with
// a deadline: join requests in progress finish, new ones are refused, then
// the stream closes. Close, or the end of Run's ctx, stops at once but
// still answers every request queued or running (service-unavailable).
//
// # The connection cycle
//
// Each cycle resolves the server afresh (the resolver's cache honours TTLs),
// then tries the endpoints in order: TCP to the endpoint's addresses raced
// RFC 8305 style, TLS with the certificate checks (the FQDN required is the
// SRV target or the explicit host, unless Config.ServerName overrides it),
// then the component handshake. A failure moves straight on to the next
// endpoint, and an attempt that makes no progress for Config.ParallelAfter
// (a frozen server) has the next endpoint started beside it, the first to
// authenticate winning. A see-other-host stream error is followed once.
//
// Failures are counted per endpoint: the bridge never waits before trying
// an endpoint that has not failed. Only when every endpoint has failed does
// it wait, with exponential backoff and full jitter capped at
// Backoff.TransientMax (10s): a Call Bridge without its link is a service
// that is down. The failure of such a cycle is permanent only when every
// endpoint's last failure was. When a healthy link drops (the server
// answered one of the bridge's pings on it, or it lived
// Backoff.ResetAfter), the bridge starts a new cycle at once, trying the
// server it lost after the others, and while that outage lasts its waits
// stay under half the outage so far, so that a server restarted in a few
// seconds is back in use within a second or two of listening again. A
// server that keeps dropping the link before it was healthy (flapping)
// counts as failing and is backed off; stanzas both ways do not make a link
// healthy, since the bridge answers whatever it is sent. Whatever the
// server does, attempts on one endpoint start at least a second apart
// (Backoff.Base if shorter). The Backoff type has the table of what each
// failure waits.
//
// Classify gives the kind of any error of the module (DNS, network, TLS,
// certificate, handshake, stream); it is the one classification, used for
// Status, Stats, logs and the backoff. Permanent kinds are those an
// operator must fix: invalid settings, no service published in DNS, a
// certificate that is not trusted or lacks a name, a server that does not
// speak XEP-0114 as configured (wrong port, another component), a wrong
// secret, an unknown name. The bridge reports them as such in Status and
// keeps retrying at Backoff.Max, as CMS does, unless
// Config.StopOnPermanentError asks Run to return instead.
//
// With Config.FailBack, a bridge connected to a lower-priority SRV target
// probes the preferred ones on a goroutine of its own (the live link stays
// supervised meanwhile) and moves back as soon as one accepts it, opening
// the new link before the old one drains and closes.
//
// # Ownership and lifecycle
//
// Run owns every goroutine and connection of the bridge: the connection
// cycle, connection attempts, the fail-back probe, links being drained or
// closed in the background, and the live component.Session with its
// reader, writer and handler workers. When Run returns, none is left (but
// a handler that ignores its cancelled context; see component.Session).
// Close and Shutdown wait for Run. Each subscription's goroutine belongs to
// the subscription and ends with its cancel function or the bridge.
//
// A link is published (Session, Send, Status Connected) before its first
// stanza is dispatched, so handlers may send through the bridge as well as
// through component.SessionFromContext. Every join request received gets
// exactly one reply while the stream can carry one: Close answers what is
// queued or running with service-unavailable before </stream:stream>;
// Shutdown, Update and fail-back first let it finish (Shutdown until its
// ctx ends, the others for up to Config.DrainTimeout). A full queue sheds
// at once with resource-constraint rather than stalling the reader.
// docs/lifecycle.md has the tables and the state diagram.
//
// # Observing it
//
// Status gives a snapshot, WaitForStateChange waits for the next state, and
// Subscribe delivers every state change in order without ever slowing the
// bridge. Stats counts connections, failures by cause, stanzas and join
// requests. Every transition is logged on Config.Logger with the keys state,
// server, addr, err, attempt and backoff. The shared secret never appears in
// logs, errors, or any formatting or encoding of Config (fmt, slog, JSON:
// its type, component.Secret, redacts itself).
package callbridge
