//go:build integration

package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

// TestIntegrationStreamErrors checks that Prosody's refusals come out of
// component.NewSession typed and classified: a wrong secret
// (not-authorized) and an unknown name (host-unknown) are permanent, a
// second link with the same name (conflict) is worth a retry, and the
// first link survives that second attempt.
func TestIntegrationStreamErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProsody(t, prosodyOptions{})

	const wrongSecret = "not-the-Secret-4711"
	tests := []struct {
		name      string
		link      func(o *linkOptions)
		before    bool // hold a good link to the same name first
		condition stream.Error
		kind      callbridge.ErrorKind
	}{
		{
			name:      "wrong secret",
			link:      func(o *linkOptions) { o.Secret = wrongSecret },
			condition: stream.NotAuthorized,
			kind:      callbridge.KindAuth,
		},
		{
			name:      "unknown name",
			link:      func(o *linkOptions) { o.Name = "cb9" },
			condition: stream.HostUnknown,
			kind:      callbridge.KindUnknownName,
		},
		{
			name:      "second link with the same name",
			before:    true,
			condition: stream.Conflict,
			kind:      callbridge.KindConflict,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first *component.Session
			if tc.before {
				var err error
				first, _, err = dialComponent(ctx, t, linkTo(p))
				require.NoError(t, err)
			}
			opts := linkTo(p)
			if tc.link != nil {
				tc.link(&opts)
			}
			s, _, err := dialComponent(ctx, t, opts)
			require.Error(t, err)
			assert.Nil(t, s)
			t.Logf("NewSession: %v", err)

			require.ErrorIs(t, err, tc.condition)
			var se *component.StreamError
			require.ErrorAs(t, err, &se)
			assert.False(t, se.Local, "the server sent the error")
			assert.Equal(t, tc.condition.Err, se.Condition())
			assert.Equal(t, tc.kind, callbridge.Classify(err))
			assert.Equal(t, tc.kind != callbridge.KindConflict, callbridge.Classify(err).Permanent())
			for _, secret := range []string{defaultSecret, wrongSecret} {
				assert.False(t, strings.Contains(err.Error(), secret), "the secret must not appear in the error")
			}
			assert.False(t, errors.Is(err, component.ErrTimeout), "a refusal is not a timeout")

			if first != nil {
				_, err := first.Ping(ctx)
				require.NoError(t, err, "Prosody keeps the first link when it refuses the second")
				require.NoError(t, first.Close())
				// With the first link gone the name is free again.
				again, _, err := dialComponent(ctx, t, linkTo(p))
				require.NoError(t, err)
				_, err = again.Ping(ctx)
				require.NoError(t, err)
			}
		})
	}
}
