package callbridgetest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

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
