package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/internal/binarytest"
)

const testSecret = "cb-S3cret-77c1e0" // must never be printed

// bin is the callbridge binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) { os.Exit(binarytest.TestMainWithBinary(m, "callbridge", &bin)) }

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, runDemo(ctx, &out, demoOptions{}))
	t.Logf("demo took %v:\n%s", time.Since(start), out.String())
	text := out.String()

	// Each key line, in this order.
	var last int
	for _, want := range []string{
		`Secret:[redacted]`,
		"2. SRV answer for _xmpp-component._tcp.example.com. (NOERROR",
		"IN SRV 10 10 ",
		"IN SRV 20 10 ",
		"[bridge] Resolving",
		"[bridge] Connecting: TCP to xmpp1.example.com",
		"[bridge] TLS: TCP connected to 127.0.0.1:",
		"[bridge] Authenticating: certificate of xmpp1.example.com trusted",
		"SANs [example.com xmpp1.example.com]",
		"[bridge] Connected: to xmpp1.example.com",
		"for call 100 (\"Alice\"): accepted, session s-100-1",
		"web: alice joined, session s-100-1",
		"wrong passcode, refused",
		"web: bob refused: forbidden",
		"web: carol refused: item-not-found",
		"xmpp1.example.com crashes",
		"link to xmpp1.example.com lost",
		"[bridge] Connected: to xmpp2.example.com",
		"failover done: now on xmpp2.example.com",
		"web: dave joined",
		"[bridge] Stopped",
		"xmpp2.example.com received </stream:stream>: the link was closed cleanly",
		"stats: 2 connects, 2 joins accepted, 2 refused",
		"demo finished",
	} {
		i := strings.Index(text[last:], want)
		require.GreaterOrEqual(t, i, 0, "missing, or out of order: %q", want)
		last += i + len(want)
	}
	assert.NotContains(t, text, "BackingOff", "failover without backoff")
}

// proc is a running callbridge binary whose JSON log lines are collected.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []map[string]any
	raw    bytes.Buffer // stdout and stderr, for the secret check
	done   chan struct{}
	update chan struct{}
}

func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, "", env, args...)
}

// startProcIn is startProc with the working directory dir.
func startProcIn(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{}), update: make(chan struct{}, 1)}
	p.cmd.Dir = dir
	p.cmd.Env = append(cleanEnv(), env...)
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	p.cmd.Stdout = &lockedWriter{p: p}
	require.NoError(t, p.cmd.Start())
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			_ = json.Unmarshal(sc.Bytes(), &m)
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if m != nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
			select {
			case p.update <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		_ = p.cmd.Wait()
		assert.NotContains(t, p.output(), testSecret, "the secret was printed")
	})
	return p
}

type lockedWriter struct{ p *proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	n, err := w.p.raw.Write(b)
	w.p.mu.Unlock()
	select {
	case w.p.update <- struct{}{}:
	default:
	}
	return n, err
}

// waitOutput waits until the process's output contains s, and returns the
// output.
func (p *proc) waitOutput(t *testing.T, s string) string {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		if out := p.output(); strings.Contains(out, s) {
			return out
		}
		select {
		case <-p.update:
		case <-p.done:
			if out := p.output(); strings.Contains(out, s) {
				return out
			}
			t.Fatalf("process ended before printing %q:\n%s", s, p.output())
		case <-deadline:
			t.Fatalf("no %q within 15s:\n%s", s, p.output())
		}
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// waitLog waits for a log line whose msg is msg and whose attributes
// include the given key/value pairs, and returns it.
func (p *proc) waitLog(t *testing.T, msg string, kv ...string) map[string]any {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			m := p.lines[seen]
			if m["msg"] != msg {
				continue
			}
			ok := true
			for i := 0; i+1 < len(kv); i += 2 {
				if fmt.Sprint(m[kv[i]]) != kv[i+1] {
					ok = false
				}
			}
			if ok {
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		select {
		case <-p.update:
		case <-p.done:
			t.Fatalf("process ended before log %q %v:\n%s", msg, kv, p.output())
		case <-deadline:
			t.Fatalf("no log %q %v within 15s:\n%s", msg, kv, p.output())
		}
	}
}

func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CBLINK_") {
			env = append(env, e)
		}
	}
	return env
}

func startLab(t *testing.T) (*callbridgetest.Lab, string) {
	t.Helper()
	return startLabWith(t, callbridgetest.Options{Servers: []callbridgetest.Server{{Name: "xmpp1.example.com", Priority: 10, Weight: 10}}})
}

// startLabWith is startLab with the servers (and SRV records) of o; the
// secret and the log are the tests'.
func startLabWith(t *testing.T, o callbridgetest.Options) (*callbridgetest.Lab, string) {
	t.Helper()
	o.Secret, o.Logf = testSecret, t.Logf
	l, err := callbridgetest.NewLab(o)
	require.NoError(t, err)
	t.Cleanup(l.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, l.RootPEM(), 0o600))
	return l, ca
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestRunAndSIGTERM runs the binary against an in-process XMPP server,
// with the secret from the environment or a file: it connects, answers
// status, metrics, disco#info and a join request, and on SIGTERM closes
// the stream cleanly and exits 0.
func TestRunAndSIGTERM(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret func(t *testing.T) (env []string, args []string)
	}{
		{"secret from CBLINK_SECRET", func(t *testing.T) ([]string, []string) {
			return []string{"CBLINK_SECRET=" + testSecret}, nil
		}},
		{"secret from -secret-file", func(t *testing.T) ([]string, []string) {
			f := filepath.Join(t.TempDir(), "secret")
			require.NoError(t, os.WriteFile(f, []byte(testSecret+"\n"), 0o600))
			return nil, []string{"-secret-file", f}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ca := startLab(t)
			env, args := tc.secret(t)
			// Settings from the environment too; a flag wins over it.
			env = append(env, "CBLINK_DOMAIN=example.com", "CBLINK_NAME=wrong", "CBLINK_DNS="+l.DNS.Addr())
			args = append(args, "-name", "cb1", "-ca", ca, "-status-addr", "127.0.0.1:0", "-log-format", "json", "-ping-interval", "200ms")
			p := startProc(t, env, args...)

			starting := p.waitLog(t, "starting")
			for _, k := range []string{"name", "domain", "server", "sni", "secret", "ca", "dns", "dial_timeout_seconds", "handshake_timeout_seconds",
				"keepalive_seconds", "ping_interval_seconds", "ping_timeout_seconds", "workers", "queue_size", "backoff_base_seconds", "backoff_max_seconds",
				"fail_back", "fail_back_interval_seconds", "stop_on_permanent", "status_addr", "shutdown_grace_seconds"} {
				assert.Contains(t, starting, k, "the starting line lists every setting")
			}
			usage := help(t)
			for k := range starting {
				switch k {
				case "time", "level", "msg", "secret": // the secret has no flag, by design
					continue
				}
				flag := strings.ReplaceAll(strings.TrimSuffix(k, "_seconds"), "_", "-")
				assert.True(t, strings.Contains(usage, "\n  -"+flag+" ") || strings.Contains(usage, "\n  -"+flag+"\n"),
					"the starting line's %s is the setting of no flag", k)
			}
			assert.NotContains(t, starting, "server_name", "not set: no sentence as a value")
			assert.Equal(t, 0.2, starting["ping_interval_seconds"], "durations in seconds in JSON, the unit in the key")
			assert.Equal(t, 10.0, starting["dial_timeout_seconds"], "the default applied")
			assert.Equal(t, true, starting["fail_back"], "fail-back is on by default")
			assert.Equal(t, "SRV _xmpp-component._tcp.example.com", starting["server"])
			src := fmt.Sprint(starting["secret"])
			assert.True(t, src == "environment variable CBLINK_SECRET" || strings.HasPrefix(src, "file /"), "the secret's source, never the secret: %q", src)
			addr := p.waitLog(t, "status server listening")["addr"].(string)
			p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := l.Servers[0].WaitConn(ctx, "cb1.example.com")
			require.NoError(t, err)

			var st struct {
				State     string `json:"state"`
				Server    string `json:"server"`
				Addr      string `json:"addr"`
				LastError string `json:"last_error"`
			}
			require.NoError(t, json.Unmarshal([]byte(httpGet(t, "http://"+addr+"/status")), &st))
			assert.Equal(t, callbridge.Connected.String(), st.State)
			assert.Equal(t, "xmpp1.example.com", st.Server)
			assert.Equal(t, l.Servers[0].Addr(), st.Addr)

			reply, err := conn.SendIQ(ctx, component.MarshalJoinIQ(&component.JoinRequest{
				From: jid.MustParse("alice@example.com/web"), ID: "j1", Call: "100", DisplayName: "Alice",
			}, jid.MustParse("cb1.example.com")))
			require.NoError(t, err)
			res, err := component.ParseJoinResponse(reply)
			require.NoError(t, err)
			assert.Equal(t, "cb1-1", res.Session)
			p.waitLog(t, "join request accepted", "caller", "alice@example.com/web", "call", "100", "display_name", "Alice")

			disco, err := conn.SendIQ(ctx, []byte(`<iq type='get' id='d1' from='example.com' to='cb1.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`))
			require.NoError(t, err)
			assert.Contains(t, string(disco), "type='result'")
			assert.Contains(t, string(disco), "<identity category='component'")
			assert.Contains(t, string(disco), "var='urn:xmpp:ping'")

			_, err = conn.Ping(ctx)
			require.NoError(t, err, "XEP-0199 pings are answered")

			assert.Equal(t, "ok\n", httpGet(t, "http://"+addr+"/livez"))
			assert.Contains(t, httpGet(t, "http://"+addr+"/readyz"), "ready: connected to xmpp1.example.com")
			metrics := httpGet(t, "http://"+addr+"/metrics")
			for _, want := range []string{
				"# TYPE cblink_connects_total counter\ncblink_connects_total 1\n",
				"cblink_connected 1\n",
				`cblink_state{state="connected"} 1`,
				"cblink_joins_handled_total 1\n",
				`cblink_connect_failures_total{kind="auth"} 0`,
				"cblink_build_info{",
				"go_goroutines ",
				"process_resident_memory_bytes ",
			} {
				assert.Contains(t, metrics, want)
			}

			require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
			<-p.done
			err = p.cmd.Wait()
			require.NoError(t, err, "exit status 0 after SIGTERM:\n%s", p.output())
			require.NoError(t, conn.WaitClosed(ctx))
			assert.True(t, conn.ClosedByPeer(), "the server saw </stream:stream>")
			p.waitLog(t, "stopped: stream closed")
		})
	}
}

// TestInvalidSettings: the process exits 2 with one line naming every
// problem by its flag.
func TestInvalidSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"nothing set", nil, nil, []string{"-name: must be set", "-domain: must be set", "secret: set -secret-file, the systemd credential cblink-secret (LoadCredential=), or the CBLINK_SECRET environment variable"}},
		{"bad server and missing secret file", []string{"CBLINK_DOMAIN=example.com"}, []string{"-name", "cb1", "-server", "a:b:c", "-secret-file", "/nonexistent/secret"},
			[]string{"-server:", "-secret-file:"}},
		{"name with a domain part", []string{"CBLINK_SECRET=" + testSecret}, []string{"-name", "cb1.example.com", "-domain", "example.com"}, []string{"-name: must not contain a domain part"}},
		{"bad duration in env", []string{"CBLINK_PING_TIMEOUT=soon"}, nil, []string{"CBLINK_PING_TIMEOUT"}},
		{"bad log format", []string{"CBLINK_SECRET=" + testSecret}, []string{"-name", "cb1", "-domain", "example.com", "-log-format", "xml"}, []string{"-log-format"}},
		{"every problem at once", nil, []string{"-log-format", "xml", "-web", "notanaddr", "-shutdown-grace", "-5s", "-status-addr", "127.0.0.1:99999"},
			[]string{"-log-format: \"xml\" is neither text nor json", "-web: \"notanaddr\" is not host:port", "-shutdown-grace: must not be negative",
				"-status-addr: \"127.0.0.1:99999\": bad port", "-name: must be set", "-domain: must be set", "secret: set -secret-file"}},
		{"bad calls file and address", []string{"CBLINK_SECRET=" + testSecret}, []string{"-name", "cb1", "-domain", "example.com", "-calls", "/nonexistent/calls", "-status-addr", "9180"},
			[]string{"-calls:", "-status-addr: \"9180\" is not host:port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(cleanEnv(), tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, 2, ee.ExitCode())
			out := stderr.String()
			t.Log(out)
			assert.Empty(t, stdout.String())
			assert.Equal(t, 1, strings.Count(out, "\n"), "one line: %q", out)
			assert.True(t, strings.HasPrefix(out, "callbridge: "), out)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			assert.NotContains(t, out, testSecret)
		})
	}
}

// TestListenFailureIsNotInvalidSettings: a well-formed -status-addr or
// -web whose port is in use is a failure to retry (exit 1, an ERROR log
// line naming the flag), not invalid settings (exit 2, which the systemd
// unit does not restart).
func TestListenFailureIsNotInvalidSettings(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, flag := range []string{"-status-addr", "-web"} {
		t.Run(flag, func(t *testing.T) {
			code, stdout, stderr := runBin(t, []string{"CBLINK_SECRET=" + testSecret},
				"-name", "cb1", "-domain", "example.com", "-dns", "127.0.0.1:1", "-log-format", "json", flag, busy.Addr().String())
			assert.Equal(t, 1, code, stderr)
			assert.Empty(t, stdout)
			assert.NotContains(t, stderr, "invalid settings")
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stderr)), &m), "one JSON line: %s", stderr)
			assert.Equal(t, "ERROR", m["level"])
			assert.Equal(t, "cannot listen", m["msg"])
			assert.Equal(t, flag, m["flag"])
			assert.Equal(t, busy.Addr().String(), m["addr"])
			assert.Contains(t, m["err"], "address already in use")
		})
	}
}

// help returns the binary's -help text.
func help(t *testing.T) string {
	t.Helper()
	code, _, stderr := runBin(t, nil, "-help")
	require.Equal(t, 0, code)
	return stderr
}
