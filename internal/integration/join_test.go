//go:build integration

package integration

import (
	"context"
	"encoding/xml"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/component"
)

// TestIntegrationJoinAndMessages has a real c2s user play the web side: its
// join requests reach the component's JoinHandler through Prosody and the
// user gets the handler's answer; a message from the user reaches the
// component's message handler, and one from the component reaches the user.
func TestIntegrationJoinAndMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProsody(t, prosodyOptions{})

	joins := make(chan *component.JoinRequest, 8)
	messages := make(chan *component.Stanza, 8)
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		joins <- req
		switch {
		case req.Call != "space-42":
			return nil, component.ErrJoinUnknownCall
		case req.Passcode != "1234":
			return nil, component.ErrJoinForbidden
		}
		return &component.JoinResult{Session: "sess-" + req.ID}, nil
	})
	mux.HandleMessage(func(ctx context.Context, st *component.Stanza) { messages <- st })
	opts := linkTo(p)
	opts.Handler = mux
	s, tm, err := dialComponent(ctx, t, opts)
	require.NoError(t, err)
	t.Logf("link: %v", tm)

	user := dialC2S(ctx, t, p, defaultUser, defaultPassword)
	cb := jid.MustParse(componentAddr)

	tests := []struct {
		name    string
		req     component.JoinRequest
		session string       // expected on success
		wantErr stanza.Error // expected refusal; zero for success
	}{
		{
			name:    "accepted",
			req:     component.JoinRequest{ID: "join-1", Call: "space-42", Passcode: "1234", DisplayName: "Alice Ünïcode & <Co>"},
			session: "sess-join-1",
		},
		{
			name:    "wrong passcode",
			req:     component.JoinRequest{ID: "join-2", Call: "space-42", Passcode: "0000"},
			wantErr: component.ErrJoinForbidden,
		},
		{
			name:    "unknown call",
			req:     component.JoinRequest{ID: "join-3", Call: "nope", DisplayName: "Bob"},
			wantErr: component.ErrJoinUnknownCall,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now()
			res, err := user.Join(ctx, cb, &tc.req)
			t.Logf("join round trip through Prosody: %v", time.Since(begin))
			if tc.wantErr.Condition != "" {
				require.ErrorIs(t, err, tc.wantErr)
				assert.Nil(t, res)
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.session, res.Session)
			}
			select {
			case got := <-joins:
				// Prosody stamps the sender's full JID; the rest is as sent.
				assert.Equal(t, user.JID.String(), got.From.String())
				assert.Equal(t, tc.req.ID, got.ID)
				assert.Equal(t, tc.req.Call, got.Call)
				assert.Equal(t, tc.req.Passcode, got.Passcode)
				assert.Equal(t, tc.req.DisplayName, got.DisplayName)
			default:
				t.Fatal("the join handler did not run before the reply came")
			}
		})
	}

	t.Run("message to the component", func(t *testing.T) {
		require.NoError(t, user.SendMessage(ctx, cb, "hello bridge"))
		select {
		case st := <-messages:
			assert.Equal(t, component.KindMessage, st.Kind)
			assert.Equal(t, "chat", st.Type)
			assert.Equal(t, user.JID.String(), st.From.String())
			assert.Equal(t, componentAddr, st.To.String())
			var body struct {
				Body string `xml:"body"`
			}
			require.NoError(t, st.Decode(&body))
			assert.Equal(t, "hello bridge", body.Body)
		case <-ctx.Done():
			t.Fatal("the message handler got nothing")
		}
	})

	t.Run("message from the component", func(t *testing.T) {
		from := jid.MustParse("space-42@" + componentAddr)
		err := s.Send(ctx, component.Message{
			From: from, To: user.JID, Type: stanza.ChatMessage,
			Payload: struct {
				XMLName xml.Name `xml:"body"`
				Text    string   `xml:",chardata"`
			}{Text: "welcome"},
		})
		require.NoError(t, err)
		select {
		case m := <-user.Messages:
			assert.Equal(t, from.String(), m.From.String())
			assert.Equal(t, "welcome", m.Body)
		case <-ctx.Done():
			t.Fatalf("the user got no message; stats %+v err %v", s.Stats(), s.Err())
		}
	})

	_, err = s.Ping(ctx)
	require.NoError(t, err, "the link survives it all")
}
