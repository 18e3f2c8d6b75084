package callbridgetest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/callbridge/callbridgetest"
	"github.com/cblink/cblink/component"
)

// A test of a Call Bridge program: two XMPP servers found by SRV, a join
// answered, the preferred server crashing and the bridge failing over.
func Example() {
	lab, err := callbridgetest.NewLab(callbridgetest.Options{
		Servers: []callbridgetest.Server{
			{Name: "xmpp1.example.com", Priority: 10},
			{Name: "xmpp2.example.com", Priority: 20},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()

	b, err := callbridge.New(lab.Config())
	if err != nil {
		fmt.Println(err)
		return
	}
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if req.Passcode != "1234" {
			return nil, component.ErrJoinForbidden
		}
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	done := lab.StartBridge(b) // the lab runs it; lab.Close would stop it
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := callbridgetest.WaitState(ctx, b, callbridge.Connected)
	fmt.Println("connected to", st.Server, err)
	res, err := lab.Join(ctx, st.Server, &component.JoinRequest{Call: "100", Passcode: "1234"})
	fmt.Println("join:", res.Session, err)
	_, err = lab.Join(ctx, st.Server, &component.JoinRequest{Call: "100", Passcode: "0000"})
	fmt.Println("wrong passcode:", errors.Is(err, stanza.Error{Condition: stanza.Forbidden}))

	_ = lab.StopServer("xmpp1.example.com")
	st, err = callbridgetest.WaitStatus(ctx, b, func(st callbridge.Status) bool {
		return st.State == callbridge.Connected && st.Server == "xmpp2.example.com"
	})
	fmt.Println("failed over to", st.Server, err)

	b.Close()
	fmt.Println("Run:", <-done)
	// Output:
	// connected to xmpp1.example.com <nil>
	// join: s-100 <nil>
	// wrong passcode: true
	// failed over to xmpp2.example.com <nil>
	// Run: callbridge: closed
}

// A join in flight, the bridge's own messages to the web user, and a
// reconnection awaited from the servers' side.
func ExampleLab_StartJoin() {
	lab, err := callbridgetest.NewLab(callbridgetest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()
	b, err := callbridge.New(lab.Config())
	if err != nil {
		fmt.Println(err)
		return
	}
	release := make(chan struct{})
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		<-release // a slow backend
		msg := component.Message{To: req.From, Payload: component.RawXML("<body>hello</body>")}
		if err := b.Send(ctx, msg); err != nil {
			return nil, err
		}
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	lab.StartBridge(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	alice := jid.MustParse("alice@example.com/web")
	inbox := lab.Inbox(alice)
	link, err := lab.WaitLink(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := lab.StartJoin(ctx, link.Server, &component.JoinRequest{Call: "100", From: alice})
	fmt.Println("in flight:", p.ID, err)
	close(release)
	res, err := p.Wait(ctx)
	fmt.Println("answer:", res.Session, err)
	st, err := inbox.Next(ctx)
	fmt.Println("alice got:", st.Name, "from", st.From, err)

	link.Close() // the link drops; the bridge reconnects
	link, err = lab.WaitLink(ctx, link.Conn)
	fmt.Println("new link to", link.Server, err)
	// Output:
	// in flight: lab-join-1 <nil>
	// answer: s-100 <nil>
	// alice got: message from cb1.example.com <nil>
	// new link to xmpp1.example.com <nil>
}
