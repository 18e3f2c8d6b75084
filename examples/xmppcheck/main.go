// Command xmppcheck is the connection checker to run when a Call Bridge
// reports "the XMPP connection failed". With the same settings as the
// callbridge command (flags or CBLINK_<FLAG> variables, the secret from
// -secret-file or CBLINK_SECRET), it walks the connection steps once for
// every server a Call Bridge could use and prints one line per step with
// OK, FAIL or SKIP, what was found, and for a failure what to fix.
//
// The timeouts are the bridge's (-dial-timeout, -handshake-timeout for TLS
// and the XEP-0114 handshake together; the ping waits as long as the
// bridge's), so that a server the check passes is one the bridge reaches.
//
// Exit status, as callbridge's: 0 when a Call Bridge with these settings
// would connect (at least one server passes every step; with -strict,
// every server), 1 when it would not, 2 for invalid settings, a command
// line that does not parse, or an -html file that cannot be written.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cblink/cblink/examples/internal/buildinfo"
	"github.com/cblink/cblink/examples/internal/logformat"
	"github.com/cblink/cblink/examples/internal/settings"
)

const prog = "xmppcheck"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings.Settings
	s.Register(fs)
	var b bridgeSettings
	ignored := acceptBridgeFlags(fs, &s, &b)
	asJSON := fs.Bool("json", false, "print the steps as a JSON array")
	htmlFile := fs.String("html", "", "also write the steps to this `file` as a self-contained HTML page: a sequence diagram of what was observed")
	strict := fs.Bool("strict", false, "for monitoring: succeed only if every server passes every step (default: if one does, as a Call Bridge needs only one)")
	version := fs.Bool("version", false, "print the version (module version, VCS revision, Go version) and exit")
	if code, ok := settings.ParseCommandLine(prog, fs, args, stderr); !ok {
		return code
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Read().String("cblink-"+prog))
		return 0
	}
	noteIgnored(fs, ignored, stderr)

	// The report's file is created first, so that a bad path is a usage
	// error (exit 2) found before any network traffic, not taken for an
	// XMPP failure.
	var htmlOut *os.File
	if *htmlFile != "" {
		f, err := os.Create(*htmlFile)
		if err != nil {
			fmt.Fprintf(stderr, "%s: -html: %v\n", prog, err)
			return 2
		}
		defer f.Close()
		htmlOut = f
	}

	eff := s.Config().WithDefaults()
	c := &checker{s: &s, b: &b, strict: *strict, dialTimeout: eff.DialTimeout, handshakeTimeout: eff.HandshakeTimeout, pingTimeout: eff.PingTimeout}
	res := c.run(ctx)
	if *asJSON {
		if err := writeJSON(stdout, c.steps); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return 1
		}
	} else {
		writeText(stdout, c.steps)
	}
	if htmlOut != nil {
		err := writeHTML(htmlOut, c.steps, time.Now())
		if cerr := htmlOut.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: -html: %v\n", prog, err)
			return 2
		}
	}
	switch res {
	case invalidSettings:
		return 2
	case wouldConnect:
		return 0
	}
	return 1
}

// bridgeSettings are settings of the running bridge that the bridge
// checks at start, refusing to start (exit 2) when they are wrong: the
// check checks them the same way (with the same code), so that settings
// it passes are settings a bridge starts with.
type bridgeSettings struct {
	logFormat string // -log-format
	calls     string // -calls: the file
}

// acceptBridgeFlags defines on fs every flag of the callbridge command but
// -demo and -stay, so that a bridge's command line or environment
// (CBLINK_<FLAG>, the unit's /etc/cblink/cblink.env) can be used as it
// is. -ping-timeout applies (the check's ping waits as long as the
// bridge's), -log-format and -calls are checked as the bridge checks them
// (into b); the others do not apply to a one-off check: they are parsed
// (a value that does not parse is still an error, exit 2), and their
// names are returned, so that those set can be noted as ignored.
func acceptBridgeFlags(fs *flag.FlagSet, s *settings.Settings, b *bridgeSettings) map[string]bool {
	before := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	s.RegisterBridge(fs)
	const checked = "checked as the bridge checks it at start"
	fs.StringVar(&b.logFormat, "log-format", logformat.Text, checked+": the bridge's log `format`, text or json")
	fs.StringVar(&b.calls, "calls", "", checked+": the bridge's call directory `file` ('CALL-ID PASSCODE [NAME]' lines), read and parsed")
	const why = "ignored by the check: a setting of the running bridge"
	fs.String("status-addr", "", why)
	fs.Duration("shutdown-grace", 0, why)
	fs.Bool("v", false, why)
	fs.String("web", "", why)
	fs.String("web-ws", "", why)
	fs.String("web-domain", "", why)
	ignored := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "ping-timeout", "log-format", "calls":
			return // applies, or checked
		}
		if !before[f.Name] {
			ignored[f.Name] = true
			if f.Usage != why {
				f.Usage = why + "; " + f.Usage
			}
		}
	})
	return ignored
}

// noteIgnored prints one line naming the bridge's settings that were set
// (flag or variable) to a value but do not apply to the check. One set
// empty (CBLINK_CALLS= in cblink.env) is not named: it sets nothing.
func noteIgnored(fs *flag.FlagSet, ignored map[string]bool, stderr io.Writer) {
	var set []string
	fs.Visit(func(f *flag.Flag) { // flags given, and those set from CBLINK_<FLAG>
		if ignored[f.Name] && f.Value.String() != "" {
			set = append(set, "-"+f.Name)
		}
	})
	if len(set) > 0 {
		fmt.Fprintf(stderr, "%s: note: %s ignored: settings of the running bridge, not of a check\n", prog, strings.Join(set, ", "))
	}
}
