// Package settings holds the connection settings shared by the example
// binaries (callbridge and xmppcheck): the same flags, each also readable
// from an environment variable CBLINK_<FLAG> (upper case, dashes to
// underscores; a flag given on the command line wins), turned into a
// callbridge.Config.
//
// The shared secret has no flag, so that it never shows in ps: it comes
// from -secret-file, else from the systemd credential cblink-secret
// (LoadCredential=), else from the CBLINK_SECRET environment variable. An
// environment variable is visible to the same user and root
// (/proc/PID/environ, ps eww): prefer a file or a credential.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

// Where the shared secret comes from, in this order: -secret-file; the
// systemd credential -secret-credential, which must then exist; the
// credential DefaultCredential when systemd passed it
// ($CREDENTIALS_DIRECTORY/cblink-secret exists, from LoadCredential= in
// the unit); else the environment variable SecretEnv.
const (
	SecretEnv         = "CBLINK_SECRET"
	DefaultCredential = "cblink-secret"
	CredentialsDirEnv = callbridge.CredentialsDirEnv
)

// Settings are the connection settings of a Call Bridge (Register) and
// the tuning of a long-running one (RegisterBridge).
type Settings struct {
	Name       string
	Domain     string
	Server     string
	ServerName string
	SNI        string
	SecretFile string
	// SecretCredential names the systemd credential holding the secret
	// when -secret-file is not given.
	SecretCredential string
	CAFile           string
	DNS              string // comma-separated host:port list
	DialTimeout      time.Duration
	HandshakeTimeout time.Duration

	// Set by RegisterBridge only.
	Keepalive        time.Duration
	PingInterval     time.Duration
	PingTimeout      time.Duration
	Workers          int
	QueueSize        int
	BackoffBase      time.Duration
	BackoffMax       time.Duration
	FailBack         bool
	FailBackInterval time.Duration
	StopOnPermanent  bool
}

// Register defines the flags of the connection settings on fs: who the
// Call Bridge is, where the server is, what to trust, and the timeouts of
// one connection attempt. Both binaries have them.
func (s *Settings) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.Name, "name", "", "the Call Bridge's unique name, without domain (`cb1`)")
	fs.StringVar(&s.Domain, "domain", "", "the XMPP `domain` (example.com)")
	fs.StringVar(&s.Server, "server", "", "the XMPP server's `host[:port]` (port 5223 when omitted); empty: DNS SRV _xmpp-component._tcp.<domain>")
	fs.StringVar(&s.ServerName, "server-name", "", "the `FQDN` the server certificate must name besides the domain (default: the SRV target or the -server host)")
	fs.StringVar(&s.SNI, "sni", "", "the TLS server `name` sent (default: the domain)")
	fs.StringVar(&s.SecretFile, "secret-file", "", "`file` holding the shared secret (default: the systemd credential -secret-credential, else the "+SecretEnv+" environment variable)")
	fs.StringVar(&s.SecretCredential, "secret-credential", "", "`name` of the systemd credential holding the secret, in $"+CredentialsDirEnv+" (LoadCredential=); when given it must be there; default: "+DefaultCredential+" when systemd passed it")
	fs.StringVar(&s.CAFile, "ca", "", "PEM `bundle` of the CAs trusted to sign the XMPP server's certificate (default: system roots)")
	fs.StringVar(&s.DNS, "dns", "", "comma-separated `host:port` name servers (default: /etc/resolv.conf)")
	fs.DurationVar(&s.DialTimeout, "dial-timeout", 0, "bound on each TCP connect (default "+callbridge.DefaultDialTimeout.String()+")")
	fs.DurationVar(&s.HandshakeTimeout, "handshake-timeout", 0, "bound on the TLS and XEP-0114 handshakes together (default "+component.DefaultHandshakeTimeout.String()+")")
}

// RegisterBridge defines the flags of a long-running Call Bridge on fs:
// liveness, the handlers' pool, reconnect pacing, fail-back and what a
// permanent error does.
func (s *Settings) RegisterBridge(fs *flag.FlagSet) {
	fs.DurationVar(&s.Keepalive, "keepalive", 0, "whitespace keepalive after this much silence (default "+component.DefaultKeepaliveIdle.String()+"; negative disables)")
	fs.DurationVar(&s.PingInterval, "ping-interval", 0, "XEP-0199 ping to the server at this interval (default "+component.DefaultPingInterval.String()+"; negative disables)")
	fs.DurationVar(&s.PingTimeout, "ping-timeout", 0, "a ping unanswered this long ends the link (default "+component.DefaultPingTimeout.String()+")")
	fs.IntVar(&s.Workers, "workers", 0, "join and IQ handlers running at once (default "+fmt.Sprint(component.DefaultWorkers)+")")
	fs.IntVar(&s.QueueSize, "queue-size", 0, "requests waiting for a handler before new ones are refused resource-constraint (default "+fmt.Sprint(component.DefaultQueueSize)+")")
	fs.DurationVar(&s.BackoffBase, "backoff-base", 0, "first wait before reconnecting after a failed attempt (default "+callbridge.DefaultBackoff().Base.String()+")")
	fs.DurationVar(&s.BackoffMax, "backoff-max", 0, "longest wait between attempts, and the interval while the server refuses the bridge for a reason an operator must fix (default "+callbridge.DefaultBackoff().Max.String()+")")
	fs.BoolVar(&s.FailBack, "fail-back", true, "return to the preferred server (lowest SRV priority) when it is back, closing the link to a backup cleanly")
	fs.DurationVar(&s.FailBackInterval, "fail-back-interval", 0, "with -fail-back: how often to probe the preferred servers while on a backup (default "+callbridge.DefaultFailBackInterval.String()+")")
	fs.BoolVar(&s.StopOnPermanent, "stop-on-permanent", false, "exit 1 on an error an operator must fix (wrong secret, unknown name, certificate, no service, a name another Call Bridge holds) instead of retrying every -backoff-max")
}

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return "CBLINK_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from its CBLINK_<FLAG> environment variable, when that is set.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// ParseCommandLine is Parse for a binary: it sets fs's usage text, parses,
// and refuses stray arguments, printing any problem to stderr. When it
// returns ok false, the binary exits with code (0 after -help, 2 else).
func ParseCommandLine(prog string, fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [flags]   (every flag also reads CBLINK_<FLAG>; the secret comes from -secret-file, the systemd credential %s or %s)\n", prog, DefaultCredential, SecretEnv)
		fs.PrintDefaults()
	}
	if err := Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments: %s\n", prog, strings.Join(fs.Args(), " "))
		return 2, false
	}
	return 0, true
}

// NameServers splits the -dns list.
func (s *Settings) NameServers() []string {
	var out []string
	for _, ns := range strings.Split(s.DNS, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// Config returns the callbridge.Config of the settings. The secret is not
// read here: the Config names its source (the file, the systemd
// credential or the environment variable), and callbridge reads it.
func (s *Settings) Config() callbridge.Config {
	cfg := callbridge.Config{
		Name:                 s.Name,
		Domain:               s.Domain,
		Server:               s.Server,
		ServerName:           s.ServerName,
		SNI:                  s.SNI,
		RootCAFile:           s.CAFile,
		NameServers:          s.NameServers(),
		DialTimeout:          s.DialTimeout,
		Backoff:              callbridge.Backoff{Base: s.BackoffBase, Max: s.BackoffMax},
		FailBack:             s.FailBack,
		FailBackInterval:     s.FailBackInterval,
		StopOnPermanentError: s.StopOnPermanent,
	}
	cfg.HandshakeTimeout = s.HandshakeTimeout
	cfg.KeepaliveIdle, cfg.PingInterval, cfg.PingTimeout = s.Keepalive, s.PingInterval, s.PingTimeout
	cfg.Workers, cfg.QueueSize = s.Workers, s.QueueSize
	switch {
	case s.SecretFile != "":
		cfg.SecretFile = s.SecretFile
	case s.SecretCredential != "":
		// Named: it must be there; a missing one is an error naming it.
		cfg.SecretCredential = s.SecretCredential
	case defaultCredentialPresent():
		cfg.SecretCredential = DefaultCredential
	default:
		cfg.SecretEnv = SecretEnv
	}
	return cfg
}

// defaultCredentialPresent reports whether systemd passed the credential
// DefaultCredential ($CREDENTIALS_DIRECTORY/cblink-secret exists).
func defaultCredentialPresent() bool {
	dir := os.Getenv(CredentialsDirEnv)
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, DefaultCredential))
	return err == nil
}

// SecretSource says where the secret is read from, for logs and reports
// (never the secret itself).
func (s *Settings) SecretSource() string {
	cfg := s.Config()
	switch {
	case cfg.SecretFile != "":
		return "file " + cfg.SecretFile
	case cfg.SecretCredential != "":
		return "systemd credential " + cfg.SecretCredential
	default:
		return "environment variable " + cfg.SecretEnv
	}
}

// Secret reads the shared secret exactly as callbridge does (from
// -secret-file, the systemd credential or CBLINK_SECRET, as Config
// chooses), for tools that drive package component themselves.
func (s *Settings) Secret() (component.Secret, error) { return s.Config().LoadSecret() }

// fieldFlags maps callbridge.Config field names (as component.ConfigProblem
// names them)
// to the flags that set them.
var fieldFlags = map[string]string{
	"Name":             "-name",
	"ComponentAddress": "-name",
	"Domain":           "-domain",
	"Server":           "-server",
	"ServerName":       "-server-name",
	"SecretFile":       "-secret-file",
	"SecretCredential": "-secret-credential",
	"DialTimeout":      "-dial-timeout",
	"HandshakeTimeout": "-handshake-timeout",
	"Workers":          "-workers",
	"QueueSize":        "-queue-size",
	"Backoff":          "-backoff-base and -backoff-max",
	"Backoff.Base":     "-backoff-base",
	"Backoff.Max":      "-backoff-max",
	"FailBackInterval": "-fail-back-interval",
	"RootCAFile":       "-ca",
	"NameServers":      "-dns",
	"KeepaliveIdle":    "-keepalive",
	"PingInterval":     "-ping-interval",
	"PingTimeout":      "-ping-timeout",
}

// Problems turns the error of callbridge.Config.Validate into one line per
// problem, each naming the flag to fix.
func Problems(err error) []string {
	if err == nil {
		return nil
	}
	var ce *component.ConfigError
	if !errors.As(err, &ce) {
		return []string{err.Error()}
	}
	out := make([]string, 0, len(ce.Problems))
	for _, p := range ce.Problems {
		switch p.Field {
		case "SecretEnv", "Secret":
			out = append(out, "secret: set -secret-file, the systemd credential "+DefaultCredential+" (LoadCredential=), or the "+SecretEnv+" environment variable")
			continue
		}
		name := fieldFlags[p.Field]
		if name == "" {
			name = p.Field
		}
		out = append(out, name+": "+p.Msg)
	}
	return out
}
