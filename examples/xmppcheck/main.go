// Command xmppcheck is the connection checker to run when a Call Bridge
// reports "the XMPP connection failed". With the same settings as the
// callbridge command (flags or CBLINK_<FLAG> variables, the secret from
// -secret-file or CBLINK_SECRET), it walks the connection steps once for
// every server a Call Bridge could use and prints one line per step with
// OK, FAIL or SKIP, what was found, and for a failure what to fix.
//
// Exit status: 0 when a Call Bridge with these settings would connect (at
// least one server passes every step), 1 when it would not, 2 for a command
// line that does not parse.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

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
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each step")
	if code, ok := settings.ParseCommandLine(prog, fs, args, stderr); !ok {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "%s: -timeout must be positive\n", prog)
		return 2
	}

	c := &checker{s: &s, timeout: *timeout}
	ok := c.run(ctx)
	if *asJSON {
		if err := writeJSON(stdout, c.steps); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return 1
		}
	} else {
		writeText(stdout, c.steps)
	}
	if !ok {
		return 1
	}
	return 0
}
