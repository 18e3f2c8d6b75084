package callbridge

import (
	"fmt"
	"io"
	"log/slog"
)

// String describes the bridge by its component address and state, as
// "callbridge.Bridge(cb1.example.com, connected, server xmpp1.example.com)".
func (b *Bridge) String() string {
	if b == nil || b.bridgeState == nil {
		return "<nil>"
	}
	addr, st := b.describe()
	s := "callbridge.Bridge(" + addr + ", " + st.State.String()
	if st.Server != "" {
		s += ", server " + st.Server
	}
	return s + ")"
}

// Format prints String for every verb. fmt would otherwise print a
// Bridge's fields by reflection, racing with its goroutines.
func (b *Bridge) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, b.String()) }

// LogValue logs the component address, the state and the server.
func (b *Bridge) LogValue() slog.Value {
	if b == nil || b.bridgeState == nil {
		return slog.StringValue("<nil>")
	}
	addr, st := b.describe()
	return slog.GroupValue(slog.String("addr", addr), slog.String("state", st.State.String()), slog.String("server", st.Server))
}

func (b *Bridge) describe() (addr string, st Status) {
	cfg, _ := b.current()
	return cfg.address, b.Status()
}
