package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/component"
)

// TestCallsRefuse runs the binary with -calls against an in-process XMPP
// server: a known call with its passcode is accepted, a wrong passcode is
// refused forbidden, an unknown call item-not-found, a request without a
// call bad-request; the passcodes are never logged.
func TestCallsRefuse(t *testing.T) {
	l, ca := startLab(t)
	calls := filepath.Join(t.TempDir(), "calls")
	require.NoError(t, os.WriteFile(calls, []byte("100 zq-pass-71 Weekly sync\n200 - Open room\n"), 0o600))
	p := startProc(t, []string{"CBLINK_SECRET=" + testSecret}, "-name", "cb1", "-domain", "example.com", "-dns", l.DNS.Addr(),
		"-ca", ca, "-log-format", "json", "-calls", calls)
	p.waitLog(t, "call directory loaded: joins to other calls are refused", "calls", "2")
	p.waitLog(t, "xmpp link connected", "server", "xmpp1.example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, call, passcode string
		want                 stanza.Condition // "" accepted
	}{
		{"accepted", "100", "zq-pass-71", ""},
		{"no passcode needed", "200", "", ""},
		{"wrong passcode", "100", "zq-wrong-42", stanza.Forbidden},
		{"unknown call", "300", "", stanza.ItemNotFound},
		{"no call id", "", "", stanza.BadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := l.Join(ctx, "xmpp1.example.com", &component.JoinRequest{
				From: jid.MustParse("web@example.com/x"), Call: tc.call, Passcode: tc.passcode, DisplayName: "Ann"})
			if tc.want == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, res.Session)
				return
			}
			var se stanza.Error
			require.True(t, errors.As(err, &se), "%v", err)
			assert.Equal(t, tc.want, se.Condition)
		})
	}
	p.waitLog(t, "join request accepted", "call", "100", "call_name", "Weekly sync")
	p.waitLog(t, "join request refused: wrong passcode", "call", "100")
	p.waitLog(t, "join request refused: unknown call", "call", "300")
	assert.NotContains(t, p.output(), "zq-pass-71", "a passcode was logged")
	assert.NotContains(t, p.output(), "zq-wrong-42", "a passcode was logged")
}

func TestCallsInvalid(t *testing.T) {
	dup := filepath.Join(t.TempDir(), "calls")
	require.NoError(t, os.WriteFile(dup, []byte("100 1\n100 2\n"), 0o600))
	for _, file := range []string{dup, filepath.Join(t.TempDir(), "missing")} {
		cmd := exec.Command(bin, "-name", "cb1", "-domain", "example.com", "-calls", file)
		cmd.Env = append(cleanEnv(), "CBLINK_SECRET="+testSecret)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 2, ee.ExitCode())
		assert.Contains(t, stderr.String(), "callbridge: invalid settings: -calls: ")
	}
}
