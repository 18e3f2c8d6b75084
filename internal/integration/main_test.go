//go:build integration

package integration

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the tests, then fails the run if a server process started
// by them is still alive, a port handed to a server is still bound, or a
// goroutine leaked. It removes the example binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	removeBuilt()
	if left := registry.leftovers(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "integration: servers left behind by the tests:")
		for _, l := range left {
			fmt.Fprintln(os.Stderr, "  "+l)
		}
		code = 1
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: goroutines leaked:", err)
		code = 1
	}
	os.Exit(code)
}
