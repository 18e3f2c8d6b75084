package callbridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/internal/testhelp"
)

// TestConfigNeverFormatted: the secret shows in no formatting of a Config,
// of a program's struct holding one in an exported or an unexported field
// (fmt prints unexported fields by reflection, without calling their
// methods), nor of the resolved settings.
func TestConfigNeverFormatted(t *testing.T) {
	c := validConfig()
	type program struct {
		bridge Config
		link   component.Config
	}
	link := component.Config{Name: "cb1", Domain: "example.com", Secret: c.Secret}
	r, err := c.resolve()
	require.NoError(t, err)
	testhelp.NeverShows(t, testSecret, c, &c, struct{ Bridge Config }{c}, program{c, link}, &program{c, link}, r, *r)
}

// TestLiveBridgeFormatting: printing a running Bridge, its live Session,
// or a program's struct holding either in an unexported field, races with
// none of their goroutines (run with -race), shows the address and state,
// and never the secret.
func TestLiveBridgeFormatting(t *testing.T) {
	r := newRig(t, 10)
	rb := r.start(r.config())
	rb.waitState(t, Connected, 10*time.Second)
	s, err := rb.Session()
	require.NoError(t, err)
	type program struct {
		bridge  *Bridge
		session *component.Session
	}
	values := []any{rb.Bridge, s, program{rb.Bridge, s}, &program{rb.Bridge, s},
		struct {
			B *Bridge
			S *component.Session
		}{rb.Bridge, s}}

	stop := testhelp.Busy(func() { // keep the link's goroutines busy while it is printed
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.Ping(ctx)
		cancel()
	})
	for range 10 {
		testhelp.NeverShows(t, testSecret, values...)
	}
	assert.Equal(t, "callbridge.Bridge(cb1.example.com, connected, server xmpp1.example.com)", fmt.Sprint(rb.Bridge))

	stopped := make(chan error, 1)
	go func() { stopped <- rb.Close() }()
	testhelp.NeverShows(t, testSecret, values...) // while it stops
	<-stopped
	stop()
	testhelp.NeverShows(t, testSecret, values...)
	assert.Contains(t, fmt.Sprint(rb.Bridge), "callbridge.Bridge(cb1.example.com, stopped")
	var none *Bridge
	assert.Equal(t, "<nil>", fmt.Sprint(none))
	assert.Equal(t, "<nil>", fmt.Sprint(&Bridge{}), "not made by New: no panic")
}
