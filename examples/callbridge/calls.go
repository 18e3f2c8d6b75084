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

// joinHandler answers join requests: without a directory it accepts every
// one; with one, an unknown call is refused item-not-found and a wrong
// passcode forbidden. A request without a call id never reaches it (the
// component answers bad-request). The passcode is never logged.
func joinHandler(name string, d calls.Directory, log *slog.Logger) component.JoinHandler {
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
