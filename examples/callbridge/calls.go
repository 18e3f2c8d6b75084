package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/cblink/cblink/component"
)

// maxCallsFile bounds the -calls file.
const maxCallsFile = 1 << 20

// call is one entry of the -calls directory.
type call struct {
	id, passcode, name string
}

// callDirectory is what -calls FILE holds: the calls a join may ask for.
//
// The file has one call per line, fields separated by blanks:
//
//	# call id   passcode   name (the rest of the line, optional)
//	100         1234       Weekly sync
//	200         -          Open room
//
// A passcode of "-" means none (any passcode, or none, is accepted).
// Blank lines and lines starting with '#' are ignored; a call id may
// appear once.
type callDirectory map[string]call

// loadCalls reads a -calls file; the error names the file and line.
func loadCalls(path string) (callDirectory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCallsFile+1)) // never more than the bound
	if err != nil {
		return nil, err
	}
	if len(b) > maxCallsFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxCallsFile)
	}
	d, err := parseCalls(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

func parseCalls(b []byte) (callDirectory, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("not UTF-8")
	}
	d := callDirectory{}
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
		c := call{id: f[0], passcode: f[1]}
		if c.passcode == "-" {
			c.passcode = ""
		}
		if len(f) > 2 {
			c.name = strings.Join(f[2:], " ")
		}
		if _, dup := d[c.id]; dup {
			return nil, fmt.Errorf("line %d: call %s listed twice", n, c.id)
		}
		d[c.id] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d) == 0 {
		return nil, fmt.Errorf("no calls")
	}
	return d, nil
}

// joinHandler answers join requests: without a directory it accepts every
// one; with one, an unknown call is refused item-not-found and a wrong
// passcode forbidden. A request without a call id never reaches it (the
// component answers bad-request). The passcode is never logged.
func joinHandler(name string, d callDirectory, log *slog.Logger) component.JoinHandler {
	var sessions atomic.Uint64
	return func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		attrs := []any{"caller", req.From.String(), "call", req.Call, "display_name", req.DisplayName}
		if d != nil {
			c, ok := d[req.Call]
			if !ok {
				log.Info("join request refused: unknown call", attrs...)
				return nil, component.ErrJoinUnknownCall
			}
			if c.passcode != "" && subtle.ConstantTimeCompare([]byte(req.Passcode), []byte(c.passcode)) != 1 {
				log.Info("join request refused: wrong passcode", attrs...)
				return nil, component.ErrJoinForbidden
			}
			attrs = append(attrs, "call_name", c.name)
		}
		id := fmt.Sprintf("%s-%d", name, sessions.Add(1))
		log.Info("join request accepted", append(attrs, "session", id)...)
		return &component.JoinResult{Session: id}, nil
	}
}
