package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/examples/internal/settings"
)

// notifyHUP returns the channel of SIGHUP (systemctl reload): the signal
// no longer ends the process.
func notifyHUP() chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c
}

// reload is SIGHUP: "reload and retry now". It reads the secret and the
// CA file again (the other settings are flags and variables, fixed for
// the life of the process) and applies them with Bridge.Update, which
// ends a wait in progress (even the long one after a permanent error)
// and reconnects at once; a live link is drained and closed cleanly
// first. Settings that no longer validate (an unreadable secret file)
// are logged and the current ones stay in force.
func reload(b *callbridge.Bridge, s *settings.Settings, log *slog.Logger) {
	cfg := s.Config()
	cfg.Logger = log
	if err := b.Update(cfg); err != nil {
		log.Error("SIGHUP: reload failed, the settings in force are kept", "problems", settings.Problems(err))
		return
	}
	log.Info("SIGHUP: secret and CA file read again; reconnecting now", "secret", s.SecretSource(), "ca", orDefault(cfg.RootCAFile, "system roots"), "state", b.Status().State.String())
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
