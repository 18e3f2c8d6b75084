//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// built holds the example binaries built for this run (once, on first
// use); TestMain removes them.
var built struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

// xmppcheckBinary returns the path of examples/xmppcheck, built for this
// run.
func xmppcheckBinary(t *testing.T) string { return exampleBinary(t, "xmppcheck") }

// callbridgeBinary returns the path of examples/callbridge, built for this
// run.
func callbridgeBinary(t *testing.T) string { return exampleBinary(t, "callbridge") }

// exampleBinary builds the example binaries into a temporary directory the
// first time one is asked for, and returns the path of the named one.
func exampleBinary(t *testing.T, name string) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "cblink-integration-bin")
		if built.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", built.dir+string(filepath.Separator),
			"github.com/cblink/cblink/examples/xmppcheck", "github.com/cblink/cblink/examples/callbridge")
		built.out, built.err = cmd.CombinedOutput()
	})
	require.NoError(t, built.err, "go build examples/xmppcheck examples/callbridge: %s", built.out)
	return filepath.Join(built.dir, name)
}

// removeBuilt deletes the binaries built for this run.
func removeBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// checkStep is one step of xmppcheck -json (see examples/xmppcheck/README.md).
type checkStep struct {
	Step   string `json:"step"`
	Target string `json:"target"`
	OK     bool   `json:"ok"`
	Status string `json:"status"` // ok, fail, skip
	Detail string `json:"detail"`
	Hint   string `json:"hint"`
}

// targetSteps are the steps xmppcheck runs for each server, in order.
var targetSteps = []string{"address", "tcp", "tls", "san", "handshake", "ping"}

// TestIntegrationXmppcheck runs the xmppcheck binary against real servers:
// two Prosody instances behind dnsmasq SRV records. Every step passes with
// the right settings; a dead first target fails at tcp while the command
// still succeeds because xmpp2 works; a wrong secret fails at the
// handshake with the hint about the secret. No run prints a secret.
func TestIntegrationXmppcheck(t *testing.T) {
	bin := xmppcheckBinary(t)
	c := startTwoServers(t, false)
	p1, p2 := c.p1, c.p2

	// The same zone with a priority-5 target in front whose address has no
	// listener, as after a server was decommissioned but not unpublished.
	deadIP := newLoopbackIP()
	deadPort, err := freePort(deadIP.String(), false)
	require.NoError(t, err)
	const dead = "xmpp0." + domain
	deadDNS := startDNS(t, dnsZone{
		SRV: []srvRecord{
			{Target: dead, Port: deadPort, Priority: 5},
			{Target: p1.FQDN, Port: p1.TLSPort, Priority: 10},
			{Target: p2.FQDN, Port: p2.TLSPort, Priority: 20},
		},
		Hosts: []hostRecord{
			{Name: dead, Addrs: []netip.Addr{deadIP}},
			{Name: p1.FQDN, Addrs: []netip.Addr{p1.IP}},
			{Name: p2.FQDN, Addrs: []netip.Addr{p2.IP}},
		},
	})

	const wrongSecret = "xmppcheck-Wr0ng-s3cret-19"
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(defaultSecret+"\n"), 0o600))

	target := func(host string, port uint16) string {
		return net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	t1, t2, t0 := target(p1.FQDN, p1.TLSPort), target(p2.FQDN, p2.TLSPort), target(dead, deadPort)

	tests := []struct {
		name string
		dns  *dnsmasq
		env  []string
		args []string
		// before changes the set-up for this case; after undoes it once
		// xmppcheck ran.
		before, after func()
		code          int
		order         []string // targets in the order checked
		pass          []string // targets passing every step
		// fail maps targets to the step they fail at; hint is part of
		// that step's hint.
		fail map[string]string
		hint string
	}{
		{
			name:  "good settings",
			dns:   c.dns,
			env:   []string{"CBLINK_SECRET=" + defaultSecret},
			code:  0,
			order: []string{t1, t2},
			pass:  []string{t1, t2},
		},
		{
			name:  "dead target first",
			dns:   deadDNS,
			args:  []string{"-secret-file", secretFile},
			code:  0,
			order: []string{t0, t1, t2},
			pass:  []string{t1, t2},
			fail:  map[string]string{t0: "tcp"},
			hint:  "runs and accepts components on port " + strconv.Itoa(int(deadPort)),
		},
		{
			name:  "wrong secret",
			dns:   c.dns,
			env:   []string{"CBLINK_SECRET=" + wrongSecret},
			code:  1,
			order: []string{t1, t2},
			fail:  map[string]string{t1: "handshake", t2: "handshake"},
			hint:  "the shared secret does not match",
		},
		{
			name:   "preferred server stopped",
			dns:    c.dns,
			env:    []string{"CBLINK_SECRET=" + defaultSecret},
			before: p1.Stop,
			after:  p1.Start,
			code:   0,
			order:  []string{t1, t2},
			pass:   []string{t2},
			fail:   map[string]string{t1: "tcp"},
			hint:   "runs and accepts components on port " + strconv.Itoa(int(p1.TLSPort)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			args := append([]string{"-json", "-handshake-timeout", "5s", "-name", componentName, "-domain", domain,
				"-dns", tc.dns.Addr, "-ca", c.pki.CAFile}, tc.args...)
			code, stdout, stderr := runXmppcheck(t, bin, tc.env, args...)
			if tc.after != nil {
				tc.after()
			}
			for _, secret := range []string{defaultSecret, wrongSecret} {
				assert.NotContains(t, stdout+stderr, secret, "xmppcheck printed a secret")
			}
			require.Equal(t, tc.code, code, "exit status; stderr: %s", stderr)

			var steps []checkStep
			require.NoError(t, json.Unmarshal([]byte(stdout), &steps), stdout)
			require.NotEmpty(t, steps)
			assert.Equal(t, "settings", steps[0].Step)
			assert.True(t, steps[0].OK, "%+v", steps[0])
			assert.Equal(t, "srv", steps[1].Step)
			assert.True(t, steps[1].OK, "%+v", steps[1])
			result := steps[len(steps)-1]
			assert.Equal(t, "result", result.Step)
			assert.Equal(t, tc.code == 0, result.OK, "%+v", result)

			// Per target: the steps in order, passing up to the failing
			// one, which carries the hint, and skipped after it.
			var order []string
			byTarget := map[string][]checkStep{}
			for _, s := range steps[2 : len(steps)-1] {
				if len(byTarget[s.Target]) == 0 {
					order = append(order, s.Target)
				}
				byTarget[s.Target] = append(byTarget[s.Target], s)
			}
			assert.Equal(t, tc.order, order, "targets in SRV order")
			for _, tg := range order {
				got := byTarget[tg]
				require.Len(t, got, len(targetSteps), "steps for %s", tg)
				failAt, fails := tc.fail[tg]
				status := "ok"
				for i, s := range got {
					assert.Equal(t, targetSteps[i], s.Step, "%s step %d", tg, i)
					want := status
					if fails && s.Step == failAt {
						want = "fail"
						status = "skip"
						assert.Contains(t, s.Hint, tc.hint, "hint for %s at %s", tg, s.Step)
					}
					assert.Equal(t, want, s.Status, "%s %s: %+v", tg, s.Step, s)
					assert.Equal(t, want == "ok", s.OK, "%s %s", tg, s.Step)
				}
				if fails {
					assert.Equal(t, "skip", status, "%s never reached its failing step %s", tg, failAt)
				}
			}
			for _, tg := range tc.pass {
				assert.Contains(t, result.Detail, tg, "the result names the working servers")
			}
		})
	}
	assert.True(t, p1.Running(), "xmpp1 is back after the case that stopped it")
}

// runXmppcheck runs bin with args, with the CBLINK_ variables of this
// process removed and env added, and returns its exit status and output.
func runXmppcheck(t *testing.T, bin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CBLINK_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	t.Logf("xmppcheck exit %d\n%s%s", code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}
