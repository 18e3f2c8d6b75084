package component

import (
	"fmt"
	"io"
	"log/slog"
)

// state says where the link is: "up", "ending" or "ended: <why>". It reads
// only what is safe to read while the session's goroutines run.
func (s *Session) state() string {
	select {
	case <-s.done:
		if err := s.Err(); err != nil {
			return "ended: " + err.Error()
		}
		return "ended"
	default:
	}
	select {
	case <-s.quit:
		return "ending"
	default:
		return "up"
	}
}

// String describes the session by its component address and state, as
// "component.Session(cb1.example.com, up)".
func (s *Session) String() string {
	if s == nil || s.sessionState == nil {
		return "<nil>"
	}
	return "component.Session(" + s.cfg.addrStr + ", " + s.state() + ")"
}

// Format prints String for every verb. fmt would otherwise print a
// Session's fields by reflection, racing with its goroutines.
func (s *Session) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue logs the component address and the state.
func (s *Session) LogValue() slog.Value {
	if s == nil || s.sessionState == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("addr", s.cfg.addrStr), slog.String("state", s.state()))
}
