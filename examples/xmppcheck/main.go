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
	"time"

	"github.com/cblink/cblink/examples/internal/buildinfo"
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
	c := &checker{s: &s, strict: *strict, dialTimeout: eff.DialTimeout, handshakeTimeout: eff.HandshakeTimeout, pingTimeout: eff.PingTimeout}
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
