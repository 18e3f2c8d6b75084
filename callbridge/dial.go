package callbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// attemptDelay is RFC 8305's recommended Connection Attempt Delay: how long
// one TCP attempt has to succeed before the next address is tried in
// parallel.
const attemptDelay = 250 * time.Millisecond

// dialFunc is net.Dialer.DialContext's signature; tests replace it.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// dialResult is the outcome of one connection attempt.
type dialResult struct {
	conn net.Conn
	addr netip.AddrPort
	err  error
}

// raceDial connects to the first of addrs that answers, RFC 8305 style: the
// addresses are tried in the given order (discovery interleaves the
// families), a new attempt starting every delay or as soon as the previous
// one failed, all attempts running at once until one succeeds. The losers
// are cancelled and closed. It returns every attempt's error when all fail.
//
// A single address is dialled on the caller's goroutine: there is nothing
// to race, and the connection is then in the caller's hands as soon as it
// is up, without a goroutine hand-off before the TLS ClientHello.
func raceDial(ctx context.Context, dial dialFunc, addrs []netip.AddrPort, delay time.Duration) (net.Conn, netip.AddrPort, error) {
	switch len(addrs) {
	case 0:
		return nil, netip.AddrPort{}, errors.New("no addresses to dial")
	case 1:
		c, err := dialOne(ctx, dial, addrs[0])
		if err != nil {
			return nil, netip.AddrPort{}, errors.Join(fmt.Errorf("%s: %w", addrs[0], err))
		}
		return c, addrs[0], nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan dialResult, len(addrs))
	started := 0
	start := func() {
		a := addrs[started]
		started++
		go func() {
			c, err := dialOne(ctx, dial, a)
			results <- dialResult{conn: c, addr: a, err: err}
		}()
	}
	start()
	timer := time.NewTimer(delay)
	defer timer.Stop()

	var errs []error
	var won *dialResult
	for finished := 0; finished < started; {
		select {
		case <-timer.C:
			if started < len(addrs) && won == nil {
				start()
				timer.Reset(delay)
			}
			continue
		case r := <-results:
			finished++
			switch {
			case r.err == nil && won == nil:
				won = &r
				cancel() // stop the others; drain them below
			case r.err == nil:
				r.conn.Close()
			default:
				if won == nil {
					errs = append(errs, fmt.Errorf("%s: %w", r.addr, r.err))
					if started < len(addrs) {
						start()
						timer.Reset(delay)
					}
				}
			}
		}
	}
	if won != nil {
		return won.conn, won.addr, nil
	}
	if err := ctx.Err(); err != nil && len(errs) == 0 {
		return nil, netip.AddrPort{}, err
	}
	return nil, netip.AddrPort{}, errors.Join(errs...)
}

// dialOne dials a with dial, holding the Dialer to its contract: exactly
// one of the connection and the error. Neither is a *ContractError; both
// close the connection and keep the error.
func dialOne(ctx context.Context, dial dialFunc, a netip.AddrPort) (net.Conn, error) {
	c, err := dial(ctx, "tcp", a.String())
	switch {
	case err != nil && c != nil:
		c.Close()
		return nil, err
	case err == nil && c == nil:
		return nil, &ContractError{Field: "Dialer", What: "returned no connection and no error"}
	}
	return c, err
}
