package component_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/internal/testhelp"
)

// TestSecretNeverFormatted: the secret shows in no formatting of a Secret
// or a Config, value or pointer, nor of a program's struct holding either
// in an exported or an unexported field (fmt prints unexported fields by
// reflection, without calling their methods); a JSON config file still
// loads it.
func TestSecretNeverFormatted(t *testing.T) {
	cfg := component.Config{Name: "cb1", Domain: "example.com", Secret: component.NewSecret(secret)}
	type program struct {
		link   component.Config
		secret component.Secret
	}
	testhelp.NeverShows(t, secret, cfg.Secret, &cfg.Secret, cfg, &cfg,
		struct{ Link component.Config }{cfg}, program{cfg, cfg.Secret}, &program{cfg, cfg.Secret},
		[]component.Config{cfg}, map[string]component.Secret{"cb1": cfg.Secret})

	assert.Equal(t, "[redacted]", fmt.Sprint(cfg.Secret))
	assert.Equal(t, "[empty]", fmt.Sprint(component.NewSecret("")))
	assert.Equal(t, "[empty]", fmt.Sprint(component.Secret{}))
	assert.True(t, component.NewSecret("").IsZero())
	assert.False(t, cfg.Secret.IsZero())

	var back component.Config
	require.NoError(t, json.Unmarshal([]byte(`{"Name":"cb1","Secret":"`+secret+`"}`), &back))
	assert.Equal(t, cfg.Secret, back.Secret, "a JSON config file holds the secret")
}

// TestLiveSessionFormatting: printing a live Session (or a struct holding
// one), while it pings, answers and closes, races with none of its
// goroutines (run with -race), shows its address and state, and never the
// secret.
func TestLiveSessionFormatting(t *testing.T) {
	e := newEnv(t, componenttest.Options{})
	s, _ := e.connect(e.config())
	type program struct{ link *component.Session }
	values := []any{s, program{s}, &program{s}, struct{ Link *component.Session }{s}}

	stop := testhelp.Busy(func() { // keep the session's goroutines busy while it is printed
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = s.Ping(ctx)
		cancel()
	})
	for range 20 {
		testhelp.NeverShows(t, secret, values...)
	}
	assert.Equal(t, "component.Session(cb1.example.com, up)", fmt.Sprint(s))

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testhelp.NeverShows(t, secret, values...) // while it closes
	require.NoError(t, <-closed)
	<-s.Done()
	stop()
	testhelp.NeverShows(t, secret, values...)
	assert.Equal(t, "component.Session(cb1.example.com, ended: component: session closed)", fmt.Sprint(s))
	var none *component.Session
	assert.Equal(t, "<nil>", fmt.Sprint(none))
	assert.Equal(t, "<nil>", fmt.Sprint(&component.Session{}), "not made by NewSession: no panic")
}
