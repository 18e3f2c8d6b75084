package callbridge

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// TestClassifyAgreesWithComponentHandshake: one server behaviour, one
// kind, whoever reports it: Classify gives the error of
// component.Handshake (whose doc points to Classify) the kind the bridge
// reports for the same server. Before, a handshake that was not XEP-0114
// was protocol (permanent) through the bridge and stream (retried) from
// component.Handshake.
func TestClassifyAgreesWithComponentHandshake(t *testing.T) {
	const header = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='" + testAddr + "'"
	cases := []struct {
		name   string
		faults []componenttest.Fault
		secret string // the server's secret for the component, if not the bridge's
		kind   ErrorKind
	}{
		{"client port (jabber:client header)", []componenttest.Fault{{Header: componenttest.HeaderTweak{Namespace: "jabber:client"}}}, "", KindProtocol},
		{"HTTP answer", []componenttest.Fault{{Header: componenttest.HeaderTweak{Raw: []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")}}}, "", KindProtocol},
		{"header without id", []componenttest.Fault{{Header: componenttest.HeaderTweak{OmitID: true}}}, "", KindProtocol},
		{"malformed id", []componenttest.Fault{{Header: componenttest.HeaderTweak{Raw: []byte(header + " id='a&bogus;'>")}}}, "", KindProtocol},
		{"header for another component", []componenttest.Fault{{Header: componenttest.HeaderTweak{From: "cb2.example.com"}}}, "", KindProtocol},
		{"junk as the handshake reply", []componenttest.Fault{{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionSend, Bytes: []byte("<<<>>>")}}, "", KindProtocol},
		{"a stanza as the handshake reply", []componenttest.Fault{{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionSend,
			Bytes: []byte("<message from='example.com' to='" + testAddr + "'/>")}}, "", KindProtocol},
		{"wrong secret", nil, "another-" + testSecret, KindAuth},
		{"closed after the handshake was sent", []componenttest.Fault{{Phase: componenttest.PhaseHandshakeReceived, Action: componenttest.ActionClose}}, "", KindNetwork},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 10)
			srv := r.servers[0]
			srv.SetFaultFunc(func(int) []componenttest.Fault { return tc.faults })
			if tc.secret != "" {
				srv.AddComponent(testAddr, tc.secret)
			}

			// component.Handshake on its own.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", srv.Addr())
			require.NoError(t, err)
			tconn := tls.Client(conn, &tls.Config{RootCAs: r.Pool(), ServerName: r.names[0]})
			sess, err := component.Handshake(ctx, tconn, component.Config{Name: "cb1", Domain: testDomain, Secret: component.NewSecret(testSecret),
				Tuning: component.Tuning{HandshakeTimeout: 3 * time.Second}})
			require.Error(t, err)
			require.Nil(t, sess)
			noteErr(err)
			direct := Classify(err)

			// The same server through a Bridge.
			rb := r.start(r.config())
			st := rb.waitState(t, BackingOff, 10*time.Second)
			assert.Equal(t, tc.kind, direct, "component.Handshake: %v", err)
			assert.Equal(t, tc.kind, st.LastErrKind, "bridge: %v", st.LastErr)
			assert.Equal(t, tc.kind.Permanent(), st.Permanent)
		})
	}
}
