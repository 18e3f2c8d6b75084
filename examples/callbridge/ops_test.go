package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/examples/internal/settings"
)

// fakeBridge is a bridgeView with a fixed status and stats.
type fakeBridge struct {
	st callbridge.Status
	s  callbridge.Stats
}

func (f *fakeBridge) Status() callbridge.Status { return f.st }
func (f *fakeBridge) Stats() callbridge.Stats   { return f.s }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestStatusEndpoints: /status keeps the same keys in every state (null
// when they do not apply), durations in seconds, no HTML escaping; /readyz
// is 200 only while connected (503 while stopping); /livez always 200.
func TestStatusEndpoints(t *testing.T) {
	since := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	states := map[string]callbridge.Status{
		"connected": {State: callbridge.Connected, Server: "xmpp1.example.com", Addr: "127.0.0.1:5223", Since: since, ConnectedSince: since},
		"backoff": {State: callbridge.BackingOff, Since: since, Attempt: 3, Backoff: 1500 * time.Millisecond,
			LastErr: errors.New(`tls: <bad> & "odd"`), LastErrKind: callbridge.KindCertificate, Permanent: true},
		"stopping": {State: callbridge.Stopping, Server: "xmpp1.example.com", Since: since},
		"idle":     {},
	}
	var keys []string
	for name, st := range states {
		t.Run(name, func(t *testing.T) {
			h := statusHandler(&fakeBridge{st: st})
			code, body := get(t, h, "/status")
			require.Equal(t, http.StatusOK, code)
			var doc map[string]any
			require.NoError(t, json.Unmarshal([]byte(body), &doc), body)
			var got []string
			for k := range doc {
				got = append(got, k)
			}
			if keys == nil {
				keys = got
			}
			assert.ElementsMatch(t, keys, got, "the same keys in every state")
			assert.Equal(t, st.State.String(), doc["state"])

			code, body = get(t, h, "/readyz")
			if st.State == callbridge.Connected {
				assert.Equal(t, http.StatusOK, code, body)
			} else {
				assert.Equal(t, http.StatusServiceUnavailable, code, body)
				assert.Contains(t, body, st.State.String())
			}
			code, _ = get(t, h, "/livez")
			assert.Equal(t, http.StatusOK, code)
		})
	}
	_, body := get(t, statusHandler(&fakeBridge{st: states["backoff"]}), "/status")
	assert.Contains(t, body, `"last_error": "tls: <bad> & \"odd\""`, "not HTML-escaped")
	assert.Contains(t, body, `"backoff_seconds": 1.5`)
	assert.Contains(t, body, `"last_error_kind": "certificate"`)
	assert.Contains(t, body, `"permanent": true`)
	_, body = get(t, statusHandler(&fakeBridge{st: states["connected"]}), "/status")
	assert.Contains(t, body, `"backoff_seconds": null`)
	assert.Contains(t, body, `"last_error": null`)
	assert.Contains(t, body, `"connected_since": "2026-11-26T12:00:00Z"`)
}

// TestMetrics: every labelled series exists from the start at zero, the
// values come from Status and Stats, and the exposition passes the
// Prometheus linter.
func TestMetrics(t *testing.T) {
	b := &fakeBridge{
		st: callbridge.Status{State: callbridge.BackingOff, Attempt: 3, Permanent: true, LastErrKind: callbridge.KindAuth},
		s: callbridge.Stats{Connects: 2, LastKeepaliveRTT: 1500 * time.Microsecond,
			ConnectFailures: map[callbridge.ErrorKind]uint64{callbridge.KindNetwork: 4, callbridge.KindAuth: 1}},
	}
	c := newBridgeCollector(b)
	var want strings.Builder
	want.WriteString("# HELP cblink_connect_failures_total Failed attempts to bring a link up, by cause.\n# TYPE cblink_connect_failures_total counter\n")
	for _, k := range callbridge.ErrorKinds() {
		fmt.Fprintf(&want, "cblink_connect_failures_total{kind=%q} %d\n", k, b.s.ConnectFailures[k])
	}
	want.WriteString("# HELP cblink_disconnects_total Links that ended, by cause.\n# TYPE cblink_disconnects_total counter\n")
	for _, k := range callbridge.ErrorKinds() {
		fmt.Fprintf(&want, "cblink_disconnects_total{kind=%q} 0\n", k)
	}
	want.WriteString("# HELP cblink_permanent_error 1 while the last failure is one an operator must fix (wrong secret, unknown name, certificate, no service, protocol, config).\n# TYPE cblink_permanent_error gauge\ncblink_permanent_error 1\n")
	want.WriteString("# HELP cblink_attempt Failed connection cycles since the last successful connection.\n# TYPE cblink_attempt gauge\ncblink_attempt 3\n")
	want.WriteString("# HELP cblink_keepalive_rtt_seconds Round trip of the last XEP-0199 ping to the server (0 before the first).\n# TYPE cblink_keepalive_rtt_seconds gauge\ncblink_keepalive_rtt_seconds 0.0015\n")
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want.String()),
		"cblink_connect_failures_total", "cblink_disconnects_total", "cblink_permanent_error", "cblink_attempt", "cblink_keepalive_rtt_seconds"))
	assert.Equal(t, 16+len(callbridge.States())+2*len(callbridge.ErrorKinds())-3, testutil.CollectAndCount(c), "series")

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)

	code, text := get(t, statusHandler(b), "/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, text, `cblink_state{state="backoff"} 1`)
	assert.Contains(t, text, `cblink_state{state="connected"} 0`)
	assert.Regexp(t, regexp.MustCompile(`(?m)^cblink_build_info\{goversion="go[^"]+",revision="[^"]*",version="[^"]*"\} 1$`), text)
	assert.Contains(t, text, "go_goroutines ")
	assert.Contains(t, text, "process_resident_memory_bytes ")
}

// runBin runs the binary to its end and returns its exit code, stdout
// and stderr.
func runBin(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	assert.NotContains(t, stdout.String()+stderr.String(), testSecret)
	return code, stdout.String(), stderr.String()
}

// TestStopOnPermanent: with -stop-on-permanent a wrong secret ends the
// process with exit 1 and a log line classifying the error.
func TestStopOnPermanent(t *testing.T) {
	l, ca := startLab(t)
	code, _, stderr := runBin(t, []string{"CBLINK_SECRET=wrong-" + testSecret},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json", "-stop-on-permanent")
	assert.Equal(t, 1, code, stderr)
	var last map[string]any
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last), stderr)
	assert.Equal(t, "stopped", last["msg"])
	assert.Equal(t, "auth", last["kind"])
	assert.Equal(t, true, last["permanent"])
	assert.Contains(t, stderr, `"msg":"xmpp server failed"`)
}

// TestInvalidSettingsJSON: with -log-format json, invalid settings are one
// JSON line naming every problem by its flag.
func TestInvalidSettingsJSON(t *testing.T) {
	code, stdout, stderr := runBin(t, nil, "-log-format", "json", "-backoff-base", "-1s")
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout)
	require.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(stderr), &m), stderr)
	assert.Equal(t, "invalid settings", m["msg"])
	text := fmt.Sprint(m["problems"])
	for _, want := range []string{"-name: must be set", "-domain: must be set", "secret:", "-backoff-base: must not be negative"} {
		assert.Contains(t, text, want)
	}
}

// TestSecretFromSystemdCredential: under systemd with LoadCredential=, the
// secret comes from $CREDENTIALS_DIRECTORY/cblink-secret, not from the
// environment; the starting line names the credential.
func TestSecretFromSystemdCredential(t *testing.T) {
	l, ca := startLab(t)
	creds := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(creds, "cblink-secret"), []byte(testSecret+"\n"), 0o400))
	p := startProc(t, []string{"CREDENTIALS_DIRECTORY=" + creds},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json")
	assert.Equal(t, "systemd credential cblink-secret", p.waitLog(t, "starting")["secret"])
	p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com")
}

// TestFailBackByDefault: started while its preferred server is down, the
// binary logs the failure as its own WARN line, connects to the backup
// and, with no fail-back flag given, moves back when the preferred server
// returns; -v shows the DNS answer, the order to try and the certificates.
func TestFailBackByDefault(t *testing.T) {
	l, err := callbridgetest.NewLab(callbridgetest.Options{
		Secret: testSecret,
		Servers: []callbridgetest.Server{
			{Name: "xmpp1.example.com", Priority: 10, Weight: 10, Down: true},
			{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
		},
		Logf: t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(l.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, l.RootPEM(), 0o600))
	p := startProc(t, []string{"CBLINK_SECRET=" + testSecret},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json",
		"-fail-back-interval", "100ms", "-v")
	// -v: the DNS answer, the order to try and each certificate.
	p.waitLog(t, "dns")
	order := p.waitLog(t, "xmpp servers in the order to try")
	assert.Contains(t, fmt.Sprint(order["servers"]), "xmpp1.example.com:")
	assert.Contains(t, fmt.Sprint(p.waitLog(t, "xmpp server certificate", "server", "xmpp2.example.com")["dns_sans"]), "xmpp2.example.com")
	p.waitLog(t, "xmpp server failed", "server", "xmpp1.example.com", "next", "xmpp2.example.com")
	p.waitLog(t, "xmpp link connected", "server", "xmpp2.example.com")
	require.NoError(t, l.StartServer("xmpp1.example.com"))
	p.waitLog(t, "xmpp link failed back to a preferred server", "server", "xmpp1.example.com", "from", "xmpp2.example.com")
}

// TestDemoStay: -demo -stay -status-addr keeps the servers and the bridge
// up and prints commands that work: the xmppcheck command passes in
// -strict mode, and the status endpoints answer.
func TestDemoStay(t *testing.T) {
	xmppcheck := filepath.Join(t.TempDir(), "xmppcheck")
	out, err := exec.Command("go", "build", "-o", xmppcheck, "../xmppcheck").CombinedOutput()
	require.NoError(t, err, "%s", out)

	// From the repository's root, as the README runs it: the servers use
	// testdata/pki, and the printed command names it.
	p := startProcIn(t, "../..", nil, "-demo", "-stay", "-status-addr", "127.0.0.1:0")
	text := p.waitOutput(t, "curl -si")
	assert.Contains(t, text, "certificates: testdata/pki (the repository's fixtures)")
	m := regexp.MustCompile(`(?m)^\s+go run \./examples/xmppcheck (.*)$`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
	assert.Contains(t, m[1], "-ca testdata/pki/ca.pem")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := exec.CommandContext(ctx, xmppcheck, strings.Fields(m[1])...)
	check.Dir = "../.."
	check.Env = cleanEnv()
	res, err := check.CombinedOutput()
	require.NoError(t, err, "the printed xmppcheck command passes:\n%s", res)
	assert.Contains(t, string(res), "OK    result")

	for _, path := range []string{"/status", "/metrics", "/readyz"} {
		m := regexp.MustCompile(`curl -s[i]? (http://127\.0\.0\.1:\d+` + path + `)`).FindStringSubmatch(text)
		require.NotNil(t, m, "no curl command for %s:\n%s", path, text)
		resp, err := http.Get(m[1])
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
	}

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done
	require.NoError(t, p.cmd.Wait(), p.output())
	assert.Contains(t, p.output(), "demo finished")
}

// TestSystemdUnit: the shipped unit passes the secret as the credential
// the binary reads, and systemd-analyze (when present) finds nothing wrong
// but the binary not being installed here.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("cblink.service")
	require.NoError(t, err)
	text := string(unit)
	assert.Contains(t, text, "\nLoadCredential="+settings.DefaultCredential+":")
	assert.Contains(t, text, "\nRestartPreventExitStatus=2\n", "invalid settings (exit 2) are not retried")
	assert.NotContains(t, text, settings.SecretEnv, "no secret in the environment")
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: unit syntax not verified")
		return
	}
	out, _ := exec.Command("systemd-analyze", "verify", "cblink.service").CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "/usr/local/bin/cblink-callbridge is not executable") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
}
