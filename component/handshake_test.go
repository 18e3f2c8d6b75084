package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/internal/xstream"
)

func TestHandshakeSuccessBytes(t *testing.T) {
	logs := &logBuf{}
	s, p := startSession(t, testConfig(logs))
	assert.Equal(t, testAddr, s.Addr().String())
	assert.Equal(t, "<stream:stream "+nsHeader+" to='cb1.example.com'><handshake>"+testDigest+"</handshake>", p.rec.String())
	require.NoError(t, s.Close())
	assert.ErrorIs(t, s.Err(), ErrClosed)
	assertNoSecret(t, logs.String())
}

// TestHandshakeScripts plays server byte sequences against the handshake.
func TestHandshakeScripts(t *testing.T) {
	hs := "<handshake>" + testDigest + "</handshake>"
	cases := []struct {
		name     string
		header   string // sent after reading the client header
		reply    string // sent after reading the handshake ("" = don't expect one)
		wantErr  error  // nil: success
		wantCond string // for *StreamError
		noHS     bool   // the client must not send <handshake>
	}{
		{name: "plain", header: srvHeader, reply: "<handshake/>"},
		{name: "xml declaration with newlines", header: "<?xml version='1.0' encoding='UTF-8'?>\n\r\n  \n" + srvHeader, reply: "<handshake/>"},
		{name: "whitespace before handshake reply", header: srvHeader, reply: " \n\t <handshake/>"},
		{name: "handshake with end tag", header: srvHeader, reply: "<handshake></handshake>"},
		{name: "handshake with explicit namespace", header: srvHeader, reply: "<handshake xmlns='jabber:component:accept'/>"},
		{name: "from omitted", header: "<stream:stream " + nsHeader + " id='" + testID + "'>", reply: "<handshake/>"},
		{name: "from in other case", header: "<stream:stream " + nsHeader + " from='CB1.example.com' id='" + testID + "'>", reply: "<handshake/>"},
		{name: "from differs", header: "<stream:stream " + nsHeader + " from='cb2.example.com' id='" + testID + "'>", wantErr: ErrWrongAddress, noHS: true},
		{name: "missing id", header: "<stream:stream " + nsHeader + " from='cb1.example.com'>", wantErr: ErrNoStreamID, noHS: true},
		{name: "empty id", header: "<stream:stream " + nsHeader + " from='cb1.example.com' id=''>", wantErr: ErrNoStreamID, noHS: true},
		{name: "missing id then host-unknown", header: "<stream:stream " + nsHeader + " from='cb1.example.com'><stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", wantErr: stream.HostUnknown, wantCond: "host-unknown", noHS: true},
		{name: "host-unknown after header", header: srvHeader + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>", wantErr: stream.HostUnknown, wantCond: "host-unknown"},
		{name: "wrong secret", header: srvHeader, reply: "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Invalid handshake</text></stream:error>", wantErr: stream.NotAuthorized, wantCond: "not-authorized"},
		{name: "conflict", header: srvHeader, reply: "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", wantErr: stream.Conflict, wantCond: "conflict"},
		{name: "non-empty handshake reply", header: srvHeader, reply: "<handshake>x</handshake>", wantErr: ErrProtocol},
		{name: "handshake in wrong namespace", header: srvHeader, reply: "<handshake xmlns='urn:other'/>", wantErr: ErrProtocol},
		{name: "stanza instead of handshake", header: srvHeader, reply: "<message/>", wantErr: ErrProtocol},
		{name: "stream closed instead of handshake", header: srvHeader, reply: "</stream:stream>", wantErr: ErrPeerClosed},
		{name: "client namespace", header: "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x'>", wantErr: stream.InvalidNamespace, wantCond: "invalid-namespace", noHS: true},
		{name: "not XML", header: "HTTP/1.1 400 Bad Request\r\n\r\n", wantErr: stream.NotWellFormed, wantCond: "not-well-formed", noHS: true},
		{name: "comment instead of handshake", header: srvHeader, reply: "<!-- hi -->", wantErr: stream.RestrictedXML, wantCond: "restricted-xml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logBuf{}
			c, p := newPeer(t)
			go func() {
				if _, err := p.dec.ReadHeader(); err != nil {
					return
				}
				p.write(tc.header)
				if tc.reply != "" {
					if _, err := p.dec.Next(); err != nil {
						return
					}
					p.write(tc.reply)
				}
				_, _ = io.Copy(io.Discard, io.TeeReader(p.conn, p.rec))
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := NewSession(ctx, c, testConfig(logs))
			if tc.wantErr == nil {
				require.NoError(t, err)
				require.NoError(t, s.Close())
				return
			}
			require.Error(t, err)
			require.Nil(t, s)
			assert.ErrorIs(t, err, tc.wantErr)
			if tc.wantCond != "" {
				var se *StreamError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, tc.wantCond, se.Condition())
			}
			p.conn.Close()
			if tc.noHS {
				assert.NotContains(t, p.rec.String(), "<handshake")
			} else {
				assert.Contains(t, p.rec.String(), hs)
			}
			assertNoSecret(t, err.Error(), logs.String())
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cancel bool
	}{{"deadline", false}, {"cancel", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := newPeer(t)
			go func() {
				_, _ = p.dec.ReadHeader()
				// then silence, reading whatever comes
				_, _ = io.Copy(io.Discard, p.conn)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if tc.cancel {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			start := time.Now()
			_, err := NewSession(ctx, c, testConfig(nil))
			require.Error(t, err)
			assert.Less(t, time.Since(start), 3*time.Second)
			if tc.cancel {
				assert.ErrorIs(t, err, context.Canceled)
				assert.NotErrorIs(t, err, ErrTimeout)
			} else {
				assert.ErrorIs(t, err, ErrTimeout)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			}
		})
	}
}

func TestHandshakeConfigTimeout(t *testing.T) {
	c, p := newPeer(t)
	go func() { _, _ = io.Copy(io.Discard, p.conn) }()
	cfg := testConfig(nil)
	cfg.HandshakeTimeout = 50 * time.Millisecond
	_, err := NewSession(context.Background(), c, cfg)
	assert.ErrorIs(t, err, ErrTimeout)
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no name", Config{Domain: "example.com", Secret: NewSecret("x")}},
		{"no domain", Config{Name: "cb1", Secret: NewSecret("x")}},
		{"no secret", Config{Name: "cb1", Domain: "example.com"}},
		{"address with localpart", Config{Domain: "example.com", Address: "a@cb1.example.com", Secret: NewSecret("x")}},
		{"dotted name", Config{Name: "cb1.example.com", Domain: "example.com", Secret: NewSecret("x")}},
		{"negative timeout", Config{Name: "cb1", Domain: "example.com", Secret: NewSecret("x"), Tuning: Tuning{PingTimeout: -1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, p := newPeer(t)
			_ = p
			_, err := NewSession(context.Background(), c, tc.cfg)
			assert.ErrorIs(t, err, ErrConfig)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Len(t, ce.Problems, 1)
			assert.Equal(t, err, tc.cfg.Validate(), "Validate says what NewSession says")
		})
	}
}

func TestConfigAddress(t *testing.T) {
	cases := []struct {
		name      string
		cfg       Config
		addr, srv string
	}{
		{"name and domain", Config{Name: "cb1", Domain: "example.com"}, "cb1.example.com", "example.com"},
		{"full address", Config{Domain: "example.com", Address: "cb1.example.com"}, "cb1.example.com", "example.com"},
		{"normalized", Config{Name: "CB1", Domain: "Example.COM."}, "cb1.example.com", "example.com"},
		{"override", Config{Name: "cb1", Domain: "example.com", Address: "bridge.example.org"}, "bridge.example.org", "example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Secret = NewSecret(testSecret)
			s, err := tc.cfg.resolve()
			require.NoError(t, err)
			assert.Equal(t, tc.addr, s.addrStr)
			assert.Equal(t, tc.srv, s.serverAddr)
			assert.Equal(t, "cb1", s.Name)
		})
	}
}

func TestConfigRedactsSecret(t *testing.T) {
	cfg := testConfig(nil)
	logs := &logBuf{}
	cfg.Logger = nil
	l := slog.New(slog.NewTextHandler(logs, nil))
	l.Info("config", "cfg", cfg)
	assertNoSecret(t, cfg.String(), logs.String())
	assert.Contains(t, logs.String(), "redacted")
}

func TestStreamErrorClasses(t *testing.T) {
	cases := []struct {
		cond   string
		target stream.Error
	}{
		{"not-authorized", stream.NotAuthorized},
		{"host-unknown", stream.HostUnknown},
		{"conflict", stream.Conflict},
		{"invalid-namespace", stream.InvalidNamespace},
		{"improper-addressing", stream.ImproperAddressing},
		{"invalid-from", stream.InvalidFrom},
		{"policy-violation", stream.PolicyViolation},
		{"see-other-host", stream.SeeOtherHost},
		{"system-shutdown", stream.SystemShutdown},
		{"connection-timeout", stream.ConnectionTimeout},
		{"reset", stream.Reset},
		{"undefined-condition", stream.UndefinedCondition},
	}
	for _, tc := range cases {
		t.Run(tc.cond, func(t *testing.T) {
			s, p := startSession(t, testConfig(nil))
			content := ""
			if tc.cond == "see-other-host" {
				content = "[2001:db8::1]:5223"
			}
			p.write("<stream:error><" + tc.cond + " xmlns='urn:ietf:params:xml:ns:xmpp-streams'>" + content + "</" + tc.cond +
				"><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>because</text></stream:error>")
			err := waitDone(t, s)
			require.ErrorIs(t, err, tc.target)
			var se *StreamError
			require.ErrorAs(t, err, &se)
			assert.False(t, se.Local)
			assert.Equal(t, "because", se.Text())
			host, ok := se.OtherHost()
			assert.Equal(t, tc.cond == "see-other-host", ok)
			assert.Equal(t, content, host)
			// The client answers with its closing tag.
			require.ErrorIs(t, p.end(), xstream.ErrStreamEnd)
			// Sends fail at once, typed.
			err = s.Send(context.Background(), Message{})
			assert.ErrorIs(t, err, ErrDisconnected)
			assert.ErrorIs(t, err, tc.target)
			assert.NotErrorIs(t, err, ErrClosed)
		})
	}
}

func TestStreamErrorIsByCondition(t *testing.T) {
	assert.True(t, errors.Is(&StreamError{Err: stream.NotAuthorized}, stream.NotAuthorized))
	assert.False(t, errors.Is(&StreamError{Err: stream.Conflict}, stream.NotAuthorized))
}

// TestConfigDurations: every duration field, zero (its default), negative
// (off, or an error where the wait must be bounded) and positive (kept).
func TestConfigDurations(t *testing.T) {
	type field struct {
		name   string
		ptr    func(*Config) *time.Duration
		got    func(settings) time.Duration
		def    time.Duration
		canOff bool
	}
	fields := []field{
		{"HandshakeTimeout", func(c *Config) *time.Duration { return &c.HandshakeTimeout }, func(s settings) time.Duration { return s.HandshakeTimeout }, DefaultHandshakeTimeout, false},
		{"KeepaliveIdle", func(c *Config) *time.Duration { return &c.KeepaliveIdle }, func(s settings) time.Duration { return s.KeepaliveIdle }, DefaultKeepaliveIdle, true},
		{"PingInterval", func(c *Config) *time.Duration { return &c.PingInterval }, func(s settings) time.Duration { return s.PingInterval }, DefaultPingInterval, true},
		{"PingTimeout", func(c *Config) *time.Duration { return &c.PingTimeout }, func(s settings) time.Duration { return s.PingTimeout }, DefaultPingTimeout, false},
		{"ReadTimeout", func(c *Config) *time.Duration { return &c.ReadTimeout }, func(s settings) time.Duration { return s.ReadTimeout }, 2*DefaultPingInterval + DefaultPingTimeout, true},
		{"WriteTimeout", func(c *Config) *time.Duration { return &c.WriteTimeout }, func(s settings) time.Duration { return s.WriteTimeout }, DefaultWriteTimeout, false},
		{"CloseTimeout", func(c *Config) *time.Duration { return &c.CloseTimeout }, func(s settings) time.Duration { return s.CloseTimeout }, DefaultCloseTimeout, false},
	}
	base := Config{Name: "cb1", Domain: "example.com", Secret: NewSecret(testSecret)}
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			for _, tc := range []struct {
				in   time.Duration
				want time.Duration // 0: an error
			}{{0, f.def}, {-1, -1}, {7 * time.Second, 7 * time.Second}} {
				cfg := base
				*f.ptr(&cfg) = tc.in
				s, err := cfg.resolve()
				switch {
				case tc.in < 0 && !f.canOff:
					require.ErrorIs(t, err, ErrConfig, "negative %s", f.name)
					assert.Contains(t, err.Error(), f.name)
				case tc.in < 0:
					require.NoError(t, err)
					assert.Negative(t, f.got(s), "negative %s turns it off", f.name)
				default:
					require.NoError(t, err)
					assert.Equal(t, tc.want, f.got(s), "%s = %v", f.name, tc.in)
				}
			}
		})
	}
	// ReadTimeout follows the pings: off when they are.
	cfg := base
	cfg.PingInterval = -1
	s, err := cfg.resolve()
	require.NoError(t, err)
	assert.Negative(t, s.ReadTimeout, "no pings: an idle server need not send anything")
}
