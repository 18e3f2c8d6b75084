package main

import (
	"log/slog"
	"os"
	"os/signal"
	"strings"
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

// reload is SIGHUP: "reload and retry now". It reads the secret file
// and the CA file again (the other settings are flags and variables,
// fixed for the life of the process) and applies them with
// Bridge.Update, which ends a wait in progress (even the long one after a
// permanent error) and reconnects at once; a live link is drained and
// closed cleanly first. Settings that no longer validate (an unreadable
// secret file) are logged and the current ones stay in force.
//
// A secret from the systemd credential or from CBLINK_SECRET cannot
// change in a running process (systemd hands the credential over at
// start; the environment is fixed): the log line does not claim it was
// read again, and a WARN says a new secret needs a restart.
func reload(b *callbridge.Bridge, s *settings.Settings, log *slog.Logger) {
	cfg := s.Config()
	cfg.Logger = log
	if err := b.Update(cfg); err != nil {
		log.Error("SIGHUP: reload failed, the settings in force are kept", "problems", settings.Problems(err))
		return
	}
	var reread []string
	if cfg.SecretFile != "" {
		reread = append(reread, "secret file")
	}
	if cfg.RootCAFile != "" {
		reread = append(reread, "CA file")
	}
	msg := "SIGHUP: no file to read again (the secret and the trusted CAs are fixed at start); reconnecting now"
	if len(reread) > 0 {
		msg = "SIGHUP: " + strings.Join(reread, " and ") + " read again; reconnecting now"
	}
	log.Info(msg, "secret", s.SecretSource(), "ca", orDefault(cfg.RootCAFile, "system roots"), "state", b.Status().State.String())
	if cfg.SecretFile == "" {
		log.Warn("SIGHUP: the secret was not read again: it cannot change while the process runs; a new secret needs a restart (systemctl restart cblink)",
			"secret", s.SecretSource())
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
