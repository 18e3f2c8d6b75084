// Package callbridgetest starts a complete Call Bridge set-up on loopback,
// for testing programs built on package callbridge the way
// net/http/httptest serves tests of HTTP handlers: in-process XMPP servers
// that accept XEP-0114 components (componenttest), with certificates from
// one in-memory CA naming the XMPP domain and each server, behind an
// in-process DNS server (dnstest) publishing their
// _xmpp-component._tcp SRV records (RFC 2782).
//
//	lab, err := callbridgetest.NewLab(callbridgetest.Options{
//		Servers: []callbridgetest.Server{
//			{Name: "xmpp1.example.com", Priority: 10},
//			{Name: "xmpp2.example.com", Priority: 20},
//		},
//	})
//	if err != nil { ... }
//	defer lab.Close()                    // stops the bridge too
//	b, _ := callbridge.New(lab.Config()) // SRV, TLS and the secret all set
//	b.HandleJoin(myHandler)
//	lab.StartBridge(b)                   // b.Run on a goroutine the lab owns
//	st, _ := callbridgetest.WaitState(ctx, b, callbridge.Connected)
//	res, err := lab.Join(ctx, st.Server, &component.JoinRequest{Call: "100"})
//
// Waits end early when nothing can come any more: WaitState and
// WaitStatus as soon as the bridge has stopped, and the Lab's Join,
// StartJoin and WaitLink once the bridges it started have stopped, with
// ErrStopped and the reason. The rest of the Lab (StartJoin, WaitLink,
// Inbox, AnswerIQs, StopServer...) is componenttest.Lab's.
//
// To unit-test a handler without a lab, use componenttest.Recorder.
//
// It imports no testing package, so a program's own demo mode can use it
// too.
package callbridgetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component/componenttest"
)

// Options, Server and SRVMode describe a lab (see componenttest.Lab).
type (
	Options = componenttest.LabOptions
	Server  = componenttest.LabServer
	SRVMode = componenttest.SRVMode
)

// SRV modes.
const (
	SRVRecords = componenttest.SRVRecords // one record per server
	SRVNone    = componenttest.SRVNone    // no SRV record at all (NXDOMAIN)
	SRVDot     = componenttest.SRVDot     // the single target "." (no service)
)

// Lab is a running set-up: XMPP servers, a CA and a DNS server on loopback
// (componenttest.Lab), with what a Call Bridge test needs on top. Close it
// when done.
type Lab struct {
	*componenttest.Lab
	bridges bridges
}

// NewLab starts a lab, as httptest.NewServer starts a server. On error
// everything started is closed.
func NewLab(opts Options) (*Lab, error) {
	l, err := componenttest.NewLab(opts)
	if err != nil {
		return nil, err
	}
	return &Lab{Lab: l}, nil
}

// Config returns a ready callbridge.Config for the lab: the name, domain
// and secret, the lab CA as the only trusted root, the lab's DNS server,
// and short timeouts and backoff suited to tests. Change what the test
// needs.
func (l *Lab) Config() callbridge.Config {
	return callbridge.Config{
		Name:        l.Name,
		Domain:      l.Domain,
		Secret:      l.Secret(),
		RootCAs:     l.Pool(),
		NameServers: []string{l.DNS.Addr()},
		DialTimeout: 2 * time.Second,
		Backoff:     callbridge.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

// WaitState waits until b is in state want and returns the status it saw.
// It fails with ErrStopped as soon as b has stopped in another state
// (Stopped is final), and with ctx's error when ctx ends first.
func WaitState(ctx context.Context, b *callbridge.Bridge, want callbridge.State) (callbridge.Status, error) {
	return WaitStatus(ctx, b, func(st callbridge.Status) bool { return st.State == want })
}

// WaitStatus waits until ok(b.Status()) holds, checking it now and at
// every event (a state change, or a fail-back's move to another server
// while Connected). It fails with ErrStopped as soon as b has stopped and
// ok does not hold for its final status, and with ctx's error when ctx
// ends first.
func WaitStatus(ctx context.Context, b *callbridge.Bridge, ok func(callbridge.Status) bool) (callbridge.Status, error) {
	// Subscribed before the first look: no event after it is missed,
	// including a move that keeps the state (WaitForStateChange, given the
	// state, would sleep through that one).
	events, cancel := b.Subscribe()
	defer cancel()
	for {
		st := b.Status()
		if ok(st) {
			return st, nil
		}
		if st.State == callbridge.Stopped {
			if st.LastErr != nil {
				return st, fmt.Errorf("%w (last error: %w)", ErrStopped, st.LastErr)
			}
			return st, ErrStopped
		}
		select {
		case <-events: // closed once b has stopped: Status then says so
		case <-ctx.Done():
			return st, fmt.Errorf("callbridge: still %s on %q (last error: %v): %w", st.State, st.Server, st.LastErr, ctx.Err())
		}
	}
}

// LoadPKI reads a server certificate and key (PEM) and the CA certificate
// that issued it, for Options.Certificate and Options.CACert: a lab whose
// CA is a file users already have, such as the repository's testdata/pki
// (server.pem, server-key.pem, ca.pem).
func LoadPKI(certFile, keyFile, caFile string) (*tls.Certificate, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("callbridgetest: %w", err)
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("callbridgetest: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("callbridgetest: %s holds no PEM certificate", caFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("callbridgetest: %s: %w", caFile, err)
	}
	return &cert, ca, nil
}
