package component_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/internal/testhelp"
	"github.com/cblink/cblink/internal/transcript"
	"github.com/cblink/cblink/internal/xstream"
)

// TestProsodyTranscriptsReplayed plays the server side of each link the
// integration suite recorded from a real Prosody (testdata/prosody) to a
// component Session: the handshake and joins through c2s come out as typed
// requests and their answers go back; each refusal comes out as the typed
// stream error; a server that stops comes out as a drop. A change that
// breaks reading what Prosody really writes fails here, without Prosody.
func TestProsodyTranscriptsReplayed(t *testing.T) {
	all, err := transcript.LoadDir("../testdata/prosody")
	require.NoError(t, err)

	refusals := map[string]stream.Error{
		"not-authorized": stream.NotAuthorized,
		"host-unknown":   stream.HostUnknown,
		"conflict":       stream.Conflict,
	}
	for name, cond := range refusals {
		t.Run(name, func(t *testing.T) {
			tr := all[name]
			require.NotNil(t, tr, "testdata/prosody/%s.json", name)
			s, replayErr, err := replay(t, tr, nil)
			assert.Nil(t, s)
			require.ErrorIs(t, err, cond)
			var se *component.StreamError
			require.ErrorAs(t, err, &se)
			assert.False(t, se.Local, "the server sent it")
			assert.NotEmpty(t, se.Text(), "Prosody explains its refusals")
			require.NoError(t, testhelp.Recv(t, replayErr))
		})
	}

	t.Run("join", func(t *testing.T) {
		tr := all["join"]
		require.NotNil(t, tr)
		joins := make(chan *component.JoinRequest, 2)
		messages := make(chan *component.Stanza, 1)
		mux := component.NewMux()
		mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
			joins <- req
			if req.Passcode != "1234" {
				return nil, component.ErrJoinForbidden
			}
			return &component.JoinResult{Session: "sess-" + req.ID}, nil
		})
		mux.HandleMessage(func(ctx context.Context, st *component.Stanza) { messages <- st })
		var sent bytes.Buffer
		s, replayErr, err := replay(t, tr, mux, &sent)
		require.NoError(t, err)

		first, second := testhelp.Recv(t, joins), testhelp.Recv(t, joins)
		if first.ID != "join-1" {
			first, second = second, first
		}
		assert.Equal(t, "join-1", first.ID)
		assert.Equal(t, "space-42", first.Call)
		assert.Equal(t, "1234", first.Passcode)
		assert.Equal(t, "Alice Ünïcode & <Co>", first.DisplayName)
		assert.Equal(t, "example.com", first.From.Domain().String())
		assert.Equal(t, "join-2", second.ID)
		assert.Equal(t, "0000", second.Passcode)
		msg := testhelp.Recv(t, messages)
		var body struct {
			Body string `xml:"body"`
		}
		require.NoError(t, msg.Decode(&body))
		assert.Equal(t, "hello <bridge> & co", body.Body)
		assert.Equal(t, "chat", msg.Type)

		// The close is the component's, as recorded; the server's
		// </stream:stream> answers it.
		require.NoError(t, s.Close())
		assert.ErrorIs(t, s.Err(), component.ErrClosed)
		require.NoError(t, testhelp.Recv(t, replayErr))

		// What the component answered, read back with the same decoder.
		d := xstream.NewDecoder(bytes.NewReader(sent.Bytes()), 0, 0)
		_, err = d.ReadHeader()
		require.NoError(t, err)
		replies := map[string]string{}
		for {
			el, err := d.Next()
			if err != nil {
				require.ErrorIs(t, err, xstream.ErrStreamEnd)
				break
			}
			if string(el.Name()) == "iq" {
				replies[el.AttrString("id")] = el.AttrString("type") + " " + string(el.Inner())
			}
		}
		assert.Equal(t, map[string]string{
			"join-1": "result <joined xmlns='urn:cblink:join:0' session='sess-join-1'/>",
			"join-2": "error <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
		}, replies)
	})

	t.Run("stop", func(t *testing.T) {
		tr := all["stop"]
		require.NotNil(t, tr)
		s, replayErr, err := replay(t, tr, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = s.Wait(ctx)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "a drop")
		var se *component.StreamError
		assert.False(t, errors.As(err, &se), "no stream error: %v", err)
		require.NoError(t, testhelp.Recv(t, replayErr))
	})

	t.Run("every transcript is replayed", func(t *testing.T) {
		var names []string
		for name := range all {
			names = append(names, name)
		}
		slices.Sort(names)
		assert.Equal(t, []string{"conflict", "host-unknown", "join", "not-authorized", "stop"}, names)
	})
}

// replay starts tr's server side on one end of a loopback TCP connection
// (as Prosody's is: a net.Pipe fails SetDeadline once the peer closed) and
// a Session with tr's name and domain on the other. The replay's error arrives on the
// channel once the pipe is done with; what the component sent is copied
// into sent[0] when given.
func replay(t *testing.T, tr *transcript.Transcript, mux *component.Mux, sent ...*bytes.Buffer) (*component.Session, <-chan error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server, err := ln.Accept()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		b, err := transcript.Replay(ctx, server, tr)
		if len(sent) > 0 {
			sent[0].Write(b)
		}
		done <- err
	}()
	cfg := component.Config{Name: tr.Name, Domain: tr.Domain, Secret: component.NewSecret("replayed-not-checked"), Handler: mux}
	s, err := component.NewSession(ctx, client, cfg)
	if s != nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, done, err
}
