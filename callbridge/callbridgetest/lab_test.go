package callbridgetest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/component"
)

// TestLabWithFixturePKI runs a lab on the committed testdata/pki
// certificates: a bridge that trusts only testdata/pki/ca.pem (as a file)
// connects through SRV and takes a join.
func TestLabWithFixturePKI(t *testing.T) {
	const dir = "../../testdata/pki/"
	cert, ca, err := callbridgetest.LoadPKI(dir+"server.pem", dir+"server-key.pem", dir+"ca.pem")
	require.NoError(t, err)
	caPEM, err := os.ReadFile(dir + "ca.pem")
	require.NoError(t, err)
	_, _, err = callbridgetest.LoadPKI(dir+"server.pem", dir+"server-key.pem", dir+"server-key.pem")
	require.Error(t, err, "a key is not a CA certificate")

	l, err := callbridgetest.NewLab(callbridgetest.Options{
		Certificate: cert, CACert: ca,
		Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10}, {Name: "xmpp2.example.com", Priority: 20}},
	})
	require.NoError(t, err)
	defer l.Close()
	assert.Equal(t, caPEM, l.RootPEM(), "the lab's root is the fixture CA")
	c, err := l.Certificate("xmpp2.example.com")
	require.NoError(t, err)
	assert.Contains(t, c.DNSNames, "xmpp2.example.com")

	cfg := l.Config()
	cfg.RootCAs, cfg.RootCAFile = nil, dir+"ca.pem"
	b, err := callbridge.New(cfg)
	require.NoError(t, err)
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- b.Run(ctx) }()
	st, err := callbridgetest.WaitState(ctx, b, callbridge.Connected)
	require.NoError(t, err)
	assert.Equal(t, "xmpp1.example.com", st.Server)
	res, err := l.Join(ctx, st.Server, &component.JoinRequest{Call: "100"})
	require.NoError(t, err)
	assert.Equal(t, "s-100", res.Session)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}
