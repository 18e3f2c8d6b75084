//go:build integration

package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/internal/transcript"
)

// transcriptDir is where the unit tests read the recorded transcripts.
const transcriptDir = "../../testdata/prosody"

// TestIntegrationTranscripts records the bytes Prosody sends on a
// component link in each situation the unit tests replay: a handshake
// followed by joins and a message from a c2s user and a clean close, each
// refusal of the handshake (not-authorized, host-unknown, conflict) and a
// server stopping under a live link.
//
// It checks each link's outcome, and that the committed transcript of each
// situation in testdata/prosody has the same shape (the same elements from
// the server, in the same order), so a Prosody that starts writing
// differently is noticed here; the unit tests then hold the parsing of
// what it writes. With CBLINK_RECORD_TRANSCRIPTS=<dir> it writes the
// transcripts to dir instead (testdata/prosody to update them).
func TestIntegrationTranscripts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	server := prosodyVersion()
	record := os.Getenv("CBLINK_RECORD_TRANSCRIPTS")

	check := func(t *testing.T, name string, got *transcript.Transcript) {
		t.Helper()
		require.NotEmpty(t, got.Turns)
		for _, turn := range got.Turns {
			assert.NotContains(t, turn.Data, defaultSecret, "a transcript must not hold the secret")
		}
		if record != "" {
			require.NoError(t, got.Save(filepath.Join(record, name+".json")))
			t.Logf("wrote %s.json (%d turns)", name, len(got.Turns))
			return
		}
		committed, err := transcript.Load(filepath.Join(transcriptDir, name+".json"))
		require.NoError(t, err, "record it with CBLINK_RECORD_TRANSCRIPTS=testdata/prosody")
		assert.Equal(t, committed.ServerShape(), got.ServerShape(),
			"%s no longer sends what testdata/prosody/%s.json holds (%s); record again with CBLINK_RECORD_TRANSCRIPTS", server, name, committed.Server)
	}

	t.Run("join", func(t *testing.T) {
		p := startProsody(t, prosodyOptions{})
		mux := component.NewMux()
		mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
			if req.Passcode != "1234" {
				return nil, component.ErrJoinForbidden
			}
			return &component.JoinResult{Session: "sess-" + req.ID}, nil
		})
		messages := make(chan *component.Stanza, 1)
		mux.HandleMessage(func(ctx context.Context, st *component.Stanza) { messages <- st })
		opts := linkTo(p)
		opts.Handler = mux
		var rec *transcript.Recorder
		opts.Wrap = recordTo(&rec)
		s, _, err := dialComponent(ctx, t, opts)
		require.NoError(t, err)

		user := dialC2S(ctx, t, p, defaultUser, defaultPassword)
		cb := jid.MustParse(componentAddr)
		res, err := user.Join(ctx, cb, &component.JoinRequest{ID: "join-1", Call: "space-42", Passcode: "1234", DisplayName: "Alice Ünïcode & <Co>"})
		require.NoError(t, err)
		assert.Equal(t, "sess-join-1", res.Session)
		_, err = user.Join(ctx, cb, &component.JoinRequest{ID: "join-2", Call: "space-42", Passcode: "0000"})
		require.ErrorIs(t, err, component.ErrJoinForbidden)
		require.NoError(t, user.SendMessage(ctx, cb, "hello <bridge> & co"))
		select {
		case st := <-messages:
			assert.Equal(t, component.KindMessage, st.Kind)
		case <-ctx.Done():
			t.Fatal("the message never reached the component")
		}
		require.NoError(t, s.Close())
		check(t, "join", rec.Transcript(server, "handshake as cb1.example.com; a c2s user joins (accepted), joins with a wrong passcode (forbidden) and sends a message; the component closes the stream", componentName, domain))
	})

	t.Run("refusals", func(t *testing.T) {
		p := startProsody(t, prosodyOptions{})
		refusals := []struct {
			name     string
			scenario string
			link     func(o *linkOptions)
			before   bool
			cond     stream.Error
		}{
			{"not-authorized", "handshake with a wrong secret", func(o *linkOptions) { o.Secret = "not-the-Secret-4711" }, false, stream.NotAuthorized},
			{"host-unknown", "handshake as cb9.example.com, a component the server does not know", func(o *linkOptions) { o.Name = "cb9" }, false, stream.HostUnknown},
			{"conflict", "handshake as cb1.example.com while another link holds that name", nil, true, stream.Conflict},
		}
		for _, tc := range refusals {
			t.Run(tc.name, func(t *testing.T) {
				if tc.before {
					first, _, err := dialComponent(ctx, t, linkTo(p))
					require.NoError(t, err)
					defer first.Close()
				}
				opts := linkTo(p)
				if tc.link != nil {
					tc.link(&opts)
				}
				var rec *transcript.Recorder
				opts.Wrap = recordTo(&rec)
				_, _, err := dialComponent(ctx, t, opts)
				require.ErrorIs(t, err, tc.cond)
				name := componentName
				if opts.Name != "" {
					name = opts.Name
				}
				check(t, tc.name, rec.Transcript(server, tc.scenario, name, domain))
			})
		}
	})

	t.Run("stop", func(t *testing.T) {
		p := startProsody(t, prosodyOptions{})
		opts := linkTo(p)
		var rec *transcript.Recorder
		opts.Wrap = recordTo(&rec)
		s, _, err := dialComponent(ctx, t, opts)
		require.NoError(t, err)
		p.Stop()
		// Prosody closes a component's connection as it stops, without
		// a stream error or a closing tag: a drop.
		err = s.Wait(ctx)
		require.Error(t, err)
		t.Logf("link ended: %v", err)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		var se *component.StreamError
		require.False(t, errors.As(err, &se), "no stream error: %v", err)
		check(t, "stop", rec.Transcript(server, "a live link while the server stops (SIGTERM)", componentName, domain))
	})
}

// prosodyVersion names the Prosody the suite runs, from its Debian package.
func prosodyVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "prosody").Output()
	if err != nil || len(out) == 0 {
		return "Prosody"
	}
	return "Prosody " + strings.TrimSpace(string(out))
}

// recordTo is a linkOptions.Wrap that records the link into *rec.
func recordTo(rec **transcript.Recorder) func(net.Conn) net.Conn {
	return func(c net.Conn) net.Conn {
		*rec = transcript.Record(c)
		return *rec
	}
}
