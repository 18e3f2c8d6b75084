package dnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Transport names used in [Query.Net] and [Server.Count].
const (
	UDP = "udp"
	TCP = "tcp"
)

// Query is one query the server received.
type Query struct {
	Name string // owner name, lowercase, fully qualified (trailing dot)
	Type uint16 // query type, such as dns.TypeSRV
	Net  string // UDP or TCP
}

// String formats q as "name TYPE net".
func (q Query) String() string {
	return q.Name + " " + dns.TypeToString[q.Type] + " " + q.Net
}

type rrKey struct {
	name  string
	qtype uint16
}

// Server is an authoritative DNS server on 127.0.0.1 for tests. Its methods
// are safe for concurrent use, also while it serves queries.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	done      chan struct{} // closed by Close to cut delays short
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	records    map[rrKey][]dns.RR
	faults     map[rrKey]*Fault // qtype dns.TypeNone matches every type
	delay      time.Duration
	additional bool
	queries    []Query
}

// NewServer starts a server on 127.0.0.1 (UDP and TCP on the same ephemeral
// port) and loads the given zone-file texts into it with [Server.AddZone].
// The SRV additional section is on. Call Close when done.
func NewServer(zones ...string) (*Server, error) {
	s := &Server{
		done:       make(chan struct{}),
		records:    make(map[rrKey][]dns.RR),
		faults:     make(map[rrKey]*Fault),
		additional: true,
	}
	for _, z := range zones {
		if err := s.AddZone(z); err != nil {
			return nil, err
		}
	}
	pc, l, err := listen()
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	handler := dns.HandlerFunc(s.serveDNS)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: notify, UDPSize: dns.MaxMsgSize}
	s.tcp = &dns.Server{Listener: l, Handler: handler, NotifyStartedFunc: notify}
	errc := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-errc:
			_ = s.Close()
			return nil, fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return s, nil
}

// listen binds UDP on an ephemeral loopback port, then TCP on the same port,
// trying new ports when the TCP port is taken.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dnstest: listen udp: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		lastErr = err
		pc.Close()
	}
	return nil, nil, fmt.Errorf("dnstest: listen tcp: %w", lastErr)
}

// Addr returns the server's address, "127.0.0.1:port", for both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits until every goroutine it started has
// returned. Pending delayed replies are abandoned. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		var errs []error
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if srv == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := srv.ShutdownContext(ctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		s.wg.Wait()
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("dnstest: close: %w", err)
		}
	})
	return s.closeErr
}

func canonical(name string) string { return dns.CanonicalName(name) }

// Queries returns a copy of the log of queries received, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// Count returns how many queries matched: name "" matches any name, qtype
// dns.TypeNone (0) any type, network "" any transport. Count("", 0, "") is
// the total.
func (s *Server) Count(name string, qtype uint16, network string) int {
	if name != "" {
		name = canonical(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if (name == "" || q.Name == name) && (qtype == dns.TypeNone || q.Type == qtype) && (network == "" || q.Net == network) {
			n++
		}
	}
	return n
}

// ResetQueries clears the query log.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	s.queries = nil
	s.mu.Unlock()
}

// String describes the server for test failure messages.
func (s *Server) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "dnstest.Server(" + s.addr + ", " + strconv.Itoa(len(s.records)) + " rrsets)"
}
