// Package binarytest lets the example packages test their own binaries;
// only their _test files import it, so the shipped binaries never link
// testing or goleak.
package binarytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// TestMainWithBinary is the TestMain of a package that tests its own
// binary: it builds the package in the current directory into a temporary
// file, stores its path in *bin, runs the tests, removes the file and
// fails the run on leaked goroutines. It returns the exit code.
func TestMainWithBinary(m *testing.M, name string, bin *string) int {
	dir, err := os.MkdirTemp("", name+"-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", *bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}
