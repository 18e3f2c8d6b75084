// Command minimal is the smallest useful Call Bridge: the four settings of
// CMS's XMPP page, a join handler, and Run until interrupted.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
)

func main() {
	b, err := callbridge.New(callbridge.Config{
		Name:      "cb1",           // the Call Bridge's unique name
		Domain:    "example.com",   // the XMPP domain
		Server:    "",              // empty: DNS SRV _xmpp-component._tcp.example.com
		SecretEnv: "CBLINK_SECRET", // the shared secret, never on the command line
		Logger:    slog.Default(),  // one line per state change
	})
	if err != nil {
		slog.Error("invalid settings", "err", err)
		os.Exit(2)
	}
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		slog.Info("join request", "caller", req.From.String(), "call", req.Call, "name", req.DisplayName)
		return &component.JoinResult{Session: "s-" + req.ID}, nil // or component.ErrJoinForbidden
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.Run(ctx); !errors.Is(err, context.Canceled) {
		slog.Error("stopped", "err", err)
		os.Exit(1)
	}
}
