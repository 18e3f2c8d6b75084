package componenttest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTiming(t *testing.T) {
	for _, plain := range []bool{false, true} {
		srv := newTestServer(t, Options{Plain: plain})
		c, err := connect(t, srv, "cb1.example.com", "s3cret")
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := srv.WaitConn(ctx, "cb1.example.com")
		cancel()
		require.NoError(t, err)
		tm := conn.Timing()
		assert.False(t, tm.Accepted.IsZero(), "plain=%v", plain)
		assert.False(t, tm.FirstByte.IsZero() || tm.FirstByte.Before(tm.Accepted), "plain=%v: %+v", plain, tm)
		assert.False(t, tm.Authenticated.IsZero() || tm.Authenticated.Before(tm.FirstByte), "plain=%v: %+v", plain, tm)
		c.close()

		// A connection that sends nothing has no first byte.
		srv.SetFault(Fault{Phase: PhaseAccept, Action: ActionClose})
		c2, err := dialClient(srv, "")
		if err == nil {
			c2.abort()
		}
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		idle, err := srv.WaitAccepted(ctx, 1)
		require.NoError(t, err)
		require.NoError(t, idle.WaitClosed(ctx))
		cancel()
		tm = idle.Timing()
		assert.False(t, tm.Accepted.IsZero())
		assert.True(t, tm.FirstByte.IsZero() && tm.Authenticated.IsZero(), "%+v", tm)
	}
}
