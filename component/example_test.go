package component_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// ExampleNewSession connects a component to an in-process XMPP server over
// direct TLS, pings the server and closes the link.
func ExampleNewSession() {
	srv, err := componenttest.NewServer(componenttest.Options{
		Components: map[string]string{"cb1.example.com": "s3cr3t"},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tls.Dial("tcp", srv.Addr(), srv.ClientTLSConfig())
	if err != nil {
		panic(err)
	}
	s, err := component.NewSession(ctx, conn, component.Config{
		Name:   "cb1",
		Domain: "example.com",
		Secret: component.NewSecret("s3cr3t"),
	})
	if err != nil {
		fmt.Println("handshake failed:", err)
		return
	}
	fmt.Println("connected as", s.Addr())
	if _, err := s.Ping(ctx); err == nil {
		fmt.Println("server alive")
	}
	s.Close()
	fmt.Println("ended:", s.Err())
	// Output:
	// connected as cb1.example.com
	// server alive
	// ended: component: session closed
}

// ExampleMux_HandleJoin accepts join requests for one call with the right
// passcode and refuses the others.
func ExampleMux_HandleJoin() {
	mux := component.NewMux()
	mux.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		if req.Call != "1234" {
			return nil, component.ErrJoinUnknownCall
		}
		if req.Passcode != "0000" {
			return nil, component.ErrJoinForbidden
		}
		return &component.JoinResult{Session: "web-" + req.DisplayName}, nil
	})

	srv, err := componenttest.NewServer(componenttest.Options{
		Components: map[string]string{"cb1.example.com": "s3cr3t"},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tls.Dial("tcp", srv.Addr(), srv.ClientTLSConfig())
	if err != nil {
		panic(err)
	}
	s, err := component.NewSession(ctx, conn, component.Config{
		Name: "cb1", Domain: "example.com", Secret: component.NewSecret("s3cr3t"), Handler: mux,
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	server, err := srv.WaitConn(ctx, "cb1.example.com")
	if err != nil {
		panic(err)
	}

	// Play the XMPP server forwarding web users' join requests.
	guest := jid.MustParse("guest123@example.com/webrtc")
	for i, req := range []component.JoinRequest{
		{Call: "1234", Passcode: "0000", DisplayName: "Ann"},
		{Call: "1234", Passcode: "9999"},
		{Call: "5678"},
	} {
		req.From, req.ID = guest, fmt.Sprint("join", i)
		reply, err := server.SendIQ(ctx, component.MarshalJoinIQ(&req, s.Addr()))
		if err != nil {
			panic(err)
		}
		res, err := component.ParseJoinResponse(reply)
		if err != nil {
			fmt.Println(req.Call, "refused:", err)
			continue
		}
		fmt.Println(req.Call, "joined, session", res.Session)
	}
	// Output:
	// 1234 joined, session web-Ann
	// 1234 refused: forbidden
	// 5678 refused: item-not-found
}

// ExampleSecret loads a secret from a JSON configuration file: however
// the Config is printed afterwards, the secret shows as [redacted].
func ExampleSecret() {
	var cfg component.Config
	if err := json.Unmarshal([]byte(`{"Name": "cb1", "Domain": "example.com", "Secret": "s3cr3t"}`), &cfg); err != nil {
		panic(err)
	}
	fmt.Println(cfg.Secret)
	fmt.Printf("%#v\n", cfg.Secret)
	fmt.Println(cfg)
	fmt.Println(cfg.Validate())
	fmt.Println(component.NewSecret(""))
	// Output:
	// [redacted]
	// component.Secret([redacted])
	// component.Config{Name:"cb1" Domain:"example.com" Address:"" Secret:[redacted]}
	// <nil>
	// [empty]
}
