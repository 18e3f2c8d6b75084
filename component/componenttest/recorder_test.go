package componenttest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

func recCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRecorderJoin: the reply and every stanza the handler sent, in order,
// with the addresses the wire carried.
func TestRecorderJoin(t *testing.T) {
	alice := jid.MustParse("alice@example.net/web")
	rec := componenttest.Recorder{Domain: "example.net", Name: "cb7"}
	got, err := rec.Join(recCtx(t), func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		s, ok := component.SessionFromContext(ctx)
		if !ok {
			return nil, errors.New("no session")
		}
		for i := range 3 {
			if err := s.Send(ctx, component.Message{To: req.From, ID: fmt.Sprint("m", i)}); err != nil {
				return nil, err
			}
		}
		return &component.JoinResult{Session: req.Call + "/" + req.DisplayName}, nil
	}, &component.JoinRequest{From: alice, ID: "j1", Call: "100", DisplayName: "Alice"})
	require.NoError(t, err)
	assert.Equal(t, "iq", got.Reply.Name)
	assert.Equal(t, "result", got.Reply.Type)
	assert.Equal(t, "j1", got.Reply.ID)
	assert.Equal(t, "cb7.example.net", got.Reply.From)
	assert.Equal(t, alice.String(), got.Reply.To)
	require.NoError(t, got.Err())
	res, err := got.JoinResult()
	require.NoError(t, err)
	assert.Equal(t, "100/Alice", res.Session)
	require.Len(t, got.Sent, 3)
	for i, st := range got.Sent {
		assert.Equal(t, "message", st.Name)
		assert.Equal(t, fmt.Sprint("m", i), st.ID)
		assert.Equal(t, "cb7.example.net", st.From, "the session stamps from")
		assert.Equal(t, alice.String(), st.To)
	}
}

// TestRecorderAnswers: the answer a handler's error gets is the one the
// wire carries.
func TestRecorderAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want stanza.Condition
		typ  stanza.ErrorType
	}{
		{"stanza error", stanza.Error{Type: stanza.Auth, Condition: stanza.NotAuthorized}, stanza.NotAuthorized, stanza.Auth},
		{"unknown call", component.ErrJoinUnknownCall, component.ErrJoinUnknownCall.Condition, component.ErrJoinUnknownCall.Type},
		{"plain error", errors.New("db down: secret detail"), stanza.InternalServerError, stanza.Cancel},
		{"gave up", fmt.Errorf("backend: %w", context.DeadlineExceeded), stanza.ServiceUnavailable, stanza.Wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec componenttest.Recorder
			got, err := rec.Join(recCtx(t), func(context.Context, *component.JoinRequest) (*component.JoinResult, error) {
				return nil, tc.err
			}, &component.JoinRequest{Call: "1"})
			require.NoError(t, err)
			assert.Equal(t, "error", got.Reply.Type)
			var se stanza.Error
			require.ErrorAs(t, got.Err(), &se)
			assert.Equal(t, tc.want, se.Condition)
			assert.Equal(t, tc.typ, se.Type)
			_, err = got.JoinResult()
			assert.ErrorIs(t, err, stanza.Error{Condition: tc.want})
			assert.NotContains(t, string(got.Reply.Raw), "secret detail")
			assert.Empty(t, got.Sent)
		})
	}
}

// TestRecorderSendIQ: a handler that asks the user (answered by the
// test) and the server (answered by the server) before it decides.
func TestRecorderSendIQ(t *testing.T) {
	var asked []string
	rec := componenttest.Recorder{AnswerIQs: func(iq componenttest.Stanza) ([]byte, error) {
		asked = append(asked, iq.To) // the recorder's reader calls it, one at a time
		if iq.To == "example.com" {
			return nil, stanza.Error{Type: stanza.Cancel, Condition: stanza.FeatureNotImplemented}
		}
		return []byte(`<ok xmlns='urn:example'/>`), nil
	}}
	got, err := rec.Join(recCtx(t), func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		s, _ := component.SessionFromContext(ctx)
		r, err := s.SendIQ(ctx, component.IQ{Type: stanza.GetIQ, To: req.From, Payload: component.RawXML(`<ask xmlns='urn:example'/>`)})
		if err != nil {
			return nil, err
		}
		if name, _ := r.Payload(); name != "ok" {
			return nil, component.ErrJoinForbidden
		}
		_, err = s.SendIQ(ctx, component.IQ{Type: stanza.GetIQ, Payload: component.RawXML(`<q xmlns='urn:example'/>`)})
		if !errors.Is(err, stanza.Error{Condition: stanza.FeatureNotImplemented}) {
			return nil, fmt.Errorf("want feature-not-implemented, got %w", err)
		}
		return &component.JoinResult{Session: "s"}, nil
	}, &component.JoinRequest{Call: "1"})
	require.NoError(t, err)
	res, err := got.JoinResult()
	require.NoError(t, err)
	assert.Equal(t, "s", res.Session)
	assert.Equal(t, []string{"guest@example.com/web", "example.com"}, asked)
	require.Len(t, got.Sent, 2, "both requests are in the recording")
	assert.Equal(t, "guest@example.com/web", got.Sent[0].To)
	assert.Equal(t, "example.com", got.Sent[1].To)
}

// TestRecorderServerDefault: without AnswerIQs the server domain answers
// service-unavailable, and the request is still recorded.
func TestRecorderServerDefault(t *testing.T) {
	var rec componenttest.Recorder
	got, err := rec.Join(recCtx(t), func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		s, _ := component.SessionFromContext(ctx)
		_, err := s.SendIQ(ctx, component.IQ{Type: stanza.GetIQ, Payload: component.RawXML(`<q xmlns='urn:example'/>`)})
		return nil, err
	}, &component.JoinRequest{Call: "1"})
	require.NoError(t, err)
	assert.ErrorIs(t, got.Err(), stanza.Error{Condition: stanza.ServiceUnavailable})
	require.Len(t, got.Sent, 1)
	assert.Equal(t, "get", got.Sent[0].Type)
}

// TestRecorderUnanswered: a handler waiting for an answer nobody gives
// holds the call until its ctx ends; everything is stopped (goleak).
func TestRecorderUnanswered(t *testing.T) {
	var rec componenttest.Recorder
	ctx, cancel := context.WithCancel(recCtx(t))
	asked := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		_, err := rec.Join(ctx, func(hctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
			s, _ := component.SessionFromContext(hctx)
			once.Do(func() { close(asked) })
			_, err := s.SendIQ(hctx, component.IQ{Type: stanza.GetIQ, To: req.From, Payload: component.RawXML(`<q xmlns='urn:example'/>`)})
			return nil, err
		}, &component.JoinRequest{Call: "1"})
		errc <- err
	}()
	<-asked
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

// TestRecorderIQ: an IQ handler is selected by the payload of the raw IQ.
func TestRecorderIQ(t *testing.T) {
	var rec componenttest.Recorder
	h := func(ctx context.Context, iq *component.Stanza) (any, error) {
		var q struct {
			N string `xml:"n,attr"`
		}
		if err := iq.DecodePayload(&q); err != nil {
			return nil, err
		}
		return component.RawXML(`<r xmlns='urn:example' n='` + q.N + `'/>`), nil
	}
	got, err := rec.IQ(recCtx(t), h, []byte(`<iq type='get' id='q1' from='bob@example.com/x' to='cb1.example.com'><q xmlns='urn:example' n='7'/></iq>`))
	require.NoError(t, err)
	require.NoError(t, got.Err())
	assert.Equal(t, "q1", got.Reply.ID)
	assert.Contains(t, string(got.Reply.Raw), `n='7'`)

	_, err = rec.IQ(recCtx(t), h, []byte(`<message/>`))
	assert.ErrorIs(t, err, componenttest.ErrBadStanza)
	_, err = rec.IQ(recCtx(t), h, []byte(`<iq type='get' id='q1'/>`))
	assert.ErrorIs(t, err, componenttest.ErrBadStanza)
}

// TestRecorderConcurrent: one Recorder, many calls at once.
func TestRecorderConcurrent(t *testing.T) {
	var rec componenttest.Recorder
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			got, err := rec.Join(recCtx(t), welcome, &component.JoinRequest{Call: fmt.Sprint(i), Passcode: "1234"})
			if assert.NoError(t, err) {
				res, err := got.JoinResult()
				assert.NoError(t, err)
				assert.Equal(t, fmt.Sprint("s-", i), res.Session)
				assert.Len(t, got.Sent, 1)
			}
		})
	}
	wg.Wait()
}
