package callbridge

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
)

type nilDialer struct{}

func (nilDialer) DialContext(context.Context, string, string) (net.Conn, error) { return nil, nil }

type stubResolver struct{ r *discovery.Result }

func (s stubResolver) Lookup(context.Context, discovery.Request) (*discovery.Result, error) {
	return s.r, nil
}

// runUntilPermanent runs a bridge with StopOnPermanentError and returns
// Run's error, failing if Run does not return.
func runUntilPermanent(t *testing.T, cfg Config) error {
	t.Helper()
	cfg.Name, cfg.Domain, cfg.Secret = "cb1", testDomain, component.NewSecret(testSecret)
	cfg.StopOnPermanentError = true
	b, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = b.Run(ctx)
	noteErr(err)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "Run did not give up")
	return err
}

// TestDialerReturningNothing: a Config.Dialer that returns neither a
// connection nor an error is a *ContractError (KindConfig, permanent), not
// a panic.
func TestDialerReturningNothing(t *testing.T) {
	err := runUntilPermanent(t, Config{Server: "127.0.0.1:5223", Dialer: nilDialer{}})
	var pe *PermanentError
	require.ErrorAs(t, err, &pe)
	var ce *ContractError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Dialer", ce.Field)
	assert.Equal(t, KindConfig, Classify(err))
	var conn *ConnectError
	require.ErrorAs(t, err, &conn)
	assert.Equal(t, Connecting, conn.Step)
}

// TestResolverReturningNothing: a Config.Resolver that returns no error
// with a nil result, no endpoints, or an endpoint without an address is a
// *ContractError (KindConfig, permanent), not a panic.
func TestResolverReturningNothing(t *testing.T) {
	for name, r := range map[string]*discovery.Result{
		"nil result":   nil,
		"no endpoints": {},
		"no address":   {Endpoints: []discovery.Endpoint{{Target: "xmpp1.example.com", Port: 5223}}},
	} {
		t.Run(name, func(t *testing.T) {
			err := runUntilPermanent(t, Config{Resolver: stubResolver{r}})
			var ce *ContractError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "Resolver", ce.Field)
			assert.Equal(t, KindConfig, Classify(err))
		})
	}
}

// TestRedirectResolverReturningNothing: the same through a see-other-host
// redirect's lookup: the redirect is reported as not followed.
func TestRedirectResolverReturningNothing(t *testing.T) {
	b, err := New(Config{Name: "cb1", Domain: testDomain, Secret: component.NewSecret(testSecret), Resolver: stubResolver{}})
	require.NoError(t, err)
	cfg, _ := b.current()
	seeOther := &component.StreamError{Err: stream.Error{Err: "see-other-host", Content: "xmpp2.example.com:5223"}}
	assert.Nil(t, b.redirect(context.Background(), cfg, seeOther))
	var re *RedirectError
	require.ErrorAs(t, b.Status().LastErr, &re)
	var ce *ContractError
	assert.ErrorAs(t, b.Status().LastErr, &ce)
}
