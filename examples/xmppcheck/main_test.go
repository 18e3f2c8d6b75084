package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery/dnstest"
	"github.com/cblink/cblink/internal/binarytest"
	"github.com/cblink/cblink/internal/testhelp"
	"github.com/cblink/cblink/internal/testpki"
)

const (
	testSecret  = "xc-S3cret-9f2e7d" // must never be printed
	wrongSecret = "xc-Wr0ng-41ab"
)

// bin is the xmppcheck binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) { os.Exit(binarytest.TestMainWithBinary(m, "xmppcheck", &bin)) }

// startLab starts a lab with cb1.example.com registered and closes it when
// the test ends. It writes the lab CA to ca.pem in dir.
func startLab(t *testing.T, opts callbridgetest.Options) (*callbridgetest.Lab, string) {
	t.Helper()
	if opts.Secret == "" {
		opts.Secret = testSecret // cb1.example.com is registered with it
	}
	opts.Logf = t.Logf
	l, err := callbridgetest.NewLab(opts)
	require.NoError(t, err)
	t.Cleanup(l.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, l.RootPEM(), 0o600))
	return l, ca
}

type runResult struct {
	code   int
	stdout string
	stderr string
}

// runCheck execs xmppcheck with args and env, checks that the secrets are
// nowhere in its output, and returns its outcome.
func runCheck(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	return runCheckCmd(t, exec.Command(bin, args...), env)
}

// runCheckCmd is runCheck for a command prepared by the caller (its
// stdin, extra files).
func runCheckCmd(t *testing.T, cmd *exec.Cmd, env []string) runResult {
	t.Helper()
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	r := runResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	for _, s := range []string{testSecret, wrongSecret} {
		assert.NotContains(t, r.stdout+r.stderr, s, "a secret was printed")
	}
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	return r
}

// cleanEnv is the test process's environment without CBLINK_ variables.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CBLINK_") {
			env = append(env, e)
		}
	}
	return env
}

func parseSteps(t *testing.T, out string) []Step {
	t.Helper()
	var steps []Step
	require.NoError(t, json.Unmarshal([]byte(out), &steps), out)
	require.NotEmpty(t, steps)
	return steps
}

// find returns the step with the given name whose target contains target.
func find(t *testing.T, steps []Step, step, target string) Step {
	t.Helper()
	for _, s := range steps {
		if s.Step == step && strings.Contains(s.Target, target) {
			return s
		}
	}
	t.Fatalf("no step %s for %q in %+v", step, target, steps)
	return Step{}
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return p
}

func twoServers() []callbridgetest.Server {
	return []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10, Weight: 10},
		{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
	}
}

func TestChecks(t *testing.T) {
	type want struct {
		code int
		// failStep/failTarget name the step expected to fail (none: every
		// step passes); hint is a part of its hint.
		failStep, failTarget, hint string
		// pass lists targets expected to pass every step.
		pass []string
	}
	for _, tc := range []struct {
		name   string
		opts   callbridgetest.Options
		args   func(l *callbridgetest.Lab, ca string) []string
		secret string
		want   want
	}{
		{
			name: "good set-up, both servers work",
			opts: callbridgetest.Options{Servers: twoServers()},
			want: want{code: 0, pass: []string{"xmpp1.example.com", "xmpp2.example.com"}},
		},
		{
			name:   "wrong secret",
			opts:   callbridgetest.Options{Servers: twoServers()[:1]},
			secret: wrongSecret,
			want: want{code: 1, failStep: stepHandshake, failTarget: "xmpp1.example.com",
				hint: "the shared secret does not match the one set with `xmpp callbridge add cb1` on the XMPP server"},
		},
		{
			name: "unknown name",
			opts: callbridgetest.Options{Servers: twoServers()[:1]},
			args: func(l *callbridgetest.Lab, ca string) []string { return []string{"-name", "cb9"} },
			want: want{code: 1, failStep: stepHandshake, failTarget: "xmpp1.example.com",
				hint: "check -name first: is cb9 the name of this Call Bridge (as on CMS's XMPP page)? the XMPP server knows no component cb9.example.com; " +
					"if it is right, add the component on the XMPP server: xmpp callbridge add cb9"},
		},
		{
			name: "certificate lacks the FQDN",
			opts: callbridgetest.Options{Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10, SANs: []string{"example.com"}}}},
			want: want{code: 1, failStep: stepSAN, failTarget: "xmpp1.example.com",
				hint: "reissue the XMPP server certificate with SANs example.com and xmpp1.example.com"},
		},
		{
			name: "untrusted CA",
			opts: callbridgetest.Options{Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10, Untrusted: true}}},
			want: want{code: 1, failStep: stepTLS, failTarget: "xmpp1.example.com",
				hint: "pass the CA bundle that signed the XMPP server's certificate with -ca"},
		},
		{
			name: "SRV says no service",
			opts: callbridgetest.Options{Servers: twoServers()[:1], SRV: callbridgetest.SRVDot},
			want: want{code: 1, failStep: stepSRV, failTarget: "_xmpp-component._tcp.example.com",
				hint: "the domain publishes that there is no XMPP component service"},
		},
		{
			name: "no SRV records",
			opts: callbridgetest.Options{Servers: twoServers()[:1], SRV: callbridgetest.SRVNone},
			want: want{code: 1, failStep: stepSRV, failTarget: "_xmpp-component._tcp.example.com",
				hint: "publish _xmpp-component._tcp.example.com SRV records or set -server"},
		},
		{
			name: "first target dead, second good",
			opts: callbridgetest.Options{Servers: []callbridgetest.Server{
				{Name: "xmpp1.example.com", Priority: 10, Down: true},
				{Name: "xmpp2.example.com", Priority: 20},
			}},
			want: want{code: 0, failStep: stepTCP, failTarget: "xmpp1.example.com",
				hint: "accepts components on port", pass: []string{"xmpp2.example.com"}},
		},
		{
			name: "explicit address with server name",
			opts: callbridgetest.Options{Servers: twoServers()[:1]},
			args: func(l *callbridgetest.Lab, ca string) []string {
				return []string{"-server", "127.0.0.1:" + port(t, l.Servers[0].Addr()), "-server-name", "xmpp1.example.com"}
			},
			want: want{code: 0, pass: []string{"127.0.0.1"}},
		},
		{
			name: "combined server dialled as localhost",
			opts: callbridgetest.Options{Servers: twoServers()[:1]},
			args: func(l *callbridgetest.Lab, ca string) []string {
				require.NoError(t, l.DNS.AddZone("localhost. IN A 127.0.0.1\n"))
				return []string{"-server", "localhost:" + port(t, l.Servers[0].Addr())}
			},
			want: want{code: 1, failStep: stepSAN, failTarget: "localhost", hint: "set -server-name"},
		},
		{
			name: "invalid settings",
			opts: callbridgetest.Options{Servers: twoServers()[:1]},
			args: func(l *callbridgetest.Lab, ca string) []string { return []string{"-domain", ""} },
			want: want{code: 2, failStep: stepSettings, hint: "fix the settings"},
		},
		{
			name: "-strict: first target dead, second good",
			opts: callbridgetest.Options{Servers: []callbridgetest.Server{
				{Name: "xmpp1.example.com", Priority: 10, Down: true},
				{Name: "xmpp2.example.com", Priority: 20},
			}},
			args: func(l *callbridgetest.Lab, ca string) []string { return []string{"-strict"} },
			want: want{code: 1, failStep: stepTCP, failTarget: "xmpp1.example.com",
				hint: "accepts components on port", pass: []string{"xmpp2.example.com"}},
		},
		{
			name: "-strict: both servers work",
			opts: callbridgetest.Options{Servers: twoServers()},
			args: func(l *callbridgetest.Lab, ca string) []string { return []string{"-strict"} },
			want: want{code: 0, pass: []string{"xmpp1.example.com", "xmpp2.example.com"}},
		},
		{
			name: "plain XMPP port (no TLS)",
			opts: callbridgetest.Options{Servers: twoServers()[:1]},
			args: func(l *callbridgetest.Lab, ca string) []string {
				plain, err := componenttest.NewServer(componenttest.Options{Domain: "example.com", Plain: true,
					Components: map[string]string{"cb1.example.com": testSecret}})
				require.NoError(t, err)
				t.Cleanup(plain.Close)
				return []string{"-server", plain.Addr(), "-server-name", "xmpp1.example.com"}
			},
			want: want{code: 1, failStep: stepTLS, failTarget: "127.0.0.1",
				hint: "direct-TLS component port (usually 5223)"},
		},
		{
			name: "TLS stall",
			opts: callbridgetest.Options{Servers: twoServers()[:1]},
			args: func(l *callbridgetest.Lab, ca string) []string {
				addr := testhelp.Listen(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
				return []string{"-server", addr, "-server-name", "xmpp1.example.com", "-handshake-timeout", "300ms"}
			},
			want: want{code: 1, failStep: stepTLS, failTarget: "127.0.0.1",
				hint: "did not answer the TLS handshake"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ca := startLab(t, tc.opts)
			args := []string{"-json", "-handshake-timeout", "5s", "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr()}
			if !tc.opts.Servers[0].Untrusted {
				args = append(args, "-ca", ca)
			}
			if tc.args != nil {
				args = append(args, tc.args(l, ca)...)
			}
			secret := tc.secret
			if secret == "" {
				secret = testSecret
			}
			r := runCheck(t, []string{"CBLINK_SECRET=" + secret}, args...)
			require.Equal(t, tc.want.code, r.code, r.stderr)
			steps := parseSteps(t, r.stdout)
			result := steps[len(steps)-1]
			assert.Equal(t, stepResult, result.Step)
			assert.Equal(t, tc.want.code == 0, result.OK)

			for _, s := range steps {
				assert.Equal(t, s.Status == OK, s.OK, "ok agrees with status: %+v", s)
				if s.Status == Fail && s.Step != stepResult {
					assert.NotEmpty(t, s.Hint, "a failure carries a hint: %+v", s)
				}
			}
			if tc.want.failStep != "" {
				s := find(t, steps, tc.want.failStep, tc.want.failTarget)
				assert.Equal(t, Fail, s.Status, "%+v", s)
				assert.Contains(t, s.Hint, tc.want.hint)
			} else {
				for _, s := range steps {
					assert.Equal(t, OK, s.Status, "%+v", s)
				}
			}
			for _, p := range tc.want.pass {
				for _, st := range targetSteps {
					assert.Equal(t, OK, find(t, steps, st, p).Status, "%s %s", st, p)
				}
				assert.Contains(t, result.Detail, p)
			}
		})
	}
}

// TestTextOutput checks the plain output of a failing set-up (a certificate
// without the server's FQDN, the usual mistake) and a secret read from
// -secret-file.
func TestTextOutput(t *testing.T) {
	l, ca := startLab(t, callbridgetest.Options{Servers: []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10, SANs: []string{"example.com"}},
	}})
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600))
	r := runCheck(t, nil, "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-secret-file", secretFile)
	assert.Equal(t, 1, r.code)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var got []string
	for _, line := range lines {
		f := strings.Fields(line)
		if f[0] == "hint:" {
			got = append(got, "hint")
			continue
		}
		got = append(got, f[0]+" "+f[1])
	}
	assert.Equal(t, []string{
		"OK settings", "OK srv", "OK address", "OK tcp", "OK tls",
		"FAIL san", "hint", "SKIP handshake", "SKIP ping", "FAIL result",
	}, got)
	assert.Contains(t, r.stdout, `lacks SAN "xmpp1.example.com"`)
	assert.Contains(t, r.stdout, "secret from file "+secretFile+" (redacted)")
}

// TestConflictWithRunningBridge: a link with the same name is already up
// (a running Call Bridge), and the server refuses a second as Prosody does.
func TestConflictWithRunningBridge(t *testing.T) {
	l, ca := startLab(t, callbridgetest.Options{Servers: twoServers()[:1]})
	ctx := t.Context()
	tc, err := tls.Dial("tcp", l.Servers[0].Addr(), l.Servers[0].ClientTLSConfig())
	require.NoError(t, err)
	sess, err := component.NewSession(ctx, tc, component.Config{Name: "cb1", Domain: "example.com", Secret: component.NewSecret(testSecret)})
	require.NoError(t, err)
	defer sess.Close()

	r := runCheck(t, []string{"CBLINK_SECRET=" + testSecret}, "-json", "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca)
	assert.Equal(t, 1, r.code)
	s := find(t, parseSteps(t, r.stdout), stepHandshake, "xmpp1")
	assert.Equal(t, Fail, s.Status)
	assert.Contains(t, s.Hint, "a running Call Bridge with this name")
	assert.Contains(t, s.Hint, "Prosody refuses a second one")
}

// TestUsageError: a command line that does not parse exits 2 (the
// bridge's flags are accepted: TestAcceptsTheBridgeSettings).
func TestUsageError(t *testing.T) {
	for _, flag := range []string{"-no-such-flag", "-timeout"} {
		r := runCheck(t, nil, flag, "1s")
		assert.Equal(t, 2, r.code, flag)
		assert.Contains(t, r.stderr, "flag provided but not defined: "+flag, flag)
	}
	// An -html file that cannot be created is a usage error, found first.
	r := runCheck(t, nil, "-html", filepath.Join(t.TempDir(), "no-such-dir", "report.html"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "xmppcheck: -html: open ")
	assert.Empty(t, r.stdout, "no check ran")
}

// TestVersion: -version prints the build information the toolchain
// embedded (as go version -m reads it), checks nothing and exits 0.
func TestVersion(t *testing.T) {
	r := runCheck(t, nil, "-version")
	assert.Equal(t, 0, r.code)
	assert.Equal(t, binarytest.VersionLine(t, bin, "cblink-xmppcheck")+"\n", r.stdout)
	assert.Empty(t, r.stderr)
}

// flagNames returns the flags a binary's -help lists.
func flagNames(t *testing.T, binary string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(binary, "-help").CombinedOutput() // exit 0
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	require.NotEmpty(t, names, "%s", out)
	return names
}

// TestAcceptsTheBridgeSettings: every flag of the callbridge command but
// -demo and -stay (README says so) is accepted, from the command line or
// CBLINK_<FLAG>, as the bridge's unit file sets them; those that do not
// apply to a check are named in one note on stderr; -ping-timeout (and
// CBLINK_PING_TIMEOUT) sets how long the check's ping waits.
func TestAcceptsTheBridgeSettings(t *testing.T) {
	callbridge := filepath.Join(t.TempDir(), "callbridge")
	out, err := exec.Command("go", "build", "-o", callbridge, "../callbridge").CombinedOutput()
	require.NoError(t, err, "%s", out)
	mine := flagNames(t, bin)
	for name := range flagNames(t, callbridge) {
		switch name {
		case "demo", "stay": // the demo's own, listed in README.md
			continue
		}
		assert.True(t, mine[name], "-%s of callbridge is not accepted by xmppcheck", name)
	}

	l, ca := startLab(t, callbridgetest.Options{Servers: twoServers()})
	env := []string{"CBLINK_SECRET=" + testSecret, "CBLINK_NAME=cb1", "CBLINK_DOMAIN=example.com", "CBLINK_SERVER=",
		"CBLINK_CA=" + ca, "CBLINK_STATUS_ADDR=127.0.0.1:9180", "CBLINK_LOG_FORMAT=json", "CBLINK_PING_TIMEOUT=3s",
		"CBLINK_CALLS=", "CBLINK_WEB=", "CBLINK_WEB_DOMAIN="}
	r := runCheck(t, env, "-dns", l.DNS.Addr(), "-backoff-max", "2m", "-v", "-web-ws", "", "-json")
	assert.Equal(t, 0, r.code)
	// Empty is not set; -log-format and -calls are checked, not ignored.
	assert.Equal(t, "xmppcheck: note: -backoff-max, -status-addr, -v ignored: settings of the running bridge, not of a check\n", r.stderr)
	steps := parseSteps(t, r.stdout)
	assert.Contains(t, find(t, steps, "settings", "").Detail, "ping 3s")

	r = runCheck(t, env, "-dns", l.DNS.Addr(), "-backoff-max", "soon")
	assert.Equal(t, 2, r.code, "a value that does not parse is an error even where it is ignored")
}

// acmeServer is a TLS server for the XMPP domain acme.test only, as
// Prosody is: an SNI that is not one of its hosts gets the
// unrecognized_name alert; without SNI it sends its certificate. It
// returns its address and the CA file.
func acmeServer(t *testing.T) (addr, caFile string) {
	t.Helper()
	ca := testpki.MustCA(testpki.Template{CommonName: "acme CA"})
	leaf := ca.MustIssue(testpki.Template{CommonName: "xmpp1.acme.test", DNSNames: []string{"acme.test", "xmpp1.acme.test"}})
	served := &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(true)}}
	conf := &tls.Config{GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		switch hi.ServerName {
		case "", "acme.test", "xmpp1.acme.test":
			return served, nil
		}
		return &tls.Config{}, nil // no certificate: unrecognized_name
	}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { // owned by this test: ends when ln is closed
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.RootPEM(), 0o600))
	return ln.Addr().String(), caFile
}

// TestWrongDomainHints: where the evidence points at the -domain setting
// (the server does not serve the domain sent as SNI, its certificate
// names another domain, the name servers refuse the domain or know no
// such name), the hint asks first whether -domain is right and says what
// the server does serve, before suggesting -sni, a new certificate or DNS
// work.
func TestWrongDomainHints(t *testing.T) {
	addr, ca := acmeServer(t)
	args := []string{"-name", "cb1", "-domain", "example.com", "-server", addr, "-server-name", "xmpp1.acme.test", "-ca", ca, "-json"}
	env := []string{"CBLINK_SECRET=" + testSecret}

	r := runCheck(t, env, args...)
	assert.Equal(t, 1, r.code)
	s := find(t, parseSteps(t, r.stdout), stepTLS, addr)
	assert.Equal(t, Fail, s.Status)
	assert.Contains(t, s.Detail, "unrecognized name")
	assert.True(t, strings.HasPrefix(s.Hint, "check -domain first: is example.com the XMPP domain"), s.Hint)
	assert.Contains(t, s.Hint, "the certificate it sends without SNI names acme.test, xmpp1.acme.test")

	// Following the -sni advice leads to the certificate: same question.
	r = runCheck(t, env, append(args, "-sni", "acme.test")...)
	assert.Equal(t, 1, r.code)
	s = find(t, parseSteps(t, r.stdout), stepSAN, addr)
	assert.Equal(t, Fail, s.Status)
	assert.True(t, strings.HasPrefix(s.Hint, "check -domain first: is example.com the XMPP domain"), s.Hint)
	assert.Contains(t, s.Hint, "the certificate names acme.test, xmpp1.acme.test, not example.com")
	assert.Contains(t, s.Hint, "if it is right, reissue")

	// A typo in the domain: no such name, or name servers refusing it.
	l, _ := startLab(t, callbridgetest.Options{Servers: twoServers()})
	r = runCheck(t, env, "-name", "cb1", "-domain", "acme.tset", "-dns", l.DNS.Addr(), "-json")
	s = find(t, parseSteps(t, r.stdout), stepSRV, "acme.tset")
	assert.Equal(t, Fail, s.Status)
	assert.True(t, strings.HasPrefix(s.Hint, "check -domain first: is acme.tset the XMPP domain"), s.Hint)
	assert.Contains(t, s.Hint, "NXDOMAIN")
	l.DNS.SetFault("_xmpp-component._tcp.acme.tset.", dns.TypeSRV, dnstest.Fault{Rcode: dns.RcodeRefused})
	r = runCheck(t, env, "-name", "cb1", "-domain", "acme.tset", "-dns", l.DNS.Addr(), "-json")
	s = find(t, parseSteps(t, r.stdout), stepSRV, "acme.tset")
	assert.Equal(t, Fail, s.Status)
	assert.True(t, strings.HasPrefix(s.Hint, "check -domain first: is acme.tset the XMPP domain"), s.Hint)
	assert.Contains(t, s.Hint, "refuse to answer for it")
}
