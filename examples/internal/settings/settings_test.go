package settings

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
)

func TestEnvName(t *testing.T) {
	for _, tc := range []struct{ flag, env string }{
		{"name", "CBLINK_NAME"},
		{"secret-file", "CBLINK_SECRET_FILE"},
		{"ping-interval", "CBLINK_PING_INTERVAL"},
	} {
		t.Run(tc.flag, func(t *testing.T) { assert.Equal(t, tc.env, EnvName(tc.flag)) })
	}
}

func parse(t *testing.T, args ...string) (*Settings, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var s Settings
	s.Register(fs)
	s.RegisterBridge(fs)
	return &s, Parse(fs, args)
}

func TestParseFlagWinsOverEnv(t *testing.T) {
	t.Setenv("CBLINK_NAME", "from-env")
	t.Setenv("CBLINK_DOMAIN", "example.com")
	t.Setenv("CBLINK_PING_INTERVAL", "5s")
	t.Setenv("CBLINK_DNS", "127.0.0.1:53, 127.0.0.2:5353,")
	s, err := parse(t, "-name", "cb1", "-ping-interval", "-1s")
	require.NoError(t, err)
	assert.Equal(t, "cb1", s.Name)
	assert.Equal(t, "example.com", s.Domain)
	assert.Equal(t, -time.Second, s.PingInterval)
	assert.Equal(t, []string{"127.0.0.1:53", "127.0.0.2:5353"}, s.NameServers())
}

func TestParseBadEnv(t *testing.T) {
	t.Setenv("CBLINK_KEEPALIVE", "often")
	_, err := parse(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CBLINK_KEEPALIVE")
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(file, []byte("from-file\r\n"), 0o600))
	creds := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(creds, DefaultCredential), []byte("from-credential\n"), 0o400))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for _, tc := range []struct {
		name    string
		file    string
		creds   bool   // $CREDENTIALS_DIRECTORY holds cblink-secret
		cred    string // -secret-credential
		env     string
		want    string
		wantErr bool
	}{
		{name: "file wins", file: file, env: "from-env", want: "from-file"},
		{name: "file wins over a credential", file: file, creds: true, env: "from-env", want: "from-file"},
		{name: "systemd credential wins over env", creds: true, env: "from-env", want: "from-credential"},
		{name: "a named credential must exist", cred: "other", creds: true, env: "from-env", wantErr: true},
		{name: "a named credential", cred: DefaultCredential, creds: true, env: "from-env", want: "from-credential"},
		{name: "env", env: "from-env", want: "from-env"},
		{name: "none", wantErr: true},
		{name: "empty file", file: empty, env: "from-env", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(SecretEnv, tc.env)
			t.Setenv(CredentialsDirEnv, "")
			if tc.creds {
				t.Setenv(CredentialsDirEnv, creds)
			}
			s := Settings{Name: "cb1", Domain: "example.com", SecretFile: tc.file, SecretCredential: tc.cred}
			got, err := s.Secret()
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, component.NewSecret(tc.want), got)
			cfg := s.Config()
			require.NoError(t, cfg.Validate(), "callbridge reads the same secret")
		})
	}
}

func TestProblemsNameFlags(t *testing.T) {
	t.Setenv(SecretEnv, "")
	s := Settings{Name: "cb1.example.com", Server: "a:b:c", DNS: "not a server:x"}
	got := Problems(s.Config().Validate())
	require.Len(t, got, 5, "%q", got)
	assert.Contains(t, got[0], "-domain: must be set")
	prefixes := map[string]bool{}
	for _, p := range got {
		for _, pre := range []string{"-domain:", "-name:", "-server:", "secret:", "-dns:"} {
			if len(p) >= len(pre) && p[:len(pre)] == pre {
				prefixes[pre] = true
			}
		}
	}
	assert.Len(t, prefixes, 5, "%q", got)
	assert.Nil(t, Problems(nil))
}

// TestBridgeFlags: every flag of RegisterBridge reaches the Config, and
// fail-back is on unless turned off.
func TestBridgeFlags(t *testing.T) {
	s, err := parse(t)
	require.NoError(t, err)
	assert.True(t, s.Config().FailBack, "fail-back on by default")

	s, err = parse(t, "-fail-back=false", "-fail-back-interval", "7s", "-backoff-base", "2s", "-backoff-max", "30s",
		"-dial-timeout", "3s", "-handshake-timeout", "4s", "-workers", "16", "-queue-size", "99", "-stop-on-permanent",
		"-keepalive", "20s", "-ping-interval", "15s", "-ping-timeout", "5s")
	require.NoError(t, err)
	c := s.Config()
	assert.False(t, c.FailBack)
	assert.Equal(t, 7*time.Second, c.FailBackInterval)
	assert.Equal(t, 2*time.Second, c.Backoff.Base)
	assert.Equal(t, 30*time.Second, c.Backoff.Max)
	assert.Equal(t, 3*time.Second, c.DialTimeout)
	assert.Equal(t, 4*time.Second, c.HandshakeTimeout)
	assert.Equal(t, 16, c.Workers)
	assert.Equal(t, 99, c.QueueSize)
	assert.True(t, c.StopOnPermanentError)
	assert.Equal(t, 20*time.Second, c.KeepaliveIdle)
	assert.Equal(t, 15*time.Second, c.PingInterval)
	assert.Equal(t, 5*time.Second, c.PingTimeout)

	// Each Config field a problem can name maps to a flag.
	t.Setenv(SecretEnv, "x")
	s, err = parse(t, "-name", "cb1", "-domain", "example.com", "-backoff-base", "-1s", "-workers", "-1", "-fail-back-interval", "-1s", "-handshake-timeout", "-1s")
	require.NoError(t, err)
	got := Problems(s.Config().Validate())
	assert.ElementsMatch(t, []string{"-fail-back-interval", "-backoff-base", "-handshake-timeout", "-workers"}, flagsOf(got), "%q", got)
}

func flagsOf(problems []string) []string {
	var out []string
	for _, p := range problems {
		f, _, _ := strings.Cut(p, ":")
		out = append(out, f)
	}
	return out
}
