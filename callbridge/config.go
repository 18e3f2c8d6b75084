package callbridge

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/internal/linkid"
	"github.com/cblink/cblink/tlsverify"
)

// Defaults of Config's durations.
const (
	DefaultDialTimeout      = 10 * time.Second
	DefaultParallelAfter    = 2 * time.Second
	DefaultDrainTimeout     = 5 * time.Second
	DefaultFailBackInterval = 60 * time.Second
)

// CredentialsDirEnv is the environment variable in which systemd names the
// directory of a service's credentials (Config.SecretCredential).
const CredentialsDirEnv = "CREDENTIALS_DIRECTORY"

// Config holds a Call Bridge's XMPP settings. The first four fields are the
// settings of CMS's "XMPP Server Settings" page and of its API object
// /configuration/xmpp; everything else has a working default, so a Config
// with those four set is complete. Config is copied by New and Update;
// changing it afterwards has no effect.
type Config struct {
	// Name is the Call Bridge's unique name, without a domain part ("cb1"):
	// one DNS label, so a dotted name is an error. The component address
	// is Name + "." + Domain unless ComponentAddress is set; then Name may
	// be empty. The rules of Name, Domain, ComponentAddress, the secret and
	// the Tuning are component.Config's (Name, Domain, Address...).
	Name string
	// Domain is the XMPP domain ("example.com"); it must be set.
	Domain string
	// Server is the XMPP server's address, "host[:port]" (port 5223 when
	// omitted). Empty means: find the servers with a DNS SRV lookup of
	// _xmpp-component._tcp.<Domain>.
	Server string
	// Secret is the shared secret set on the XMPP server for Name. It is
	// never logged, never part of an error, and redacted in every
	// formatting of the Config (see component.Secret). Exactly one of
	// Secret, SecretFile, SecretCredential and SecretEnv must be set.
	Secret component.Secret
	// SecretFile names a file holding the secret (one trailing newline is
	// ignored). It is read by New and Update.
	SecretFile string
	// SecretCredential names a systemd credential holding the secret
	// (LoadCredential=NAME:/path or SetCredentialEncrypted= in the unit):
	// the file NAME in the directory $CREDENTIALS_DIRECTORY, which systemd
	// makes readable by the service alone. It is read by New and Update.
	SecretCredential string
	// SecretEnv names an environment variable holding the secret. It is
	// read by New and Update. The environment of a process can be read by
	// its user and root (/proc/PID/environ, ps eww): prefer SecretFile or
	// SecretCredential outside development.
	SecretEnv string

	// RootCAs are the CAs trusted to sign the server's certificate; nil
	// means the system pool, or RootCAFile when that is set.
	RootCAs *x509.CertPool
	// RootCAFile names a PEM bundle of trusted CAs (an internal CA).
	RootCAFile string
	// ServerName overrides the FQDN the certificate must name besides the
	// domain. By default it is the SRV target, or the host of Server. Set
	// it when Server is "localhost:5223" on a combined server.
	ServerName string
	// SNI overrides the TLS server name sent; the default is Domain.
	SNI string
	// TLSPolicy selects which names the certificate must carry; the zero
	// value requires both the domain and the server FQDN.
	TLSPolicy tlsverify.Policy
	// Pins are SHA-256 SPKI pins trusted besides RootCAs (see tlsverify).
	Pins []string
	// InsecureSkipAllVerification turns certificate verification off. For
	// lab use only: anyone on the path can then impersonate the server.
	InsecureSkipAllVerification bool

	// ComponentAddress overrides the component's address (the default is
	// Name + "." + Domain); it is component.Config's Address.
	ComponentAddress string

	// NameServers are the DNS servers ("host:port") used for SRV and
	// address lookups; nil means those of /etc/resolv.conf.
	NameServers []string
	// Resolver finds the servers; nil means a discovery.Resolver asking
	// NameServers (then ignored when Resolver is set). A resolver with its
	// own cache, policy or test answers plugs in here.
	Resolver Resolver
	// Dialer opens the TCP connections; nil means a net.Dialer with TCP
	// keepalive. Set it to bind a source address, go through a proxy, or
	// test.
	Dialer Dialer
	// FallbackToDomain makes a domain without any SRV record be tried as
	// <Domain>:5223.
	FallbackToDomain bool

	// DialTimeout bounds the TCP connection to one endpoint (all its
	// addresses, raced); default DefaultDialTimeout.
	DialTimeout time.Duration
	// Tuning holds the links' timeouts, limits and handler pool (ping
	// interval and timeout, keepalive, read, write and close timeouts,
	// stanza and queue limits, workers...), passed to every link
	// unchanged; see component.Tuning for each field and its default.
	// HandshakeTimeout bounds TLS and the component handshake together.
	component.Tuning

	// ParallelAfter is how long a connection attempt may go without
	// progress (TCP connected, TLS done, authenticated) before the next
	// endpoint is tried beside it, the first to authenticate winning: a
	// server whose kernel accepts but whose process is frozen, or a
	// clustered server waiting for a frozen node, then costs this long
	// rather than the full timeouts. Default 2s; negative disables it
	// (endpoints are then tried one after the other).
	ParallelAfter time.Duration
	// DrainTimeout bounds how long a link being replaced (by Update, or by
	// fail-back) may take to finish the requests it has queued or running
	// before the rest is answered with service-unavailable and it closes.
	// Default 5s. Shutdown's drain is bounded by its ctx instead.
	DrainTimeout time.Duration

	// Backoff sets the waits between connection cycles (see its table of
	// what each failure waits).
	Backoff Backoff
	// StopOnPermanentError makes Run return a permanent error (wrong secret,
	// unknown name) instead of retrying at Backoff.Max as CMS does.
	StopOnPermanentError bool
	// FailBack makes a bridge connected to a lower-priority SRV target probe
	// the higher-priority ones every FailBackInterval (default
	// DefaultFailBackInterval) and move
	// back to the first that accepts it, without dropping the working link
	// first.
	FailBack         bool
	FailBackInterval time.Duration

	// Logger receives one line per event; nil discards. INFO: the link up
	// ("xmpp link connected", with the outage's length after one) and the
	// stop; WARN: a link lost, a transient failure of an attempt or a
	// lookup ("xmpp server failed", "xmpp lookup failed"), a backup in use
	// while the preferred server fails (at most every ten minutes); ERROR:
	// a failure only an operator can fix (ErrorKind.Permanent). The
	// connection steps, the waits and the links' own lines are DEBUG.
	Logger *slog.Logger
}

// Resolver finds the XMPP servers of a Request: discovery.Resolver does
// (an explicit address, or SRV then A/AAAA, RFC 2782 order).
type Resolver interface {
	Lookup(ctx context.Context, req discovery.Request) (*discovery.Result, error)
}

// Dialer opens TCP connections; net.Dialer does.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// defaultDialer is the Dialer of a Config without one.
var defaultDialer = &net.Dialer{KeepAlive: 30 * time.Second}

func (c Config) dialer() Dialer {
	if c.Dialer != nil {
		return c.Dialer
	}
	return defaultDialer
}

// configError is the *component.ConfigError of one problem with field.
func configError(field, format string, args ...any) error {
	return &component.ConfigError{Problems: []component.ConfigProblem{{Field: field, Msg: fmt.Sprintf(format, args...)}}}
}

// String describes the config with the secret redacted.
func (c Config) String() string {
	return fmt.Sprintf("callbridge.Config{Name:%q Domain:%q Server:%q Secret:%s}", c.Name, c.Domain, c.Server, c.secretSource())
}

// GoString keeps %#v from printing the secret.
func (c Config) GoString() string { return c.String() }

// LogValue logs the settings that matter to an operator, never the secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("domain", c.Domain),
		slog.String("server", c.Server),
		slog.String("secret", c.secretSource()),
	)
}

func (c Config) secretSource() string {
	switch {
	case !c.Secret.IsZero():
		return "[redacted]"
	case c.SecretFile != "":
		return "file:" + c.SecretFile
	case c.SecretCredential != "":
		return "credential:" + c.SecretCredential
	case c.SecretEnv != "":
		return "env:" + c.SecretEnv
	}
	return "[unset]"
}

// LoadSecret returns the shared secret as New and Update read it: Secret,
// or the content of SecretFile or of the systemd credential
// SecretCredential (one trailing newline ignored), or the environment
// variable SecretEnv; exactly one must be set. A problem is a
// *component.ConfigError naming the field.
func (c Config) LoadSecret() (component.Secret, error) {
	n := 0
	for _, set := range []bool{!c.Secret.IsZero(), c.SecretFile != "", c.SecretCredential != "", c.SecretEnv != ""} {
		if set {
			n++
		}
	}
	fail := func(field, format string, args ...any) (component.Secret, error) {
		return component.Secret{}, configError(field, format, args...)
	}
	switch {
	case n == 0:
		return fail("Secret", "must be set (Secret, SecretFile, SecretCredential or SecretEnv)")
	case n > 1:
		return fail("Secret", "set only one of Secret, SecretFile, SecretCredential and SecretEnv")
	case !c.Secret.IsZero():
		return c.Secret, nil
	case c.SecretFile != "":
		return readSecretFile("SecretFile", c.SecretFile, c.SecretFile)
	case c.SecretCredential != "":
		dir := os.Getenv(CredentialsDirEnv)
		if dir == "" {
			return fail("SecretCredential", "$%s is not set: systemd sets it for a unit with LoadCredential=%s:<file>", CredentialsDirEnv, c.SecretCredential)
		}
		if strings.ContainsAny(c.SecretCredential, "/\\") || c.SecretCredential == "." || c.SecretCredential == ".." {
			return fail("SecretCredential", "%q is not a credential name", c.SecretCredential)
		}
		return readSecretFile("SecretCredential", filepath.Join(dir, c.SecretCredential), "systemd credential "+c.SecretCredential)
	default:
		if v := os.Getenv(c.SecretEnv); v != "" {
			return component.NewSecret(v), nil
		}
		return fail("SecretEnv", "environment variable %s is empty or unset", c.SecretEnv)
	}
}

// WithDefaults returns c with every zero duration, the Backoff's zero
// fields and the Tuning's zero fields set to their defaults: the settings a
// Bridge made from c runs with. A negative ParallelAfter stays negative
// (disabled). The secret is not read, and Validate is not run.
func (c Config) WithDefaults() Config {
	c = c.withOwnDefaults()
	c.Tuning = c.Tuning.WithDefaults()
	return c
}

// withOwnDefaults is WithDefaults but for the Tuning.
func (c Config) withOwnDefaults() Config {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.DialTimeout, DefaultDialTimeout}, {&c.ParallelAfter, DefaultParallelAfter},
		{&c.DrainTimeout, DefaultDrainTimeout}, {&c.FailBackInterval, DefaultFailBackInterval},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	c.Backoff = c.Backoff.withDefaults()
	return c
}

// readSecretFile reads a secret from path (one trailing newline ignored);
// a problem is a *component.ConfigError on field that names the file as
// what.
func readSecretFile(field, path, what string) (component.Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return component.Secret{}, configError(field, "%v", err)
	}
	if v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"); v != "" {
		return component.NewSecret(v), nil
	}
	return component.Secret{}, configError(field, "%s is empty", what)
}

// Validate returns every problem with the config at once, as a
// *component.ConfigError (matching component.ErrConfig) whose problems
// name their fields, or nil. Name, Domain, ComponentAddress, the secret
// and the Tuning follow the rules of component.Config (Validate gives the
// same verdict for the same settings). It reads SecretFile,
// SecretCredential or SecretEnv to check that they hold a secret.
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

// resolved is a validated config with defaults applied and the secret read.
type resolved struct {
	Config
	secret   component.Secret
	address  string // component address
	roots    *x509.CertPool
	explicit bool
}

func (c Config) resolve() (*resolved, error) {
	var e component.ConfigError
	bad := func(field, format string, args ...any) {
		e.Problems = append(e.Problems, component.ConfigProblem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	// The link's Tuning goes to component unchanged: component applies its
	// defaults, the only ones.
	r := &resolved{Config: c.withOwnDefaults()}

	// The link's identity: component's rules (internal/linkid), the only
	// ones.
	id, probs := linkid.Resolve(c.Name, c.Domain, c.ComponentAddress, "ComponentAddress")
	for _, p := range probs {
		bad(p.Field, "%s", p.Msg)
	}
	r.Name, r.Domain, r.address = id.Name, id.Domain, id.Addr

	if c.Server != "" {
		if _, err := discovery.ParseAddress(c.Server); err != nil {
			bad("Server", "%v", err)
		}
		r.explicit = true
	}

	var ce *component.ConfigError
	secret, err := c.LoadSecret()
	if errors.As(err, &ce) {
		e.Problems = append(e.Problems, ce.Problems...)
	}
	r.secret = secret

	switch {
	case c.RootCAs != nil && c.RootCAFile != "":
		bad("RootCAs", "set RootCAs or RootCAFile, not both")
	case c.RootCAFile != "":
		pool, err := tlsverify.LoadRoots(c.RootCAFile)
		if err != nil {
			bad("RootCAFile", "%v", err)
		}
		r.roots = pool
	default:
		r.roots = c.RootCAs
	}
	if c.ServerName != "" {
		if _, err := linkid.NormalizeDomain(strings.Trim(c.ServerName, "[]")); err != nil && !isIPLiteral(c.ServerName) {
			bad("ServerName", "%q is not a valid name: %v", c.ServerName, err)
		}
	}
	if len(probs) == 0 {
		// The TLS settings, as each connection attempt will use them (the
		// server name is each server's, unknown yet: the domain stands in
		// for it; an empty pool keeps the system's from loading here).
		base := tlsverify.Config{Domain: r.Domain, ServerName: r.Domain, Roots: x509.NewCertPool()}
		policy, pins, server := base, base, base
		policy.Policy, pins.Pins = c.TLSPolicy, c.Pins
		if c.ServerName != "" {
			server.ServerName = c.ServerName
		}
		for _, f := range []struct {
			field string
			v     tlsverify.Config
			sni   string
		}{{"TLSPolicy", policy, ""}, {"Pins", pins, ""}, {"SNI", base, c.SNI}, {"ServerName", server, ""}} {
			if _, err := f.v.TLSConfig(f.sni); err != nil {
				bad(f.field, "%s", strings.TrimPrefix(err.Error(), tlsverify.ErrInvalidConfig.Error()+": "))
			}
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialTimeout", c.DialTimeout}, {"FailBackInterval", c.FailBackInterval},
		{"Backoff.Base", c.Backoff.Base}, {"Backoff.Max", c.Backoff.Max},
		{"Backoff.ResetAfter", c.Backoff.ResetAfter}, {"Backoff.TransientMax", c.Backoff.TransientMax},
		{"DrainTimeout", c.DrainTimeout},
	} {
		if d.v < 0 {
			bad(d.name, "must not be negative: %v", d.v)
		}
	}
	if errors.As(c.Tuning.Validate(), &ce) {
		e.Problems = append(e.Problems, ce.Problems...)
	}
	if m := c.Backoff.Multiplier; m != 0 && !(m >= 1 && !math.IsInf(m, 1)) { // NaN too
		bad("Backoff.Multiplier", "must be 0 (the default, 2) or a finite number of at least 1: %v", m)
	}
	if c.Backoff.Max > 0 && c.Backoff.Base > c.Backoff.Max {
		bad("Backoff", "base %v is larger than max %v", c.Backoff.Base, c.Backoff.Max)
	}
	for _, ns := range c.NameServers {
		if _, err := discovery.ParseAddress(ns); err != nil {
			bad("NameServers", "%v", err)
		}
	}
	if len(e.Problems) > 0 {
		return nil, &e
	}

	if r.ParallelAfter < 0 {
		r.ParallelAfter = 0
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

func isIPLiteral(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}
