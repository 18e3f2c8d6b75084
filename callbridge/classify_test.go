package callbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/internal/testhelp"
	"github.com/cblink/cblink/internal/testpki"
	"github.com/cblink/cblink/tlsverify"
)

// TestClassifyEndToEnd runs a bridge with StopOnPermanentError into each
// failure a real deployment meets, at every layer (DNS, TCP, TLS and the
// certificate, the XEP-0114 handshake), and checks the one classification:
// a permanent kind makes Run give up at once with a *PermanentError; a
// transient one is retried, and Status says which kind it was.
func TestClassifyEndToEnd(t *testing.T) {
	cases := []struct {
		name  string
		setup func(r *rig, cfg *Config)
		kind  ErrorKind
	}{
		{"wrong secret", func(r *rig, cfg *Config) { cfg.Secret = component.NewSecret("wrong-" + testSecret) }, KindAuth},
		{"unknown name", func(r *rig, cfg *Config) { cfg.Name = "cb9" }, KindUnknownName},
		{"header without id", func(r *rig, cfg *Config) {
			r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
				return []componenttest.Fault{{Header: componenttest.HeaderTweak{OmitID: true}}}
			})
		}, KindProtocol},
		{"header for another component", func(r *rig, cfg *Config) {
			r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
				return []componenttest.Fault{{Header: componenttest.HeaderTweak{From: "cb2.example.com"}}}
			})
		}, KindProtocol},
		{"client port (jabber:client)", func(r *rig, cfg *Config) {
			r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
				return []componenttest.Fault{{Header: componenttest.HeaderTweak{Namespace: "jabber:client"}}}
			})
		}, KindProtocol},
		{"plain TCP where TLS was expected (a plain component port)", func(r *rig, cfg *Config) {
			plain, err := componenttest.NewServer(componenttest.Options{Domain: testDomain, Plain: true,
				Components: map[string]string{testAddr: testSecret}})
			require.NoError(r.t, err)
			r.t.Cleanup(plain.Close)
			cfg.Server, cfg.ServerName = plain.Addr(), "xmpp1.example.com"
		}, KindProtocol},
		{"certificate lacks the server FQDN", func(r *rig, cfg *Config) { cfg.ServerName = "xmpp9.example.com" }, KindCertificate},
		{"unknown CA", func(r *rig, cfg *Config) { cfg.RootCAs = testpki.MustCA(testpki.Template{}).Pool() }, KindCertificate},
		{"SRV target \".\"", func(r *rig, cfg *Config) {
			r.dns.Set("_xmpp-component._tcp.example.com.", 33)
			require.NoError(t, r.dns.AddZone("_xmpp-component._tcp.example.com. 1 IN SRV 0 0 0 ."))
		}, KindNoService},
		{"system-shutdown", func(r *rig, cfg *Config) {
			r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
				return []componenttest.Fault{{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionStreamError, Err: stream.SystemShutdown}}
			})
		}, KindShutdown},
		{"malformed redirect", func(r *rig, cfg *Config) {
			r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
				return []componenttest.Fault{{Phase: componenttest.PhaseHeader, Action: componenttest.ActionStreamError,
					Err: stream.Error{Err: "see-other-host", Content: "xmpp2.example.com:99999"}}}
			})
		}, KindRedirect},
		{"server stops", func(r *rig, cfg *Config) { r.servers[0].Stop() }, KindNetwork},
		{"dropped during the handshake", func(r *rig, cfg *Config) {
			r.servers[0].SetFaultFunc(func(int) []componenttest.Fault {
				return []componenttest.Fault{{Phase: componenttest.PhaseHeader, Action: componenttest.ActionClose}}
			})
		}, KindNetwork},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 10)
			cfg := r.config()
			cfg.StopOnPermanentError = true
			tc.setup(r, &cfg)
			rb := r.start(cfg)
			if tc.kind.Permanent() {
				var err error
				select {
				case err = <-rb.errc:
					rb.errc <- err
				case <-time.After(10 * time.Second):
					t.Fatalf("Run did not give up on a permanent %s error; status %+v", tc.kind, rb.Status())
				}
				var pe *PermanentError
				require.ErrorAs(t, err, &pe, "%v", err)
				assert.Equal(t, tc.kind, Classify(err), "%v", err)
				assert.True(t, rb.Status().Permanent)
				if tc.kind == KindUnknownName {
					assert.Contains(t, err.Error(), `; hint: check the Call Bridge name "cb9" first; if it is right, add the component on the XMPP server (on Cisco Meeting Server: xmpp callbridge add cb9)`,
						"a typo first, then the CMS operator's command, apart from the server's text")
				}
				return
			}
			st := rb.waitState(t, BackingOff, 10*time.Second)
			assert.Equal(t, tc.kind, st.LastErrKind, "%v", st.LastErr)
			assert.False(t, st.Permanent)
		})
	}
}

// TestClassifyTable covers errors that are hard to produce end to end,
// and the permanent set.
func TestClassifyTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind ErrorKind
	}{
		{nil, KindNone},
		{ErrClosed, KindClosed},
		{component.ErrClosed, KindClosed},
		{&component.ConfigError{Problems: []component.ConfigProblem{{Field: "Name"}}}, KindConfig},
		{fmt.Errorf("x: %w", component.ErrConfig), KindConfig},
		{&discovery.Error{Kind: discovery.KindTimeout, Err: errors.New("i/o timeout")}, KindDNS},
		{&discovery.Error{Kind: discovery.KindNoSRV, Err: discovery.ErrNoSRV}, KindNoService},
		{&RedirectError{Addr: "x:99999", Err: &discovery.Error{Kind: discovery.KindBadAddress, Err: discovery.ErrBadAddress}}, KindRedirect},
		{fmt.Errorf("%w: %w", component.ErrHandshakeProtocol, &component.StreamError{Err: stream.NotWellFormed, Local: true}), KindProtocol}, // in the handshake
		{&component.StreamError{Err: stream.NotWellFormed, Local: true}, KindStream},                                                         // mid-session
		{&ConnectError{Step: Authenticating, Err: &component.StreamError{Err: stream.NotWellFormed, Local: true}}, KindStream},               // the wrapper does not matter
		{&component.StreamError{Err: stream.ImproperAddressing}, KindProtocol},
		{&component.StreamError{Err: stream.Error{Err: "host-gone"}}, KindUnknownName},
		{&component.StreamError{Err: stream.Conflict}, KindConflict},
		{&component.StreamError{Err: stream.ConnectionTimeout}, KindTimeout},
		{&component.StreamError{Err: stream.PolicyViolation}, KindStream},
		{component.ErrPeerClosed, KindStream},
		{fmt.Errorf("component: ping: %w", component.ErrTimeout), KindTimeout},
		{fmt.Errorf("%w: %w: <message> instead of the handshake reply", component.ErrHandshakeProtocol, component.ErrProtocol), KindProtocol},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), KindNetwork},
		{context.DeadlineExceeded, KindTimeout},
		{&ConnectError{Step: TLS, Err: tls.AlertError(40)}, KindTLS}, // handshake_failure (Prosody on an unknown SNI)
		// unrecognized_name (Prosody 0.12 when -domain names a host it
		// does not serve): the settings are wrong, retrying cannot help.
		{&ConnectError{Step: TLS, Err: fmt.Errorf("TLS handshake: %w (%w)", tlsverify.ErrUnrecognizedName, errors.New("remote error: tls: unrecognized name"))}, KindConfig},
		{&ConnectError{Step: TLS, Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, KindProtocol},
	} {
		assert.Equal(t, tc.kind, Classify(tc.err), "%v", tc.err)
	}
	var perm []ErrorKind
	for _, k := range []ErrorKind{KindConfig, KindNoService, KindDNS, KindNetwork, KindTLS, KindCertificate, KindProtocol,
		KindAuth, KindUnknownName, KindConflict, KindRedirect, KindShutdown, KindStream, KindTimeout, KindClosed, KindFailBack} {
		if k.Permanent() {
			perm = append(perm, k)
		}
	}
	assert.Equal(t, []ErrorKind{KindConfig, KindNoService, KindCertificate, KindProtocol, KindAuth, KindUnknownName}, perm,
		"the permanent set is what an operator must fix")
}

// TestErrorKindsListsEveryKind parses the package for ErrorKind constants,
// so that a kind added without ErrorKinds (and so missing from metrics at
// zero) fails here.
func TestErrorKindsListsEveryKind(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "state.go", nil, 0)
	require.NoError(t, err)
	var declared []ErrorKind
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "ErrorKind" {
				continue
			}
			for _, v := range vs.Values {
				lit := v.(*ast.BasicLit)
				k, err := strconv.Unquote(lit.Value)
				require.NoError(t, err)
				if k != "" {
					declared = append(declared, ErrorKind(k))
				}
			}
		}
	}
	require.NotEmpty(t, declared)
	assert.Equal(t, declared, ErrorKinds())
}

// TestConnectErrorWording: a plain-XMPP port is recognised from the bytes
// it answers; a stalled step says which one and for how long; crypto/tls's
// prefix is not doubled.
func TestConnectErrorWording(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		tune  func(*Config)
		check func(t *testing.T, err error)
	}{
		{"plain XMPP (client port): answers the ClientHello with XML", func(c net.Conn) {
			_, _ = c.Read(make([]byte, 512))
			_, _ = io.WriteString(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
		}, nil, func(t *testing.T, err error) {
			require.ErrorIs(t, err, tlsverify.ErrPlainXMPP)
			assert.Equal(t, KindProtocol, Classify(err))
			assert.Contains(t, err.Error(), "TLS handshake: this port speaks plain XMPP, not direct TLS; the direct-TLS component port is usually 5223")
		}},
		{"TLS stall: accepts and never answers", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }, func(cfg *Config) {
			cfg.HandshakeTimeout = 300 * time.Millisecond
		}, func(t *testing.T, err error) {
			assert.Equal(t, KindTimeout, Classify(err))
			assert.Regexp(t, `TLS handshake stalled: no progress for \d+ms`, err.Error())
			var ce *ConnectError
			require.ErrorAs(t, err, &ce)
			assert.GreaterOrEqual(t, ce.Elapsed, 250*time.Millisecond, "the stall lasted the handshake timeout")
		}},
		{"not TLS, not XML", func(c net.Conn) {
			_, _ = c.Read(make([]byte, 512))
			_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n")
		}, nil, func(t *testing.T, err error) {
			assert.NotErrorIs(t, err, tlsverify.ErrPlainXMPP)
			assert.Equal(t, KindProtocol, Classify(err))
			assert.NotContains(t, err.Error(), "tls: tls:")
			assert.Contains(t, err.Error(), "TLS handshake: first record does not look like a TLS handshake")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 10)
			cfg := r.config()
			cfg.Server, cfg.ServerName = testhelp.Listen(t, tc.serve), "xmpp1.example.com"
			if tc.tune != nil {
				tc.tune(&cfg)
			}
			rb := r.start(cfg)
			st := rb.waitState(t, BackingOff, 10*time.Second)
			var ce *ConnectError
			require.ErrorAs(t, st.LastErr, &ce)
			assert.Equal(t, TLS, ce.Step)
			tc.check(t, st.LastErr)
		})
	}
}
