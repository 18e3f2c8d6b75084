package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/callbridge/callbridgetest"
)

// buildBridge builds the callbridge command into a temporary directory.
func buildBridge(t *testing.T) string {
	t.Helper()
	callbridge := filepath.Join(t.TempDir(), "callbridge")
	out, err := exec.Command("go", "build", "-o", callbridge, "../callbridge").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return callbridge
}

// TestBridgeRefusesToStart: the settings that make the bridge exit 2 at
// start, -log-format and a -calls file that does not parse or cannot be
// read, make the check fail its settings step with exit 2 too, naming
// the problem as the bridge does; a passcode is never printed.
func TestBridgeRefusesToStart(t *testing.T) {
	callbridge := buildBridge(t)
	l, ca := startLab(t, callbridgetest.Options{Servers: twoServers()[:1]})
	dir := t.TempDir()
	dup := filepath.Join(dir, "dup")
	require.NoError(t, os.WriteFile(dup, []byte("100 zq-pass-71\n100 zq-pass-72\n"), 0o600))
	missing := filepath.Join(dir, "missing")
	base := []string{"-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(), "-ca", ca}
	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		problem string // in the bridge's message and the check's step
	}{
		{"-log-format xml", nil, []string{"-log-format", "xml"}, `-log-format: "xml" is neither text nor json`},
		{"CBLINK_LOG_FORMAT=xml", []string{"CBLINK_LOG_FORMAT=xml"}, nil, `-log-format: "xml" is neither text nor json`},
		{"-calls with a call twice", nil, []string{"-calls", dup}, "-calls: " + dup + ": line 2: call 100 listed twice"},
		{"CBLINK_CALLS missing file", []string{"CBLINK_CALLS=" + missing}, nil, "-calls: open " + missing + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"CBLINK_SECRET=" + testSecret}, tc.env...)
			args := append(append([]string{}, base...), tc.args...)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bridge that starts after all fails, not hangs
			defer cancel()
			cmd := exec.CommandContext(ctx, callbridge, args...)
			cmd.Env = append(cleanEnv(), env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			require.Equal(t, 2, ee.ExitCode(), "the bridge refuses it: %s", out)
			assert.Contains(t, string(out), tc.problem)

			r := runCheck(t, env, append(args, "-json")...)
			assert.Equal(t, 2, r.code)
			steps := parseSteps(t, r.stdout)
			s := find(t, steps, stepSettings, "")
			assert.Equal(t, Fail, s.Status)
			assert.Contains(t, s.Detail, tc.problem)
			assert.NotEmpty(t, s.Hint)
			assert.Equal(t, stepResult, steps[len(steps)-1].Step)
			assert.Len(t, steps, 2, "nothing else runs")
			assert.NotContains(t, r.stdout+r.stderr, "zq-pass-7", "a passcode was printed")
			assert.NotContains(t, r.stderr, "ignored")
		})
	}

	// Every problem at once, a secret that cannot be read among them.
	r := runCheck(t, nil, append(base, "-secret-file", missing, "-log-format", "xml", "-calls", dup, "-json")...)
	assert.Equal(t, 2, r.code)
	s := find(t, parseSteps(t, r.stdout), stepSettings, "")
	assert.Equal(t, Fail, s.Status)
	for _, p := range []string{"-secret-file: open " + missing, `-log-format: "xml"`, "-calls: " + dup} {
		assert.Contains(t, s.Detail, p)
	}

	// A valid directory is checked and named, not ignored.
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("100 zq-pass-71 Weekly sync\n200 - Open room\n"), 0o600))
	r = runCheck(t, []string{"CBLINK_SECRET=" + testSecret, "CBLINK_LOG_FORMAT=json"}, append(base, "-calls", good)...)
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "call directory "+good+" (2 calls)")
	assert.Empty(t, r.stderr)
	assert.NotContains(t, r.stdout, "zq-pass-7")
}

// TestDocumentedEnvFile runs the documented command, (set -a && .
// /etc/cblink/cblink.env && cblink-xmppcheck -secret-file
// /etc/cblink/secret), with the env file shipped: the note names only the
// ignored settings the file sets to a value, never one it leaves empty,
// and neither -log-format nor -calls (checked).
func TestDocumentedEnvFile(t *testing.T) {
	l, ca := startLab(t, callbridgetest.Options{Servers: twoServers()})
	f, err := os.Open("../callbridge/cblink.env")
	require.NoError(t, err)
	defer f.Close()
	var env, empty []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if line == "" || strings.HasPrefix(line, "#") || !ok {
			continue
		}
		switch k {
		case "CBLINK_CA":
			v = ca // the lab's
		case "CBLINK_NAME", "CBLINK_DOMAIN":
			require.Contains(t, []string{"cb1", "example.com"}, v, "the lab registers cb1.example.com")
		}
		if v == "" {
			empty = append(empty, "-"+strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "CBLINK_")), "_", "-"))
		}
		env = append(env, k+"="+v)
	}
	require.NoError(t, sc.Err())
	require.Contains(t, empty, "-calls", "the shipped file leaves CBLINK_CALLS empty")

	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte(testSecret+"\n"), 0o600))
	r := runCheck(t, env, "-secret-file", secret, "-dns", l.DNS.Addr())
	assert.Equal(t, 0, r.code)
	note, _, _ := bytes.Cut([]byte(r.stderr), []byte(" ignored"))
	for _, name := range append(empty, "-log-format", "-calls") {
		assert.NotContains(t, strings.Fields(strings.ReplaceAll(string(note), ",", " ")), name, "%s is not an ignored setting that is set", name)
	}
	assert.Contains(t, r.stderr, "-status-addr", "CBLINK_STATUS_ADDR is set and ignored")
}
