//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIntegrationHarnessRestart checks the harness itself: Prosody stops
// and starts again on the same address and ports, and a component link
// works before and after, as failover tests need.
func TestIntegrationHarnessRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := startProsody(t, prosodyOptions{})
	addr := p.TLSAddr()

	s, tm, err := dialComponent(ctx, t, linkTo(p))
	require.NoError(t, err)
	t.Logf("first link: %v", tm)

	p.Stop()
	assert.False(t, p.Running())
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("the link did not notice that Prosody stopped")
	}
	assert.Error(t, s.Err(), "a link to a stopped server must end with an error")
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "nothing may listen on %s once Prosody stopped", addr)

	p.Start()
	assert.True(t, p.Running())
	assert.Equal(t, addr, p.TLSAddr(), "address and port survive a restart")
	s2, tm, err := dialComponent(ctx, t, linkTo(p))
	require.NoError(t, err)
	t.Logf("link after restart: %v", tm)
	_, err = s2.Ping(ctx)
	require.NoError(t, err)
}

// TestIntegrationHarnessAddresses checks that each instance gets its own
// loopback address and that ports are distinct.
func TestIntegrationHarnessAddresses(t *testing.T) {
	pki := newPKI(t)
	p1 := startProsody(t, prosodyOptions{FQDN: "xmpp1.example.com", PKI: pki})
	p2 := startProsody(t, prosodyOptions{FQDN: "xmpp2.example.com", PKI: pki})
	assert.NotEqual(t, p1.IP, p2.IP)
	for _, p := range []*prosody{p1, p2} {
		assert.True(t, p.IP.IsLoopback(), "%s", p.IP)
		assert.NotEqual(t, netip.MustParseAddr("127.0.0.1"), p.IP)
		ports := map[uint16]bool{p.C2SPort: true, p.ComponentPort: true, p.TLSPort: true}
		assert.Len(t, ports, 3, "ports of %s must differ", p.FQDN)
	}
}

// recordingTB stands in for a test in TestIntegrationHarnessMissingBinary:
// it records how findBinary ended it.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Fatal(args ...any) {
	r.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recordingTB) Skip(args ...any) {
	r.skip = fmt.Sprint(args...)
	runtime.Goexit()
}

// TestIntegrationHarnessMissingBinary checks the missing-binary rule: fail
// under CI, skip elsewhere, and name the package to install either way.
func TestIntegrationHarnessMissingBinary(t *testing.T) {
	for _, tc := range []struct {
		name, ci string
		fails    bool
	}{
		{name: "CI set", ci: "true", fails: true},
		{name: "CI unset", ci: "", fails: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recordingTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				findBinary(r, "cblink-no-such-server", "cblink-no-such-package")
			}()
			<-done
			msg := r.skip
			if tc.fails {
				msg = r.fatal
				assert.Empty(t, r.skip)
			} else {
				assert.Empty(t, r.fatal)
			}
			assert.Contains(t, msg, "apt-get install -y cblink-no-such-package")
		})
	}
	// And a binary that is there is found.
	assert.NotEmpty(t, findBinary(t, "prosody", pkgProsody))
}
