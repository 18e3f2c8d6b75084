package component

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/internal/linkid"
)

// Defaults of the Tuning fields, applied when a field is zero. They are the
// only defaults of these settings in the module: callbridge uses them too.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultKeepaliveIdle    = 30 * time.Second
	DefaultPingInterval     = 30 * time.Second
	DefaultPingTimeout      = 10 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultCloseTimeout     = 2 * time.Second
	DefaultMaxStanzaSize    = 256 << 10
	DefaultMaxDepth         = 32
	DefaultWorkers          = 256
	DefaultQueueSize        = 256
	DefaultMaxPendingIQ     = 1024
	DefaultMaxQueuedBytes   = 4 << 20
)

// Tuning holds the knobs of a link: timeouts, size limits and the handler
// pool. The zero value of every field selects a documented default. A
// negative KeepaliveIdle, PingInterval or ReadTimeout turns that feature
// off; the other durations bound a wait that must end, so a negative one
// is an error. Config embeds it, and so does callbridge.Config, which
// passes it to every link unchanged: each default lives here only.
type Tuning struct {
	// HandshakeTimeout bounds Handshake (and NewSession) in addition to its
	// ctx; callbridge bounds TLS and the handshake together with it.
	// Default 10s.
	HandshakeTimeout time.Duration
	// KeepaliveIdle is how long nothing may be written before a single
	// space is sent as keepalive. Default 30s; negative disables.
	KeepaliveIdle time.Duration
	// PingInterval is how often an XEP-0199 ping goes to Domain to prove
	// the server alive. Default 30s; negative disables.
	PingInterval time.Duration
	// PingTimeout bounds each of those pings; a ping that times out while
	// nothing at all was read from the server ends the link with
	// ErrTimeout (anything read proves the server alive, even if its pong
	// is late). Default 10s. (To turn pings off, make PingInterval
	// negative.)
	PingTimeout time.Duration
	// ReadTimeout ends the link with ErrTimeout when nothing at all (not
	// even a keepalive) is read for that long. Default: 2*PingInterval +
	// PingTimeout (70s with the defaults) when pings are enabled, else
	// disabled (an idle server need not send anything); negative disables.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write to the connection. Default 30s.
	WriteTimeout time.Duration
	// CloseTimeout bounds Close (and Shutdown once its drain ends): the
	// wait for the server's closing tag, for a write blocked on a server
	// that stopped reading, and for handlers to return after their context
	// is cancelled. Default 2s.
	CloseTimeout time.Duration

	// MaxStanzaSize bounds each incoming stanza in bytes; a larger one
	// ends the link with policy-violation. Default 256 KiB.
	MaxStanzaSize int
	// MaxDepth bounds the nesting depth of incoming stanzas. Default 32.
	MaxDepth int
	// Workers bounds the handlers running at once (default 256). Each
	// stanza for a handler gets a goroutine of its own, as with net/http's
	// goroutine per request, so a quick request never waits behind a slow
	// one and an idle link runs none. A stanza that arrives while Workers
	// handlers run is shed at once: an IQ request is answered with
	// resource-constraint (type wait), other stanzas are dropped
	// (Stats.Shed, Stats.Dropped). The reader never waits for a handler,
	// so the server's pongs and the replies handlers wait for keep
	// flowing. A handler waiting 10ms serves Workers/10ms requests per
	// second at most (25,600/s by default).
	Workers int
	// QueueSize bounds, with OrderPerSender, the stanzas waiting behind a
	// running one of the same sender; past it, or past an eighth of it for
	// one sender (QueueSize/Workers if that is more), a stanza is shed as
	// above. Without OrderPerSender nothing waits. Default 256.
	QueueSize int
	// MaxQueuedBytes bounds the bytes of the stanzas held for handlers,
	// running or waiting, together: past it a stanza is shed as above, so
	// a server sending large stanzas cannot make a link hold Workers times
	// MaxStanzaSize. A stanza is always taken when none is held. Default
	// 4 MiB.
	MaxQueuedBytes int
	// OrderPerSender makes stanzas from the same sender (the same from)
	// run in arrival order, one at a time: a stanza whose sender has one
	// running waits behind it (see QueueSize); the others run at once.
	OrderPerSender bool
	// MaxPendingIQ bounds the IQ requests waiting for replies. Default 1024.
	MaxPendingIQ int
}

// WithDefaults returns t with every zero field set to its default.
func (t Tuning) WithDefaults() Tuning {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	def(&t.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&t.KeepaliveIdle, DefaultKeepaliveIdle)
	def(&t.PingInterval, DefaultPingInterval)
	def(&t.PingTimeout, DefaultPingTimeout)
	def(&t.WriteTimeout, DefaultWriteTimeout)
	def(&t.CloseTimeout, DefaultCloseTimeout)
	if t.ReadTimeout == 0 {
		if t.PingInterval > 0 {
			t.ReadTimeout = 2*t.PingInterval + t.PingTimeout
		} else {
			t.ReadTimeout = -1
		}
	}
	defInt := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	defInt(&t.MaxStanzaSize, DefaultMaxStanzaSize)
	defInt(&t.MaxDepth, DefaultMaxDepth)
	defInt(&t.Workers, DefaultWorkers)
	defInt(&t.QueueSize, DefaultQueueSize)
	defInt(&t.MaxPendingIQ, DefaultMaxPendingIQ)
	defInt(&t.MaxQueuedBytes, DefaultMaxQueuedBytes)
	return t
}

// ConfigError lists every problem of a configuration: of a Config, a
// Tuning or a callbridge.Config, which share it, so that errors.As and
// errors.Is (ErrConfig) work the same whichever package reported it.
type ConfigError struct {
	Problems []ConfigProblem
}

// ConfigProblem is one invalid setting. Field is its Go field name
// ("Name", "PingTimeout", "Backoff.Max"), so that a program can map it to
// its own flag or form field.
type ConfigProblem struct {
	Field string
	Msg   string
}

// Error lists the problems: "invalid configuration: Name: must be set;
// Domain: ...". It never contains the secret.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Field + ": " + p.Msg)
	}
	return b.String()
}

// Is makes a ConfigError match ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

// add records a problem with field.
func (e *ConfigError) add(field, format string, args ...any) {
	e.Problems = append(e.Problems, ConfigProblem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// err returns e when it holds a problem, else an untyped nil.
func (e *ConfigError) err() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// Validate returns every problem of t at once, as a *ConfigError, or nil.
func (t Tuning) Validate() error {
	var e ConfigError
	t.check(&e)
	return e.err()
}

// check adds the problems of t to e.
func (t Tuning) check(e *ConfigError) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HandshakeTimeout", t.HandshakeTimeout}, {"PingTimeout", t.PingTimeout},
		{"WriteTimeout", t.WriteTimeout}, {"CloseTimeout", t.CloseTimeout},
	} {
		if d.v < 0 {
			e.add(d.name, "must not be negative (%v): it bounds a wait that must end", d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"MaxStanzaSize", t.MaxStanzaSize}, {"MaxDepth", t.MaxDepth}, {"Workers", t.Workers},
		{"QueueSize", t.QueueSize}, {"MaxPendingIQ", t.MaxPendingIQ}, {"MaxQueuedBytes", t.MaxQueuedBytes},
	} {
		if n.v < 0 {
			e.add(n.name, "must not be negative (%d)", n.v)
		}
	}
}

// Config describes one component link: who it is (Name, Domain or
// Address, Secret), what handles its stanzas, and its Tuning. NewSession
// copies the Config, so changing it afterwards has no effect.
type Config struct {
	// Name is the component's name without a domain part ("cb1"), as
	// Cisco Meeting Server configures it: one DNS label, so a dotted name
	// is an error (put a full address in Address). The component address
	// is Name + "." + Domain unless Address is set; then Name may be empty
	// (it is taken from the address's first label).
	Name string
	// Domain is the XMPP domain ("example.com"); it must be set. Pings go
	// to this domain.
	Domain string
	// Address overrides the component address (a bare domain such as
	// "cb1.example.com").
	Address string
	// Secret is the shared secret. It never appears in logs, errors or any
	// formatting of the Config (see Secret).
	Secret Secret

	// Handler receives incoming stanzas. It may be nil: then pings are
	// answered, IQ get/set get service-unavailable, the rest is dropped.
	// The same Mux may serve any number of sessions, one after another or
	// at once.
	Handler *Mux

	// Tuning holds the link's timeouts, limits and handler pool; its zero
	// value selects the defaults.
	Tuning

	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// String describes the Config with the secret redacted.
func (c Config) String() string {
	return fmt.Sprintf("component.Config{Name:%q Domain:%q Address:%q Secret:%s}", c.Name, c.Domain, c.Address, c.Secret)
}

// LogValue implements slog.LogValuer with the secret redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("domain", c.Domain),
		slog.String("address", c.Address),
		slog.Any("secret", c.Secret),
	)
}

// settings is a Config with defaults applied and addresses resolved.
type settings struct {
	Config
	addr       jid.JID
	addrStr    string
	serverAddr string // domain for pings and default IQ target
}

// Validate returns every problem of c at once, as a *ConfigError
// (matching ErrConfig), or nil when Handshake and NewSession accept c. It
// applies the rules callbridge.Config applies to the same settings (see
// Name, Domain and Address).
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

func (c Config) resolve() (settings, error) {
	s := settings{Config: c}
	var e ConfigError
	id, probs := linkid.Resolve(c.Name, c.Domain, c.Address, "Address")
	for _, p := range probs {
		e.add(p.Field, "%s", p.Msg)
	}
	if id.Addr != "" {
		j, err := jid.Parse(id.Addr)
		switch {
		case err != nil:
			e.add("Address", "component address %q: %v", id.Addr, err)
		case j.Localpart() != "" || j.Resourcepart() != "":
			e.add("Address", "component address %q must be a bare domain", id.Addr)
		default:
			s.addr = j
			s.addrStr = j.String()
		}
	}
	if c.Secret.IsZero() {
		e.add("Secret", "must be set (the shared secret set on the XMPP server for the component)")
	}
	c.Tuning.check(&e)
	if err := e.err(); err != nil {
		return s, err
	}
	s.Name, s.Domain, s.serverAddr = id.Name, id.Domain, id.Domain
	s.Tuning = c.Tuning.WithDefaults()
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}
