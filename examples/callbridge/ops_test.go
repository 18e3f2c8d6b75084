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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/examples/internal/settings"
	"github.com/cblink/cblink/internal/binarytest"
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
	// backoff_seconds is what remains of the wait; seconds to the millisecond.
	doc := newStatusDoc(states["backoff"], since.Add(400*time.Millisecond+123456*time.Nanosecond))
	require.NotNil(t, doc.BackoffSeconds)
	assert.Equal(t, 1.1, *doc.BackoffSeconds)
	assert.Equal(t, 0.4, doc.StateSeconds, "no float noise")
	doc = newStatusDoc(states["backoff"], since.Add(time.Hour))
	assert.Equal(t, 0.0, *doc.BackoffSeconds, "never negative")
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
		if k == callbridge.KindClosed || k == callbridge.KindFailBack {
			continue // an attempt never fails so: no series that cannot move
		}
		fmt.Fprintf(&want, "cblink_connect_failures_total{kind=%q} %d\n", k, b.s.ConnectFailures[k])
	}
	want.WriteString("# HELP cblink_disconnects_total Links that ended, by cause.\n# TYPE cblink_disconnects_total counter\n")
	for _, k := range callbridge.ErrorKinds() {
		fmt.Fprintf(&want, "cblink_disconnects_total{kind=%q} 0\n", k)
	}
	want.WriteString("# HELP cblink_permanent_error 1 while every server's last failure is one an operator must fix (wrong secret, unknown name, certificate, no service, protocol, config).\n# TYPE cblink_permanent_error gauge\ncblink_permanent_error 1\n")
	want.WriteString("# HELP cblink_failed_cycles Failed connection cycles (every server tried failed) since the link was last up.\n# TYPE cblink_failed_cycles gauge\ncblink_failed_cycles 3\n")
	want.WriteString("# HELP cblink_keepalive_rtt_seconds Round trip of the last XEP-0199 ping to the server (0 before the first).\n# TYPE cblink_keepalive_rtt_seconds gauge\ncblink_keepalive_rtt_seconds 0.0015\n")
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want.String()),
		"cblink_connect_failures_total", "cblink_disconnects_total", "cblink_permanent_error", "cblink_failed_cycles", "cblink_keepalive_rtt_seconds"))
	assert.Equal(t, 19+len(callbridge.States())+2*len(callbridge.ErrorKinds())-2-3, testutil.CollectAndCount(c), "series")

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
	l, ca := startLabWith(t, callbridgetest.Options{Servers: []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10, Weight: 10, Down: true},
		{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
	}})
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
	assert.Contains(t, text, "xmpp1.example.com is back", text)
	assert.Contains(t, text, "moves back to xmpp1.example.com (the preferred server) at its next fail-back probe, within 5s", "fail-back on, as in the binary")
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

	// The bridge returns to the preferred server, which the scenario
	// restarted; /metrics says it is no longer on a backup.
	p.waitOutput(t, "[bridge] Failed back: to xmpp1.example.com")
	m = regexp.MustCompile(`curl -s (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
	assert.Contains(t, httpGet(t, m[1]), "\ncblink_on_backup 0\n")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done
	require.NoError(t, p.cmd.Wait(), p.output())
	assert.Contains(t, p.output(), "demo finished")
	assert.Contains(t, p.output(), "xmpp1.example.com received </stream:stream>: the link was closed cleanly", "stopped on the preferred server")
}

// TestSystemdUnit: the shipped unit passes the secret as the credential
// the binary reads, takes its settings from the environment file the
// administrator edits, and reloads with SIGHUP.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("cblink.service")
	require.NoError(t, err)
	text := string(unit)
	assert.Contains(t, text, "\nLoadCredential="+settings.DefaultCredential+":/etc/cblink/secret\n")
	assert.Contains(t, text, "\nEnvironmentFile=/etc/cblink/cblink.env\n")
	assert.Contains(t, text, "\nExecStart=/usr/local/bin/cblink-callbridge\n", "no settings in the unit")
	assert.Contains(t, text, "\nExecReload=/bin/kill -HUP $MAINPID\n")
	assert.Contains(t, text, "\nRestartPreventExitStatus=2\n", "invalid settings (exit 2) are not retried")
	assert.NotContains(t, text, settings.SecretEnv, "no secret in the environment")
}

// readmeBlock returns the indented command block of examples/callbridge/
// README.md that follows the paragraph containing after.
func readmeBlock(t *testing.T, after string) []string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	text := string(readme)
	i := strings.Index(text, after)
	require.GreaterOrEqual(t, i, 0, "README.md lost %q", after)
	var cmds []string
	for _, line := range strings.Split(text[i:], "\n")[1:] {
		switch {
		case strings.HasPrefix(line, "    "):
			cmds = append(cmds, strings.TrimPrefix(line, "    "))
		case line == "" && cmds == nil:
		case line == "":
			return cmds
		case cmds == nil:
		default:
			return cmds
		}
	}
	return cmds
}

// TestInstallAsDocumented runs the install commands of README.md as
// written, but under a temporary root (every /usr/local/bin/ and /etc/
// path moved under it), then checks the result as an administrator's
// machine would: systemd-analyze verify finds nothing wrong with the unit
// as installed (its binary installed and executable), the secret file is
// the secret typed, mode 0600, and every line of the settings file sets
// a flag of the installed binary. In CI (CI set) a missing
// systemd-analyze fails the test (.ci/run installs it).
func TestInstallAsDocumented(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is not installed (apt-get install systemd)")
		}
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	install := readmeBlock(t, "install\nthe two binaries")
	require.NotEmpty(t, install)
	root := t.TempDir()
	rewrite := regexp.MustCompile(`(^|[\s>=])(/usr/local/bin/|/etc/)`)
	script := "set -euo pipefail\n"
	for _, cmd := range install {
		script += rewrite.ReplaceAllString(cmd, "${1}"+root+"${2}") + "\n"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, d := range []string{"usr/local/bin", "etc/systemd/system"} { // present on any Debian
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	sh := exec.CommandContext(ctx, "bash", "-c", script)
	sh.Dir = "../.."
	sh.Stdin = strings.NewReader(testSecret + "\n")
	out, err := sh.CombinedOutput()
	require.NoError(t, err, "%s\n%s", script, out)
	assert.NotContains(t, string(out), testSecret)

	// systemd-analyze verify --root sees the installed files; it also
	// needs the system's own units (sysinit.target, ...) and the
	// commands the unit runs besides ours, as on any Debian.
	sys := filepath.Join(root, "usr/lib/systemd")
	require.NoError(t, os.MkdirAll(sys, 0o755))
	require.NoError(t, exec.Command("cp", "-a", "/usr/lib/systemd/system", sys).Run())
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	// ExecReload's /bin/kill (Debian's procps, priority important).
	require.NoError(t, exec.Command("cp", "/bin/kill", filepath.Join(root, "usr/bin/kill")).Run(), "/bin/kill: apt-get install procps")
	verify := exec.CommandContext(ctx, analyze, "verify", "--root="+root, "/etc/systemd/system/cblink.service")
	out, err = verify.CombinedOutput()
	assert.NoError(t, err, "systemd-analyze verify: %s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify")

	fi, err := os.Stat(filepath.Join(root, "etc/cblink/secret"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	secret, err := os.ReadFile(filepath.Join(root, "etc/cblink/secret"))
	require.NoError(t, err)
	assert.Equal(t, testSecret+"\n", string(secret))

	help, err := exec.CommandContext(ctx, filepath.Join(root, "usr/local/bin/cblink-callbridge"), "-help").CombinedOutput()
	require.NoError(t, err, "%s", help)
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(string(help), -1) {
		flags[settings.EnvName(m[1])] = true
	}
	env, err := os.ReadFile(filepath.Join(root, "etc/cblink/cblink.env"))
	require.NoError(t, err)
	var keys []string
	for _, line := range strings.Split(string(env), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		require.True(t, ok, "not KEY=value: %q", line)
		assert.True(t, flags[k], "%s sets no flag of cblink-callbridge", k)
		keys = append(keys, k)
	}
	assert.Subset(t, keys, []string{"CBLINK_NAME", "CBLINK_DOMAIN", "CBLINK_SERVER", "CBLINK_CA", "CBLINK_STATUS_ADDR", "CBLINK_LOG_FORMAT"})
}

// TestPermanentErrorsLoggedAtError: a failure only an administrator can
// fix (a wrong secret, no SRV record) is logged at ERROR, with the bridge
// still retrying (no -stop-on-permanent); a transient one (a server down)
// stays at WARN. Both say whether they are permanent.
func TestPermanentErrorsLoggedAtError(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		l, ca := startLab(t)
		p := startProc(t, []string{"CBLINK_SECRET=wrong-" + testSecret},
			"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json")
		p.waitLog(t, "xmpp server failed", "level", "ERROR", "kind", "auth", "permanent", "true")
	})
	t.Run("no SRV record", func(t *testing.T) {
		l, _ := startLabWith(t, callbridgetest.Options{
			Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10, Weight: 10}},
			SRV:     callbridgetest.SRVNone,
		})
		p := startProc(t, []string{"CBLINK_SECRET=" + testSecret},
			"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-log-format", "json")
		p.waitLog(t, "xmpp lookup failed", "level", "ERROR", "kind", "no-service", "permanent", "true")
	})
	t.Run("server down", func(t *testing.T) {
		l, ca := startLabWith(t, callbridgetest.Options{
			Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10, Weight: 10, Down: true}},
		})
		p := startProc(t, []string{"CBLINK_SECRET=" + testSecret},
			"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json")
		p.waitLog(t, "xmpp server failed", "level", "WARN", "kind", "network", "permanent", "false")
	})
}

// TestSIGHUPReloadsAndRetriesNow: after a permanent error the bridge
// waits -backoff-max (60s) between attempts; once the administrator fixed
// the secret file or the CA file, SIGHUP re-reads both and connects at
// once (well within the 15s waitLog allows), with a log line. A reload
// whose settings no longer validate is logged at ERROR and the process
// carries on. SIGHUP never ends the process; SIGTERM still stops it
// cleanly.
func TestSIGHUPReloadsAndRetriesNow(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind string
		// broken writes the broken files, fix repairs them.
		broken, fix func(t *testing.T, secret, ca string, labCA []byte)
	}{
		{"secret fixed", "auth",
			func(t *testing.T, secret, ca string, labCA []byte) {
				require.NoError(t, os.WriteFile(secret, []byte("wrong-"+testSecret+"\n"), 0o600))
				require.NoError(t, os.WriteFile(ca, labCA, 0o600))
			},
			func(t *testing.T, secret, ca string, labCA []byte) {
				require.NoError(t, os.WriteFile(secret, []byte(testSecret+"\n"), 0o600))
			}},
		{"CA fixed", "certificate",
			func(t *testing.T, secret, ca string, labCA []byte) {
				require.NoError(t, os.WriteFile(secret, []byte(testSecret+"\n"), 0o600))
				other, err := os.ReadFile("../../testdata/pki/ca.pem") // another CA
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(ca, other, 0o600))
			},
			func(t *testing.T, secret, ca string, labCA []byte) {
				require.NoError(t, os.WriteFile(ca, labCA, 0o600))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := startLab(t)
			dir := t.TempDir()
			secret, ca := filepath.Join(dir, "secret"), filepath.Join(dir, "ca.pem")
			tc.broken(t, secret, ca, l.RootPEM())
			p := startProc(t, nil, "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(),
				"-ca", ca, "-secret-file", secret, "-log-format", "json", "-v")
			p.waitLog(t, "xmpp link backoff", "level", "DEBUG", "kind", tc.kind, "permanent", "true", "backoff_seconds", "60")

			// A reload that cannot read the secret keeps the settings in force.
			require.NoError(t, os.Remove(secret))
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
			failed := p.waitLog(t, "SIGHUP: reload failed, the settings in force are kept", "level", "ERROR")
			assert.Contains(t, fmt.Sprint(failed["problems"]), "-secret-file")

			tc.broken(t, secret, ca, l.RootPEM())
			tc.fix(t, secret, ca, l.RootPEM())
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
			p.waitLog(t, "SIGHUP: secret file and CA file read again; reconnecting now", "ca", ca, "secret", "file "+secret)
			p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com")

			require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
			<-p.done
			require.NoError(t, p.cmd.Wait(), p.output())
			p.waitLog(t, "stopped: stream closed")
		})
	}
}

// TestSIGHUPSecretFixedAtStart: with the secret from the systemd
// credential or CBLINK_SECRET, which cannot change in a running process,
// SIGHUP says what it read again (the CA file only) and warns that a new
// secret needs a restart; the bridge reconnects all the same.
func TestSIGHUPSecretFixedAtStart(t *testing.T) {
	for _, tc := range []struct {
		name, source string
		env          func(t *testing.T) []string
	}{
		{"systemd credential", "systemd credential cblink-secret", func(t *testing.T) []string {
			creds := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(creds, "cblink-secret"), []byte(testSecret+"\n"), 0o400))
			return []string{"CREDENTIALS_DIRECTORY=" + creds}
		}},
		{"environment variable", "environment variable CBLINK_SECRET", func(t *testing.T) []string {
			return []string{"CBLINK_SECRET=" + testSecret}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ca := startLab(t)
			p := startProc(t, tc.env(t), "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json")
			p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com")
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
			p.waitLog(t, "SIGHUP: CA file read again; reconnecting now", "level", "INFO", "secret", tc.source, "ca", ca)
			warn := p.waitLog(t, "SIGHUP: the secret was not read again: it cannot change while the process runs; a new secret needs a restart (systemctl restart cblink)",
				"level", "WARN", "secret", tc.source)
			assert.NotNil(t, warn)
			p.waitCount(t, "xmpp link connected", 2)
			p.mu.Lock()
			lines := slices.Clone(p.lines)
			p.mu.Unlock()
			for _, m := range lines {
				assert.NotContains(t, fmt.Sprint(m["msg"]), "secret and CA file read again")
			}
		})
	}
}

// TestBackupVisibleInStatusAndMetrics: while the link is up to a backup,
// /status says it is not the preferred server and when it came up, and
// the metrics say the same; on the preferred server they say so too.
func TestBackupVisibleInStatusAndMetrics(t *testing.T) {
	up := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, backup := range []bool{true, false} {
		b := &fakeBridge{st: callbridge.Status{State: callbridge.Connected, Server: "xmpp2.example.com", Addr: "127.0.0.1:5223",
			Since: up, ConnectedSince: up, Backup: backup}}
		_, body := get(t, statusHandler(b), "/status")
		assert.Contains(t, body, fmt.Sprintf(`"preferred": %v`, !backup))
		assert.Contains(t, body, `"connected_since": "2026-11-26T12:00:00Z"`)
		_, text := get(t, statusHandler(b), "/metrics")
		assert.Contains(t, text, fmt.Sprintf("\ncblink_on_backup %d\n", map[bool]int{false: 0, true: 1}[backup]))
		assert.Contains(t, text, fmt.Sprintf("\ncblink_link_start_time_seconds %g\n", float64(up.Unix())))
		assert.Contains(t, text, fmt.Sprintf(`cblink_server_info{addr="127.0.0.1:5223",preferred="%v",server="xmpp2.example.com"} 1`, !backup))
	}
	b := &fakeBridge{st: callbridge.Status{State: callbridge.BackingOff, Since: up}}
	_, body := get(t, statusHandler(b), "/status")
	assert.Contains(t, body, `"preferred": null`)
	_, text := get(t, statusHandler(b), "/metrics")
	assert.Contains(t, text, "\ncblink_on_backup 0\n")
	assert.Contains(t, text, "\ncblink_link_start_time_seconds 0\n")
	assert.NotContains(t, text, "cblink_server_info{")
}

// waitCount waits until n log lines have msg, and returns how many there
// are then.
func (p *proc) waitCount(t *testing.T, msg string, n int) int {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		p.mu.Lock()
		c := 0
		for _, m := range p.lines {
			if m["msg"] == msg {
				c++
			}
		}
		p.mu.Unlock()
		if c >= n {
			return c
		}
		select {
		case <-p.update:
		case <-p.done:
			t.Fatalf("process ended with %d of %d log lines %q:\n%s", c, n, msg, p.output())
		case <-deadline:
			t.Fatalf("%d of %d log lines %q within 15s:\n%s", c, n, msg, p.output())
		}
	}
}

// TestRunningOnBackup (binary): with the preferred server down, the
// bridge runs on the backup and says so: the connected line, /status and
// /metrics; the failing fail-back probes give one WARN line (then at most
// one every ten minutes), not one per probe. When the preferred server
// returns, all of it says preferred again.
func TestRunningOnBackup(t *testing.T) {
	l, ca := startLabWith(t, callbridgetest.Options{Servers: []callbridgetest.Server{
		{Name: "xmpp1.example.com", Priority: 10, Weight: 10, Down: true},
		{Name: "xmpp2.example.com", Priority: 20, Weight: 10},
	}})
	p := startProc(t, []string{"CBLINK_SECRET=" + testSecret},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json",
		"-fail-back-interval", "50ms", "-v", "-status-addr", "127.0.0.1:0")
	addr := fmt.Sprint(p.waitLog(t, "status server listening")["addr"])
	p.waitLog(t, "xmpp link connected", "server", "xmpp2.example.com", "backup", "true")
	warn := p.waitLog(t, "xmpp link on a backup server: the preferred server still fails", "level", "WARN", "server", "xmpp2.example.com")
	assert.Contains(t, warn["err"], "xmpp1.example.com")
	assert.Equal(t, "xmpp1.example.com", warn["preferred"], "the server that failed, apart from the one in use")
	p.waitCount(t, "fail-back probe failed", 5)
	assert.Equal(t, 1, p.waitCount(t, "xmpp link on a backup server: the preferred server still fails", 1), "rate-limited")

	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(httpGet(t, "http://"+addr+"/status")), &doc))
	assert.Equal(t, "xmpp2.example.com", doc["server"])
	assert.Equal(t, false, doc["preferred"])
	assert.NotNil(t, doc["connected_since"])
	metrics := httpGet(t, "http://"+addr+"/metrics")
	assert.Contains(t, metrics, "\ncblink_on_backup 1\n")
	assert.Contains(t, metrics, `preferred="false",server="xmpp2.example.com"} 1`)

	require.NoError(t, l.StartServer("xmpp1.example.com"))
	p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com", "backup", "false")
	require.NoError(t, json.Unmarshal([]byte(httpGet(t, "http://"+addr+"/status")), &doc))
	assert.Equal(t, "xmpp1.example.com", doc["server"])
	assert.Equal(t, true, doc["preferred"])
	assert.Contains(t, httpGet(t, "http://"+addr+"/metrics"), "\ncblink_on_backup 0\n")
}

// TestREADMEAlerts: the alerting rules of README.md parse, use only
// metrics this binary exports, and cover what an operator pages on: the
// link down for minutes, a permanent error, a backup for long, flapping.
// None pages on a failed attempt by itself.
func TestREADMEAlerts(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, block, ok := strings.Cut(string(readme), "```yaml\n")
	require.True(t, ok, "README.md has no yaml block")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
				For   string `yaml:"for"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(block), &rules))
	require.Len(t, rules.Groups, 1)

	_, exposition := get(t, statusHandler(&fakeBridge{st: callbridge.Status{State: callbridge.Connected, Server: "x", Addr: "y"}}), "/metrics")
	exported := map[string]bool{"up": true}
	for _, m := range regexp.MustCompile(`(?m)^([a-z_]+)[{ ]`).FindAllStringSubmatch(exposition, -1) {
		exported[m[1]] = true
	}
	byMetric := map[string]string{}
	for _, r := range rules.Groups[0].Rules {
		assert.NotEmpty(t, r.Alert)
		for _, name := range regexp.MustCompile(`\b(cblink_[a-z_]+|up)\b`).FindAllString(r.Expr, -1) {
			assert.True(t, exported[name], "%s: %s is not exported", r.Alert, name)
			byMetric[name] = r.For
		}
		assert.NotContains(t, r.Expr, "cblink_connect_failures_total", "%s pages on routine restarts", r.Alert)
	}
	for metric, minFor := range map[string]time.Duration{
		"cblink_connected":       time.Minute, // longer than a routine restart
		"cblink_permanent_error": 0,
		"cblink_on_backup":       5 * time.Minute,
		"cblink_connects_total":  0, // flapping
	} {
		f, ok := byMetric[metric]
		require.True(t, ok, "no alert on %s", metric)
		if minFor > 0 {
			d, err := time.ParseDuration(f)
			require.NoError(t, err, "%s: for %q", metric, f)
			assert.GreaterOrEqual(t, d, minFor, metric)
		}
	}
}

// TestVersion: -version prints the build information the toolchain
// embedded (as go version -m reads it) and exits 0; cblink_build_info
// carries the same values.
func TestVersion(t *testing.T) {
	code, stdout, stderr := runBin(t, nil, "-version")
	require.Equal(t, 0, code, stderr)
	want := binarytest.VersionLine(t, bin, "cblink-callbridge")
	assert.Equal(t, want+"\n", stdout)

	l, ca := startLab(t)
	p := startProc(t, []string{"CBLINK_SECRET=" + testSecret},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json", "-status-addr", "127.0.0.1:0")
	addr := fmt.Sprint(p.waitLog(t, "status server listening")["addr"])
	m := regexp.MustCompile(`(?m)^cblink_build_info\{goversion="([^"]*)",revision="([^"]*)",version="([^"]*)"\} 1$`).
		FindStringSubmatch(httpGet(t, "http://"+addr+"/metrics"))
	require.NotNil(t, m)
	assert.Equal(t, want, fmt.Sprintf("cblink-callbridge version %s, revision %s, built with %s", m[3], m[2], m[1]))
}

// TestOutageLogs: through an outage of its only server the bridge logs
// one line for the link lost, one line per failed attempt, and one line
// when the link is back, with the outage's length; the link's own lines
// (component link down, up) are not repeated at INFO; a permanent
// error's last line carries no doubled package prefix.
func TestOutageLogs(t *testing.T) {
	l, ca := startLab(t)
	p := startProc(t, []string{"CBLINK_SECRET=" + testSecret},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-log-format", "json",
		"-backoff-max", "200ms")
	p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com")
	require.NoError(t, l.StopServer("xmpp1.example.com"))
	p.waitCount(t, "xmpp server failed", 3)
	require.NoError(t, l.StartServer("xmpp1.example.com"))
	p.waitCount(t, "xmpp link connected", 2)

	p.mu.Lock()
	lines := slices.Clone(p.lines)
	p.mu.Unlock()
	var msgs []string
	var back map[string]any
	connected := 0
	for _, m := range lines {
		if connected == 1 {
			msgs = append(msgs, fmt.Sprint(m["msg"]))
		}
		if m["msg"] == "xmpp link connected" {
			connected++
			back = m
		}
		if connected == 2 {
			break
		}
	}
	require.GreaterOrEqual(t, len(msgs), 5, "%v", msgs)
	assert.Equal(t, "xmpp link lost", msgs[0], "%v", msgs)
	assert.Equal(t, "xmpp link connected", msgs[len(msgs)-1], "%v", msgs)
	for _, msg := range msgs[1 : len(msgs)-1] {
		assert.Equal(t, "xmpp server failed", msg, "one line per failed attempt during the outage: %v", msgs)
	}
	assert.Equal(t, "INFO", back["level"])
	outage, ok := back["outage_seconds"].(float64)
	require.True(t, ok, "outage in seconds: %v", back)
	assert.Greater(t, outage, 0.0)

	// A wrong secret: one line per attempt, and the last line says it once.
	code, _, stderr := runBin(t, []string{"CBLINK_SECRET=wrong-" + testSecret},
		"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca, "-stop-on-permanent")
	assert.Equal(t, 1, code)
	assert.Equal(t, 2, strings.Count(stderr, "wrong shared secret"), "said on the attempt's line and on the last:\n%s", stderr)
	assert.NotContains(t, stderr, "handshake: component:", "package prefix in the middle of the text")
	assert.NotContains(t, stderr, "callbridge: giving up: callbridge:")
	assert.Contains(t, stderr, "callbridge: giving up: xmpp1.example.com")
}

// TestREADMEStatesAndLogs: the /status state list of README.md is every
// state the bridge has, in order, and each line of the Logs table is a
// message the code logs (the library's, the component's or this
// binary's; "xmpp link <state>" is the library's line per state).
func TestREADMEStatesAndLogs(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	text := string(readme)

	row := regexp.MustCompile("(?m)^\\| `state` \\| (.*) \\|$").FindStringSubmatch(text)
	require.NotNil(t, row, "README.md has no state row")
	var documented, want []string
	for _, m := range regexp.MustCompile("`([a-z]+)`").FindAllStringSubmatch(row[1], -1) {
		documented = append(documented, m[1])
	}
	for _, s := range callbridge.States() {
		want = append(want, s.String())
	}
	assert.Equal(t, want, documented, "the /status state list")

	_, logs, ok := strings.Cut(text, "\n## Logs\n")
	require.True(t, ok, "README.md has no Logs section")
	var src strings.Builder
	for _, glob := range []string{"*.go", "../../callbridge/*.go", "../../component/*.go"} {
		files, err := filepath.Glob(glob)
		require.NoError(t, err)
		require.NotEmpty(t, files, glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			src.Write(b)
		}
	}
	code := src.String()
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if line == "" && n > 0 {
			break // the end of the table
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(first, -1) {
			msg := strings.TrimSuffix(m[1], "...")
			n++
			if state, ok := strings.CutPrefix(msg, "xmpp link "); ok && slices.Contains(want, state) {
				continue
			}
			assert.Contains(t, code, `"`+msg, "README.md's Logs table: %q is logged nowhere", msg)
		}
	}
	assert.Greater(t, n, 15, "the Logs table was read")
}
