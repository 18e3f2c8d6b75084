package wstest_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/component/componenttest/wstest"
)

func ExampleNew() {
	srv, err := componenttest.NewServer(componenttest.Options{Domain: "example.com", Plain: true})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.AddComponent("cb1.example.com", "s3cret")
	ws, err := wstest.New(wstest.Options{Domain: "example.com", Servers: []*componenttest.Server{srv}})
	if err != nil {
		panic(err)
	}
	defer ws.Close()
	fmt.Println(strings.HasPrefix(ws.URL(), "ws://127.0.0.1:"), strings.HasSuffix(ws.URL(), wstest.Path))

	// A web user: RFC 7395 needs the xmpp sub-protocol.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ws.URL(), &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		panic(err)
	}
	defer c.CloseNow()
	_ = c.Write(ctx, websocket.MessageText, []byte("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"))
	for range 2 {
		_, b, err := c.Read(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(strings.Contains(string(b), "<open "), strings.Contains(string(b), "<mechanism>ANONYMOUS</mechanism>"))
	}
	// Output:
	// true true
	// true false
	// false true
}
