package componenttest_test

import (
	"context"
	"fmt"

	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// welcome is the handler under test: it accepts a join and greets the web
// user through the session that carried the request.
func welcome(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
	if req.Passcode != "1234" {
		return nil, component.ErrJoinForbidden
	}
	s, _ := component.SessionFromContext(ctx)
	msg := component.Message{To: req.From, Payload: component.RawXML("<body>welcome</body>")}
	if err := s.Send(ctx, msg); err != nil {
		return nil, err
	}
	return &component.JoinResult{Session: "s-" + req.Call}, nil
}

// A unit test of a join handler that sends: no network, no bridge.
func ExampleRecorder() {
	var rec componenttest.Recorder
	ctx := context.Background()
	got, err := rec.Join(ctx, welcome, &component.JoinRequest{Call: "100", Passcode: "1234"})
	if err != nil {
		panic(err)
	}
	res, err := got.JoinResult()
	fmt.Println("session:", res.Session, err)
	fmt.Println("sent:", len(got.Sent), got.Sent[0].Name, "to", got.Sent[0].To)

	got, _ = rec.Join(ctx, welcome, &component.JoinRequest{Call: "100", Passcode: "0000"})
	fmt.Println("refused:", got.Err(), len(got.Sent))
	// Output:
	// session: s-100 <nil>
	// sent: 1 message to guest@example.com/web
	// refused: forbidden 0
}

// An IQ handler that asks the web user before it answers; the test plays
// the user with AnswerIQs.
func ExampleRecorder_IQ() {
	h := func(ctx context.Context, iq *component.Stanza) (any, error) {
		s, _ := component.SessionFromContext(ctx)
		r, err := s.SendIQ(ctx, component.IQ{Type: stanza.GetIQ, To: iq.From, Payload: component.RawXML(`<consent xmlns='urn:example'/>`)})
		if err != nil {
			return nil, err
		}
		if name, _ := r.Payload(); name != "yes" {
			return nil, stanza.Error{Type: stanza.Auth, Condition: stanza.Forbidden}
		}
		return component.RawXML(`<granted xmlns='urn:example'/>`), nil
	}
	rec := componenttest.Recorder{AnswerIQs: func(iq componenttest.Stanza) ([]byte, error) {
		return []byte(`<yes xmlns='urn:example'/>`), nil
	}}
	got, err := rec.IQ(context.Background(), h, []byte(`<iq type='set' id='r1' from='alice@example.com/web' to='cb1.example.com'><record xmlns='urn:example'/></iq>`))
	if err != nil {
		panic(err)
	}
	fmt.Println(got.Reply.Type, got.Err())
	fmt.Println("asked:", got.Sent[0].To)
	// Output:
	// result <nil>
	// asked: alice@example.com/web
}
