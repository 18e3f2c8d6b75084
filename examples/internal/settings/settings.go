// Package settings holds the connection settings shared by the example
// binaries (callbridge and xmppcheck): the same flags, each also readable
// from an environment variable CBLINK_<FLAG> (upper case, dashes to
// underscores; a flag given on the command line wins), turned into a
// callbridge.Config.
//
// The shared secret has no flag, so that it never shows in ps: it comes
// from -secret-file, or else from the CBLINK_SECRET environment variable.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

// SecretEnv is the environment variable holding the shared secret when no
// -secret-file is given.
const SecretEnv = "CBLINK_SECRET"

// Settings are the connection settings of a Call Bridge.
type Settings struct {
	Name         string
	Domain       string
	Server       string
	ServerName   string
	SNI          string
	SecretFile   string
	CAFile       string
	DNS          string // comma-separated host:port list
	Keepalive    time.Duration
	PingInterval time.Duration
	PingTimeout  time.Duration
}

// Register defines the settings' flags on fs.
func (s *Settings) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.Name, "name", "", "the Call Bridge's unique name, without domain (`cb1`)")
	fs.StringVar(&s.Domain, "domain", "", "the XMPP `domain` (example.com)")
	fs.StringVar(&s.Server, "server", "", "the XMPP server's `host[:port]` (port 5223 when omitted); empty: DNS SRV _xmpp-component._tcp.<domain>")
	fs.StringVar(&s.ServerName, "server-name", "", "the `FQDN` the server certificate must name besides the domain (default: the SRV target or the -server host)")
	fs.StringVar(&s.SNI, "sni", "", "the TLS server `name` sent (default: the domain)")
	fs.StringVar(&s.SecretFile, "secret-file", "", "`file` holding the shared secret (default: the "+SecretEnv+" environment variable)")
	fs.StringVar(&s.CAFile, "ca", "", "PEM `bundle` of the CAs trusted to sign the XMPP server's certificate (default: system roots)")
	fs.StringVar(&s.DNS, "dns", "", "comma-separated `host:port` name servers (default: /etc/resolv.conf)")
	fs.DurationVar(&s.Keepalive, "keepalive", 0, "whitespace keepalive after this much silence (default 60s)")
	fs.DurationVar(&s.PingInterval, "ping-interval", 0, "XEP-0199 ping to the server at this interval (default 30s; negative disables)")
	fs.DurationVar(&s.PingTimeout, "ping-timeout", 0, "a ping unanswered this long ends the link (default 10s)")
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
		fmt.Fprintf(stderr, "usage: %s [flags]   (every flag also reads CBLINK_<FLAG>; the secret comes from -secret-file or %s)\n", prog, SecretEnv)
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
// read here: the Config names the file or the environment variable, and
// callbridge reads it.
func (s *Settings) Config() callbridge.Config {
	cfg := callbridge.Config{
		Name:        s.Name,
		Domain:      s.Domain,
		Server:      s.Server,
		ServerName:  s.ServerName,
		SNI:         s.SNI,
		RootCAFile:  s.CAFile,
		NameServers: s.NameServers(),
	}
	cfg.KeepaliveIdle, cfg.PingInterval, cfg.PingTimeout = s.Keepalive, s.PingInterval, s.PingTimeout
	if s.SecretFile != "" {
		cfg.SecretFile = s.SecretFile
	} else {
		cfg.SecretEnv = SecretEnv
	}
	return cfg
}

// Secret reads the shared secret exactly as callbridge does (from
// -secret-file without one trailing newline, else from CBLINK_SECRET), for
// tools that drive package component themselves.
func (s *Settings) Secret() (component.Secret, error) { return s.Config().LoadSecret() }

// fieldFlags maps callbridge.Config field names (as FieldError names them)
// to the flags that set them.
var fieldFlags = map[string]string{
	"Name":             "-name",
	"ComponentAddress": "-name",
	"Domain":           "-domain",
	"Server":           "-server",
	"ServerName":       "-server-name",
	"SecretFile":       "-secret-file",
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
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		var fe *callbridge.FieldError
		if !errors.As(e, &fe) {
			out = append(out, e.Error())
			continue
		}
		switch fe.Field {
		case "SecretEnv", "Secret":
			out = append(out, "secret: set -secret-file, or the "+SecretEnv+" environment variable")
			continue
		}
		name := fieldFlags[fe.Field]
		if name == "" {
			name = fe.Field
		}
		out = append(out, name+": "+fe.Msg)
	}
	return out
}
