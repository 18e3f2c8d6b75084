package callbridge

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/tlsverify"
)

const testSecret = "s3cr3t-Do-Not-Log"

func validConfig() Config {
	return Config{Name: "cb1", Domain: "example.com", Secret: component.NewSecret(testSecret)}
}

func fieldErrors(t *testing.T, err error) map[string]string {
	t.Helper()
	got := map[string]string{}
	assert.ErrorIs(t, err, component.ErrConfig)
	var ce *component.ConfigError
	require.ErrorAs(t, err, &ce)
	for _, p := range ce.Problems {
		got[p.Field] = p.Msg
	}
	return got
}

func TestValidateOK(t *testing.T) {
	r, err := validConfig().resolve()
	require.NoError(t, err)
	assert.Equal(t, "cb1.example.com", r.address)
	assert.Equal(t, component.NewSecret(testSecret), r.secret)
	assert.False(t, r.explicit)

	c := validConfig()
	c.Domain = "Example.COM."
	c.Server = "xmpp.example.com:5223"
	r, err = c.resolve()
	require.NoError(t, err)
	assert.Equal(t, "example.com", r.Domain)
	assert.True(t, r.explicit)

	c = validConfig()
	c.Domain = "bücher.example"
	r, err = c.resolve()
	require.NoError(t, err)
	assert.Equal(t, "cb1.xn--bcher-kva.example", r.address)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{
		Name:        "cb1.example.com",
		Server:      "xmpp://host",
		Secret:      component.NewSecret(testSecret),
		SecretEnv:   "X",
		DialTimeout: -1,
		Backoff:     Backoff{Base: 10, Max: 5},
		Tuning:      component.Tuning{PingTimeout: -1, QueueSize: -1},
	}
	err := c.Validate()
	require.Error(t, err)
	got := fieldErrors(t, err)
	// Each problem names its Go field, the link's tuning included.
	for _, f := range []string{"Domain", "Name", "Server", "Secret", "DialTimeout", "Backoff", "PingTimeout", "QueueSize"} {
		assert.Contains(t, got, f)
	}
	assert.Contains(t, err.Error(), `Name: must not contain a domain part: "cb1.example.com"`)
	assert.NotContains(t, err.Error(), testSecret)
}

// TestValidateTLSAndBackoffSettings: TLS settings that no connection could
// use, and a backoff that would shrink, are refused by New, not found at
// each connection attempt (or replaced silently).
func TestValidateTLSAndBackoffSettings(t *testing.T) {
	for name, tc := range map[string]struct {
		set   func(*Config)
		field string
		msg   string
	}{
		"pin":              {func(c *Config) { c.Pins = []string{"not-a-pin"} }, "Pins", "Pins[0]"},
		"second pin":       {func(c *Config) { c.Pins = []string{strings.Repeat("ab", 32), "x"} }, "Pins", "Pins[1]"},
		"sni":              {func(c *Config) { c.SNI = "exa mple..com" }, "SNI", "SNI"},
		"bracketed name":   {func(c *Config) { c.ServerName = "[xmpp.example.com]" }, "ServerName", "ServerName"},
		"bracketed IPv6":   {func(c *Config) { c.ServerName = "[::1]" }, "ServerName", "ServerName"},
		"policy":           {func(c *Config) { c.TLSPolicy = 42 }, "TLSPolicy", "unknown"},
		"multiplier half":  {func(c *Config) { c.Backoff.Multiplier = 0.5 }, "Backoff.Multiplier", "at least 1"},
		"multiplier minus": {func(c *Config) { c.Backoff.Multiplier = -3 }, "Backoff.Multiplier", "at least 1"},
		"multiplier NaN":   {func(c *Config) { c.Backoff.Multiplier = math.NaN() }, "Backoff.Multiplier", "NaN"},
		"multiplier +Inf":  {func(c *Config) { c.Backoff.Multiplier = math.Inf(1) }, "Backoff.Multiplier", "Inf"},
	} {
		t.Run(name, func(t *testing.T) {
			c := validConfig()
			tc.set(&c)
			_, err := New(c)
			require.ErrorIs(t, err, component.ErrConfig)
			got := fieldErrors(t, err)
			require.Len(t, got, 1, "%v", err)
			assert.Contains(t, got[tc.field], tc.msg)
		})
	}
	c := validConfig()
	c.Pins = []string{strings.Repeat("ab", 32)}
	c.SNI = "xmpp.example.com"
	c.TLSPolicy = tlsverify.RequireServerName
	c.Backoff.Multiplier = 1
	require.NoError(t, c.Validate(), "valid settings pass")
	assert.Equal(t, KindConfig, Classify(fmt.Errorf("x: %w", tlsverify.ErrInvalidConfig)))
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(file, []byte(testSecret+"\n"), 0o600))
	c := Config{Name: "cb1", Domain: "example.com", SecretFile: file}
	r, err := c.resolve()
	require.NoError(t, err)
	assert.Equal(t, component.NewSecret(testSecret), r.secret)

	t.Setenv("CBLINK_TEST_SECRET", testSecret)
	c = Config{Name: "cb1", Domain: "example.com", SecretEnv: "CBLINK_TEST_SECRET"}
	r, err = c.resolve()
	require.NoError(t, err)
	assert.Equal(t, component.NewSecret(testSecret), r.secret)

	// A systemd credential: the file of that name in $CREDENTIALS_DIRECTORY.
	creds := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(creds, "cblink-secret"), []byte(testSecret+"\n"), 0o400))
	t.Setenv(CredentialsDirEnv, creds)
	c = Config{Name: "cb1", Domain: "example.com", SecretCredential: "cblink-secret"}
	r, err = c.resolve()
	require.NoError(t, err)
	assert.Equal(t, component.NewSecret(testSecret), r.secret)
	assert.Contains(t, c.String(), "credential:cblink-secret", "the source is shown, not [unset]")
	assert.NotContains(t, c.String(), testSecret)

	for name, tc := range map[string]struct {
		c       Config
		credDir string
		field   string
		msg     string
	}{
		"missing file":       {c: Config{SecretFile: filepath.Join(dir, "nope")}, field: "SecretFile", msg: "no such file"},
		"unset env":          {c: Config{SecretEnv: "CBLINK_TEST_UNSET_VAR"}, field: "SecretEnv", msg: "CBLINK_TEST_UNSET_VAR is empty or unset"},
		"none":               {c: Config{}, field: "Secret", msg: "must be set"},
		"two sources":        {c: Config{SecretEnv: "CBLINK_TEST_SECRET", SecretCredential: "cblink-secret"}, credDir: creds, field: "Secret", msg: "only one"},
		"no credentials dir": {c: Config{SecretCredential: "cblink-secret"}, field: "SecretCredential", msg: "$CREDENTIALS_DIRECTORY is not set"},
		"missing credential": {c: Config{SecretCredential: "other"}, credDir: creds, field: "SecretCredential", msg: "no such file"},
		"credential path":    {c: Config{SecretCredential: "../secret"}, credDir: creds, field: "SecretCredential", msg: "not a credential name"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(CredentialsDirEnv, tc.credDir)
			c := tc.c
			c.Name, c.Domain = "cb1", "example.com"
			err := c.Validate()
			require.Error(t, err)
			got := fieldErrors(t, err)
			require.Len(t, got, 1)
			assert.Contains(t, got, tc.field)
			assert.Contains(t, got[tc.field], tc.msg)
		})
	}
}

func TestConfigRedactsSecret(t *testing.T) {
	c := validConfig()
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "cfg", c)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "cfg", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), b.String()} {
		assert.NotContains(t, s, testSecret)
		assert.Contains(t, s, "cb1")
	}
	assert.Contains(t, b.String(), "[redacted]")
	// Every other path: TestConfigNeverFormatted.
}

// TestConfigDurations: every duration field of Config, zero (its
// documented default), negative (off where that makes sense, else a
// Validate error) and positive (kept), as the link receives it.
func TestConfigDurations(t *testing.T) {
	type field struct {
		name string
		ptr  func(*Config) *time.Duration
		got  func(*resolved) time.Duration
		def  time.Duration // 0: the component's default (0 passed on)
		off  bool          // negative turns the feature off
	}
	link := func(f func(component.Config) time.Duration) func(*resolved) time.Duration {
		return func(r *resolved) time.Duration { return f(r.linkConfig(nil)) }
	}
	fields := []field{
		{"DialTimeout", func(c *Config) *time.Duration { return &c.DialTimeout }, func(r *resolved) time.Duration { return r.DialTimeout }, 10 * time.Second, false},
		// The link's tuning reaches the component unchanged (0 stays 0:
		// component applies its own defaults, the only ones).
		{"HandshakeTimeout", func(c *Config) *time.Duration { return &c.HandshakeTimeout }, link(func(c component.Config) time.Duration { return c.HandshakeTimeout }), 0, false},
		{"KeepaliveIdle", func(c *Config) *time.Duration { return &c.KeepaliveIdle }, link(func(c component.Config) time.Duration { return c.KeepaliveIdle }), 0, true},
		{"PingInterval", func(c *Config) *time.Duration { return &c.PingInterval }, link(func(c component.Config) time.Duration { return c.PingInterval }), 0, true},
		{"PingTimeout", func(c *Config) *time.Duration { return &c.PingTimeout }, link(func(c component.Config) time.Duration { return c.PingTimeout }), 0, false},
		{"ReadTimeout", func(c *Config) *time.Duration { return &c.ReadTimeout }, link(func(c component.Config) time.Duration { return c.ReadTimeout }), 0, true},
		{"WriteTimeout", func(c *Config) *time.Duration { return &c.WriteTimeout }, link(func(c component.Config) time.Duration { return c.WriteTimeout }), 0, false},
		{"CloseTimeout", func(c *Config) *time.Duration { return &c.CloseTimeout }, link(func(c component.Config) time.Duration { return c.CloseTimeout }), 0, false},
		{"FailBackInterval", func(c *Config) *time.Duration { return &c.FailBackInterval }, func(r *resolved) time.Duration { return r.FailBackInterval }, 60 * time.Second, false},
		{"ParallelAfter", func(c *Config) *time.Duration { return &c.ParallelAfter }, func(r *resolved) time.Duration { return r.ParallelAfter }, 2 * time.Second, true},
		{"DrainTimeout", func(c *Config) *time.Duration { return &c.DrainTimeout }, func(r *resolved) time.Duration { return r.DrainTimeout }, 5 * time.Second, false},
		{"Backoff.Base", func(c *Config) *time.Duration { return &c.Backoff.Base }, func(r *resolved) time.Duration { return r.Backoff.Base }, DefaultBackoff().Base, false},
		{"Backoff.Max", func(c *Config) *time.Duration { return &c.Backoff.Max }, func(r *resolved) time.Duration { return r.Backoff.Max }, DefaultBackoff().Max, false},
		{"Backoff.TransientMax", func(c *Config) *time.Duration { return &c.Backoff.TransientMax }, func(r *resolved) time.Duration { return r.Backoff.TransientMax }, DefaultBackoff().TransientMax, false},
		{"Backoff.ResetAfter", func(c *Config) *time.Duration { return &c.Backoff.ResetAfter }, func(r *resolved) time.Duration { return r.Backoff.ResetAfter }, DefaultBackoff().ResetAfter, false},
	}
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			for _, in := range []time.Duration{0, -time.Second, 7 * time.Second} {
				cfg := validConfig()
				*f.ptr(&cfg) = in
				r, err := cfg.resolve()
				switch {
				case in < 0 && !f.off:
					require.ErrorIs(t, err, component.ErrConfig, "negative %s", f.name)
				case in < 0:
					require.NoError(t, err)
					assert.LessOrEqual(t, f.got(r), time.Duration(0), "negative %s turns it off", f.name)
				case in == 0:
					require.NoError(t, err)
					assert.Equal(t, f.def, f.got(r), "the default of %s", f.name)
				default:
					require.NoError(t, err)
					assert.Equal(t, in, f.got(r), "%s kept", f.name)
				}
			}
		})
	}
}

// TestWithDefaults: the effective settings are the defaults the bridge
// runs with (resolve shares them), and set values are kept.
func TestWithDefaults(t *testing.T) {
	d := Config{}.WithDefaults()
	assert.Equal(t, DefaultDialTimeout, d.DialTimeout)
	assert.Equal(t, DefaultFailBackInterval, d.FailBackInterval)
	assert.Equal(t, DefaultParallelAfter, d.ParallelAfter)
	assert.Equal(t, DefaultDrainTimeout, d.DrainTimeout)
	assert.Equal(t, DefaultBackoff(), d.Backoff)
	assert.Equal(t, component.Tuning{}.WithDefaults(), d.Tuning)
	assert.Equal(t, component.DefaultPingInterval, d.PingInterval)

	c := validConfig()
	c.DialTimeout, c.ParallelAfter, c.Backoff.Max, c.PingTimeout = 3*time.Second, -1, 9*time.Second, 4*time.Second
	d = c.WithDefaults()
	assert.Equal(t, 3*time.Second, d.DialTimeout)
	assert.Equal(t, time.Duration(-1), d.ParallelAfter, "negative stays: disabled")
	assert.Equal(t, 9*time.Second, d.Backoff.Max)
	assert.Equal(t, 4*time.Second, d.PingTimeout)
	r, err := c.resolve()
	require.NoError(t, err)
	assert.Equal(t, d.Backoff, r.Backoff)
	assert.Equal(t, d.DialTimeout, r.DialTimeout)
}

// TestLinkSettingsSameRules: the settings a Call Bridge shares with its
// component link (name, domain, address, secret, tuning) get the same
// verdict and the same error type from component.Config.Validate and from
// Config.Validate, problem for problem.
func TestLinkSettingsSameRules(t *testing.T) {
	type link struct {
		name, domain, address, secret string
		tuning                        component.Tuning
	}
	ok := link{name: "cb1", domain: "example.com", secret: testSecret}
	with := func(f func(*link)) link { l := ok; f(&l); return l }
	for _, tc := range []struct {
		name   string
		link   link
		fields []string // the fields at fault (component's names), none when valid
	}{
		{"valid", ok, nil},
		{"normalized", with(func(l *link) { l.name, l.domain = "CB1", " Example.COM. " }), nil},
		{"IDN domain", with(func(l *link) { l.domain = "bücher.example" }), nil},
		{"address instead of name", with(func(l *link) { l.name, l.address = "", "bridge.example.org" }), nil},
		{"name and address", with(func(l *link) { l.address = "bridge.example.org" }), nil},
		{"dotted name", with(func(l *link) { l.name = "cb1.example.com" }), []string{"Name"}},
		{"dotted name, no domain", with(func(l *link) { l.name, l.domain = "cb1.example.com", "" }), []string{"Domain", "Name"}},
		{"no name", with(func(l *link) { l.name = "" }), []string{"Name"}},
		{"name with @", with(func(l *link) { l.name = "cb@1" }), []string{"Name"}},
		{"name with a space", with(func(l *link) { l.name = "cb 1" }), []string{"Name"}},
		{"no domain", with(func(l *link) { l.domain = "" }), []string{"Domain"}},
		{"no domain, address", with(func(l *link) { l.domain, l.address = "", "cb1.example.com" }), []string{"Domain"}},
		{"bad domain", with(func(l *link) { l.domain = "exa mple.com" }), []string{"Domain"}},
		{"address with a localpart", with(func(l *link) { l.address = "a@cb1.example.com" }), []string{"Address"}},
		{"address with a resource", with(func(l *link) { l.address = "cb1.example.com/r" }), []string{"Address"}},
		{"no secret", with(func(l *link) { l.secret = "" }), []string{"Secret"}},
		{"negative timeout", with(func(l *link) { l.tuning.PingTimeout = -1 }), []string{"PingTimeout"}},
		{"negative queue", with(func(l *link) { l.tuning.QueueSize = -1 }), []string{"QueueSize"}},
		{"everything wrong", link{name: "a.b", address: "x@y", tuning: component.Tuning{WriteTimeout: -1}},
			[]string{"Domain", "Name", "Address", "Secret", "WriteTimeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.link
			compErr := component.Config{Name: l.name, Domain: l.domain, Address: l.address,
				Secret: component.NewSecret(l.secret), Tuning: l.tuning}.Validate()
			bridgeErr := Config{Name: l.name, Domain: l.domain, ComponentAddress: l.address,
				Secret: component.NewSecret(l.secret), Tuning: l.tuning}.Validate()
			if tc.fields == nil {
				assert.NoError(t, compErr, "component")
				assert.NoError(t, bridgeErr, "callbridge")
				return
			}
			fieldsOf := func(err error, addressField string) []string {
				t.Helper()
				require.ErrorIs(t, err, component.ErrConfig)
				var ce *component.ConfigError
				require.ErrorAs(t, err, &ce)
				var fields []string
				for _, p := range ce.Problems {
					if p.Field == addressField {
						p.Field = "Address"
					}
					fields = append(fields, p.Field)
				}
				return fields
			}
			assert.ElementsMatch(t, tc.fields, fieldsOf(compErr, "Address"), "component")
			assert.ElementsMatch(t, tc.fields, fieldsOf(bridgeErr, "ComponentAddress"), "callbridge")
			assert.NotContains(t, compErr.Error()+bridgeErr.Error(), testSecret)
		})
	}
}
