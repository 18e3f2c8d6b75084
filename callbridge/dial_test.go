package callbridge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeDialer answers each address after a set delay, with a pipe or an error.
type fakeDialer struct {
	mu     sync.Mutex
	delay  map[string]time.Duration
	fail   map[string]bool
	tried  []string
	closed int
}

type trackedConn struct {
	net.Conn
	f *fakeDialer
}

func (c trackedConn) Close() error {
	c.f.mu.Lock()
	c.f.closed++
	c.f.mu.Unlock()
	return c.Conn.Close()
}

func (f *fakeDialer) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.tried = append(f.tried, addr)
	d, fail := f.delay[addr], f.fail[addr]
	f.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if fail {
		return nil, errors.New("connection refused")
	}
	c1, c2 := net.Pipe()
	c2.Close()
	return trackedConn{c1, f}, nil
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestRaceDial(t *testing.T) {
	a, b, c := ap("[2001:db8::1]:5223"), ap("192.0.2.1:5223"), ap("192.0.2.2:5223")
	cases := []struct {
		name  string
		delay map[string]time.Duration
		fail  map[string]bool
		want  netip.AddrPort
		tried int
	}{
		{name: "first answers", delay: map[string]time.Duration{}, want: a, tried: 1},
		{name: "first refuses, next at once", fail: map[string]bool{a.String(): true}, want: b, tried: 2},
		{name: "first slow, second wins", delay: map[string]time.Duration{a.String(): time.Hour}, want: b, tried: 2},
		{name: "two slow, third wins", delay: map[string]time.Duration{a.String(): time.Hour, b.String(): time.Hour}, want: c, tried: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDialer{delay: tc.delay, fail: tc.fail}
			if f.delay == nil {
				f.delay = map[string]time.Duration{}
			}
			// The next address starts after a stagger only when one is
			// slow: where none is, an hour, so that a busy machine's
			// scheduling cannot start it.
			stagger := time.Hour
			if len(tc.delay) > 0 {
				stagger = 10 * time.Millisecond
			}
			conn, got, err := raceDial(context.Background(), f.dial, []netip.AddrPort{a, b, c}, stagger)
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, tc.want, got)
			f.mu.Lock()
			defer f.mu.Unlock()
			assert.Len(t, f.tried, tc.tried)
		})
	}
}

func TestRaceDialAllFail(t *testing.T) {
	a, b := ap("192.0.2.1:5223"), ap("192.0.2.2:5223")
	f := &fakeDialer{delay: map[string]time.Duration{}, fail: map[string]bool{a.String(): true, b.String(): true}}
	_, _, err := raceDial(context.Background(), f.dial, []netip.AddrPort{a, b}, time.Hour)
	require.Error(t, err)
	assert.Contains(t, err.Error(), a.String())
	assert.Contains(t, err.Error(), b.String())

	_, _, err = raceDial(context.Background(), f.dial, nil, time.Hour)
	assert.Error(t, err)
}

func TestRaceDialClosesLosers(t *testing.T) {
	a, b := ap("192.0.2.1:5223"), ap("192.0.2.2:5223")
	// Both answer at nearly the same time; exactly one conn survives.
	f := &fakeDialer{delay: map[string]time.Duration{a.String(): 20 * time.Millisecond, b.String(): 5 * time.Millisecond}}
	conn, _, err := raceDial(context.Background(), f.dial, []netip.AddrPort{a, b}, time.Millisecond)
	require.NoError(t, err)
	f.mu.Lock()
	closedBefore := f.closed
	f.mu.Unlock()
	conn.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, closedBefore+1, f.closed)
	assert.LessOrEqual(t, closedBefore, 1)
}

func TestRaceDialContext(t *testing.T) {
	a := ap("192.0.2.1:5223")
	f := &fakeDialer{delay: map[string]time.Duration{a.String(): time.Hour}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := raceDial(ctx, f.dial, []netip.AddrPort{a}, time.Hour)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
