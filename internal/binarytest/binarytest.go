// Package binarytest lets the example packages test their own binaries;
// only their _test files import it, so the shipped binaries never link
// testing or goleak.
package binarytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// VersionLine returns what "-version" must print for the binary bin named
// prog, computed apart from the binary: from "go version -m bin", the
// build information the toolchain embedded (module version, VCS revision
// with "-modified" for a dirty tree, Go version; "unknown" when absent).
func VersionLine(t testing.TB, bin, prog string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	version, revision, goVersion, modified := "unknown", "unknown", "unknown", false
	for i, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case i == 0 && len(f) == 2: // "bin: go1.26.0"
			goVersion = f[1]
		case len(f) >= 3 && f[0] == "mod":
			version = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			revision = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) == 2 && f[0] == "build" && f[1] == "vcs.modified=true":
			modified = true
		}
	}
	if modified && revision != "unknown" {
		revision += "-modified"
	}
	return fmt.Sprintf("%s version %s, revision %s, built with %s", prog, version, revision, goVersion)
}
