package componenttest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cblink/cblink/component/componenttest"
)

func ExampleNewServer() {
	srv, err := componenttest.NewServer(componenttest.Options{
		Domain:           "example.com",
		HandshakeTimeout: 2 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	// The registry holds full component addresses, like Prosody's
	// Component "cb1.example.com".
	srv.AddComponent("cb1.example.com", "s3cret")

	// A Call Bridge under test dials srv.Addr() with TLS, trusting
	// srv.CertPool() and expecting the name srv.Domain(). Then:
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := srv.WaitConn(ctx, "cb1.example.com"); err != nil {
		fmt.Println("no component connected yet:", err)
	}
	fmt.Println(srv.Components(), srv.ClientTLSConfig().ServerName, srv.Addr() != "")
	// Output:
	// no component connected yet: context deadline exceeded
	// [cb1.example.com] example.com true
}
