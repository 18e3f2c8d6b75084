package settings

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for _, tc := range []struct {
		name    string
		file    string
		env     string
		want    string
		wantErr bool
	}{
		{name: "file wins", file: file, env: "from-env", want: "from-file"},
		{name: "env", env: "from-env", want: "from-env"},
		{name: "none", wantErr: true},
		{name: "empty file", file: empty, env: "from-env", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(SecretEnv, tc.env)
			s := Settings{Name: "cb1", Domain: "example.com", SecretFile: tc.file}
			got, err := s.Secret()
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
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
