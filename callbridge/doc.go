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
// # The connection cycle
//
// Each cycle resolves the server afresh (the resolver's cache honours TTLs),
// then tries the endpoints in order: TCP to the endpoint's addresses raced
// RFC 8305 style, TLS with the certificate checks (the FQDN required is the
// SRV target or the explicit host, unless Config.ServerName overrides it),
// then the component handshake. A failure moves straight on to the next
// endpoint; only when every endpoint failed does the bridge wait, with
// exponential backoff and full jitter (Config.Backoff). A see-other-host
// stream error is followed once.
//
// When a link that held drops, the bridge starts a new cycle at once, trying
// the server it lost last. Links that keep dropping right after coming up
// (within Backoff.ResetAfter) are treated as failures, so a flapping server is
// not hammered.
//
// Wrong secrets and unknown names are permanent errors: an operator must fix
// the XMPP server. The bridge reports them as such in Status and keeps
// retrying at Backoff.Max, as CMS does, unless Config.StopOnPermanentError
// asks Run to return instead.
//
// With Config.FailBack, a bridge connected to a lower-priority SRV target
// probes the preferred ones and moves back as soon as one accepts it, opening
// the new link before closing the old one.
//
// # Observing it
//
// Status gives a snapshot, WaitForStateChange waits for the next state, and
// Subscribe delivers every state change in order without ever slowing the
// bridge. Stats counts connections, failures by cause, stanzas and join
// requests. Every transition is logged on Config.Logger with the keys state,
// server, addr, err, attempt and backoff. The shared secret never appears in
// logs, errors or Config's String and LogValue.
package callbridge
