package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
)

// followCNAMEs asks for (name, qtype) and follows a CNAME chain that the
// answers leave unfinished.
func (r *Resolver) followCNAMEs(ctx context.Context, name string, qtype uint16, tr *tracer) (*rrset, error) {
	cur := name
	ttl := forever
	seen := map[string]bool{name: true}
	for {
		set, err := r.askServers(ctx, cur, qtype, tr)
		if err != nil {
			return nil, err
		}
		ttl = min(ttl, set.ttl)
		if set.negative || len(set.records) > 0 {
			set.ttl = ttl
			return set, nil
		}
		cur = set.final
		if seen[cur] || len(seen) > maxCNAMEs {
			return nil, &Error{Op: "lookup " + dns.TypeToString[qtype], Name: name, Kind: KindCNAMELoop,
				Err: fmt.Errorf("CNAME chain loops or exceeds %d names at %s", maxCNAMEs, cur)}
		}
		seen[cur] = true
	}
}

// askServers sends one question to the name servers in turn, Attempts
// rounds, and returns the first usable processed reply.
func (r *Resolver) askServers(ctx context.Context, name string, qtype uint16, tr *tracer) (*rrset, error) {
	conf := r.config()
	if conf.err != nil {
		return nil, conf.err
	}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(udpSize, false)
	op := "lookup " + dns.TypeToString[qtype]
	var last *Error
	for range conf.attempts {
		for _, server := range conf.servers {
			if err := ctx.Err(); err != nil {
				return nil, ctxError(op, name, err)
			}
			set, err := r.askOneServer(ctx, server, q, conf.timeout, tr)
			if err == nil {
				return set, nil
			}
			var e *Error
			if !errors.As(err, &e) {
				return nil, err
			}
			switch e.Kind {
			case KindCanceled, KindTooLarge, KindCNAMELoop:
				// The context ended, or the data itself is bad: another
				// server or round would give the same.
				return nil, e
			}
			last = e
		}
	}
	return nil, last
}

// askOneServer queries one server over UDP, retrying over TCP when the reply
// is truncated, and processes the reply (rrsetFromReply). Every exchange is
// traced.
func (r *Resolver) askOneServer(ctx context.Context, server string, q *dns.Msg, timeout time.Duration, tr *tracer) (*rrset, error) {
	name, qtype := q.Question[0].Name, q.Question[0].Qtype
	op := "lookup " + dns.TypeToString[qtype]
	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		resp, err := exchangeOnce(ctx, network, server, q, timeout)
		te := TraceEntry{Name: name, Type: dns.TypeToString[qtype], Server: server, Net: network,
			Duration: time.Since(start), Source: SourceNetwork}
		if err != nil {
			kind := KindNetwork
			var ne net.Error
			if cerr := ctxDone(ctx); cerr != nil {
				te.Err = cerr
				tr.add(te)
				return nil, ctxError(op, name, cerr)
			}
			switch {
			case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
				kind = KindTimeout
			case resp != nil:
				// A reply arrived but does not unpack.
				if network == "udp" && resp.Truncated {
					te.Note = "truncated reply does not parse; retrying over TCP"
					te.Err = err
					tr.add(te)
					continue
				}
				kind = KindMalformed
			}
			te.Err = err
			tr.add(te)
			return nil, &Error{Op: op, Name: name, Server: server, Kind: kind, Err: err}
		}
		te.Rcode = dns.RcodeToString[resp.Rcode]
		te.Answers = presentation(resp.Answer, r.maxRecords())
		if resp.Truncated {
			if network == "udp" {
				te.Note = "truncated; retrying over TCP"
				tr.add(te)
				continue
			}
			e := &Error{Op: op, Name: name, Server: server, Kind: KindTruncated, Err: errors.New("reply truncated over TCP")}
			te.Err = e.Err
			tr.add(te)
			return nil, e
		}
		set, perr := r.rrsetFromReply(resp, name, qtype)
		if perr != nil {
			perr.Op, perr.Server = op, server
			te.Err = perr.Err
			tr.add(te)
			return nil, perr
		}
		tr.add(te)
		return set, nil
	}
	return nil, &Error{Op: op, Name: name, Server: server, Kind: KindTruncated}
}

// exchangeOnce sends q to server over network and reads the reply, within
// timeout. miekg/dns honours ctx's cancellation only while dialling; the
// write and read obey only its deadline. So the connection is closed as soon
// as ctx ends: the read in flight then fails at once, and the caller sees
// ctx's error through ctxDone. No goroutine started here outlives the call.
func exchangeOnce(ctx context.Context, network, server string, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: network, UDPSize: udpSize, Timeout: timeout}
	conn, err := c.DialContext(actx, server)
	if err != nil {
		return nil, err
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.Close()
		close(closed)
	})
	resp, _, err := c.ExchangeWithConnContext(actx, q, conn)
	if stop() {
		conn.Close()
	} else {
		<-closed // ctx ended: wait until the AfterFunc has closed conn
	}
	return resp, err
}

// ctxDone is ctx.Err(), also when the deadline has passed but the context's
// timer has not fired yet (a read that timed out at the deadline).
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
