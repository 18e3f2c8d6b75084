package callbridge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
	"github.com/cblink/cblink/discovery/dnstest"
	"github.com/cblink/cblink/internal/testpki"
)

// A Call Bridge finds its XMPP server through DNS SRV, connects over TLS,
// logs in, and reports each step; here against an in-process XMPP server
// and DNS server on loopback. Cancelling the context closes the stream
// cleanly and makes Run return.
func ExampleBridge_Run() {
	// The XMPP server, with a certificate naming the domain and its FQDN,
	// and the component cb1 registered.
	ca := testpki.MustCA(testpki.Template{})
	srv, err := componenttest.NewServer(componenttest.Options{
		Domain:     "example.com",
		DNSNames:   []string{"example.com", "xmpp1.example.com"},
		CACert:     ca.Cert,
		CAKey:      ca.Key,
		Components: map[string]string{"cb1.example.com": "s3cret"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Addr())
	dns, err := dnstest.NewServer("$ORIGIN example.com.\n" +
		"_xmpp-component._tcp IN SRV 0 0 " + port + " xmpp1\n" +
		"xmpp1 IN A 127.0.0.1\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dns.Close()

	b, err := callbridge.New(callbridge.Config{
		Name:        "cb1",
		Domain:      "example.com",
		Secret:      component.NewSecret("s3cret"),
		RootCAs:     ca.Pool(),            // an internal CA; nil means the system roots
		NameServers: []string{dns.Addr()}, // nil means /etc/resolv.conf
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})

	events, _ := b.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	for ev := range events { // closed after the Stopped event
		switch ev.To {
		case callbridge.Connecting, callbridge.Connected:
			fmt.Println(ev.To, ev.Status.Server)
		default:
			fmt.Println(ev.To)
		}
		if ev.To == callbridge.Connected {
			cancel()
		}
	}
	err = <-done
	fmt.Println("Run returned:", err, errors.Is(err, context.Canceled))
	// Output:
	// resolving
	// connecting xmpp1.example.com
	// tls
	// authenticating
	// connected xmpp1.example.com
	// stopping
	// stopped
	// Run returned: context canceled true
}

// Validate reports every problem of a Config at once, each naming its field.
func ExampleConfig_Validate() {
	cfg := callbridge.Config{
		Name:   "cb1.example.com", // the name goes without the domain
		Server: "xmpp1.example.com:99999",
	}
	err := cfg.Validate()
	fmt.Println(errors.Is(err, component.ErrConfig))
	var ce *component.ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Printf("%s: %s\n", p.Field, p.Msg)
		}
	}
	// Output:
	// true
	// Domain: must be set (the XMPP domain, for example "example.com")
	// Name: must not contain a domain part: "cb1.example.com" (set the domain separately, or the full component address in ComponentAddress)
	// Server: discovery: parse server address "xmpp1.example.com:99999": has a port above 65535
	// Secret: must be set (Secret, SecretFile, SecretCredential or SecretEnv)
}

// Shutdown stops a bridge gracefully, as a service does on SIGTERM: the
// join request in progress finishes and is answered, new ones would be
// refused, then the stream closes. Status says Stopping meanwhile, which a
// readiness check reports as not ready.
func ExampleBridge_Shutdown() {
	srv, err := componenttest.NewServer(componenttest.Options{
		Domain:     "example.com",
		Components: map[string]string{"cb1.example.com": "s3cret"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	b, err := callbridge.New(callbridge.Config{
		Name: "cb1", Domain: "example.com", Secret: component.NewSecret("s3cret"),
		Server:     srv.Addr(),  // an explicit host:port, no SRV lookup
		ServerName: "localhost", // the name the test certificate carries
		RootCAs:    srv.CertPool(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	b.HandleJoin(func(ctx context.Context, req *component.JoinRequest) (*component.JoinResult, error) {
		close(inHandler)
		<-release // a slow backend
		return &component.JoinResult{Session: "s-" + req.Call}, nil
	})
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(context.Background()) }()

	// A web user asks to join through the server.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := srv.WaitConn(ctx, "cb1.example.com")
	if err != nil {
		fmt.Println(err)
		return
	}
	reply := make(chan []byte, 1)
	go func() {
		raw, _ := conn.SendIQ(ctx, component.MarshalJoinIQ(&component.JoinRequest{
			From: jid.MustParse("alice@example.com/web"), ID: "j1", Call: "100",
		}, jid.MustParse("cb1.example.com")))
		reply <- raw
	}()
	<-inHandler

	// SIGTERM: drain for up to ten seconds.
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- b.Shutdown(sctx)
	}()
	// Wait from the state just read, so a change in between is not missed.
	for st := b.Status().State; st != callbridge.Stopping; st = b.Status().State {
		if !b.WaitForStateChange(ctx, st) {
			fmt.Println("still", st)
			return
		}
	}
	fmt.Println("state:", b.Status().State)
	close(release) // the backend answers
	res, err := component.ParseJoinResponse(<-reply)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("join answered:", res.Session, err)
	fmt.Println("Shutdown:", <-shut)
	fmt.Println("Run:", <-runErr)
	fmt.Println("closed cleanly:", conn.ClosedByPeer())
	// Output:
	// state: stopping
	// join answered: s-100 <nil>
	// Shutdown: <nil>
	// Run: callbridge: closed
	// closed cleanly: true
}

// Classify sorts any error of the module into a kind, and tells which kinds
// an operator must fix.
func ExampleClassify() {
	errs := []error{
		&component.StreamError{Err: stream.NotAuthorized, Addr: "cb1.example.com"},
		&component.StreamError{Err: stream.HostUnknown, Addr: "cb1.example.com", Name: "cb1"},
		&component.StreamError{Err: stream.Conflict, Addr: "cb1.example.com"},
		fmt.Errorf("dial: %w", errors.New("connection refused")),
	}
	for _, err := range errs {
		k := callbridge.Classify(err)
		fmt.Printf("%s (permanent %v): %v\n", k, k.Permanent(), err)
	}
	// Output:
	// auth (permanent true): component: authentication failure: wrong shared secret for cb1.example.com (server said not-authorized)
	// unknown-name (permanent true): component: the XMPP server does not know the component name cb1.example.com (host-unknown): add the component on the server
	// conflict (permanent false): component: another link is already connected as cb1.example.com (conflict); a stale link may still be closing
	// network (permanent false): dial: connection refused
}
