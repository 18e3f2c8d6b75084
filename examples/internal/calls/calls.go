// Package calls reads the call directory of -calls FILE, for the example
// binaries: callbridge answers joins from it, xmppcheck refuses a file the
// bridge would refuse (the same verdict, from the same parser).
//
// The file has one call per line, fields separated by blanks:
//
//	# call id   passcode   name (the rest of the line, optional)
//	100         1234       Weekly sync
//	200         -          Open room
//
// A passcode of "-" means none (any passcode, or none, is accepted).
// Blank lines and lines starting with '#' are ignored; a call id may
// appear once. An error never quotes a passcode.
package calls

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// MaxFile bounds the -calls file, in bytes.
const MaxFile = 1 << 20

// Call is one entry of the directory.
type Call struct {
	ID       string
	Passcode string // "" for none
	Name     string // "" when the line has none
}

// Directory is what a -calls file holds: the calls a join may ask for, by
// call id.
type Directory map[string]Call

// Load reads a -calls file; the error names the file and, for a problem
// in it, the line.
func Load(path string) (Directory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFile+1)) // never more than the bound
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFile)
	}
	d, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Parse parses the content of a -calls file.
func Parse(b []byte) (Directory, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not UTF-8")
	}
	d := Directory{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want a call id and a passcode (- for none), then an optional name", n)
		}
		c := Call{ID: f[0], Passcode: f[1]}
		if c.Passcode == "-" {
			c.Passcode = ""
		}
		if len(f) > 2 {
			c.Name = strings.Join(f[2:], " ")
		}
		if _, dup := d[c.ID]; dup {
			return nil, fmt.Errorf("line %d: call %s listed twice", n, c.ID)
		}
		d[c.ID] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d) == 0 {
		return nil, errors.New("no calls")
	}
	return d, nil
}
