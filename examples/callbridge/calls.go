package main

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/examples/internal/calls"
)

// callDirectory is what -calls FILE holds: the calls a join may ask for
// (the format: package calls).
type callDirectory = calls.Directory

// loadCalls reads a -calls file; the error names the file and line.
func loadCalls(path string) (callDirectory, error) { return calls.Load(path) }

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
			if c.Passcode != "" && subtle.ConstantTimeCompare([]byte(req.Passcode), []byte(c.Passcode)) != 1 {
				log.Info("join request refused: wrong passcode", attrs...)
				return nil, component.ErrJoinForbidden
			}
			attrs = append(attrs, "call_name", c.Name)
		}
		id := fmt.Sprintf("%s-%d", name, sessions.Add(1))
		log.Info("join request accepted", append(attrs, "session", id)...)
		return &component.JoinResult{Session: id}, nil
	}
}
