package callbridgetest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cblink/cblink/callbridge"
	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/component/componenttest"
)

// ErrStopped is returned (wrapped, with the reason) by WaitState and
// WaitStatus when the bridge has stopped without reaching what they wait
// for, and by the Lab's Join, StartJoin and WaitLink once every bridge the
// lab started has stopped: nothing they wait for can happen any more.
var ErrStopped = errors.New("callbridgetest: bridge stopped")

// bridges are the bridges a Lab runs.
type bridges struct {
	mu      sync.Mutex
	closed  bool
	list    []*callbridge.Bridge
	wg      sync.WaitGroup // their Run goroutines
	running int
	stopped chan struct{} // closed when running drops to 0; nil before any start
	cause   error         // why, set before stopped is closed
}

// StartBridge runs b (built from Config, its handlers registered) on a
// goroutine of the lab and returns at once, as httptest.NewServer serves a
// handler: the lab owns that run. Close closes b and waits for its Run to
// return before it stops the servers. The channel returned receives what
// Run returned. After Close, StartBridge closes b and Run returns at once.
//
// Once every bridge the lab started has stopped (Run returned: Close,
// Shutdown, StopOnPermanentError...), Join, StartJoin and WaitLink fail at
// once with ErrStopped and Run's error instead of waiting for a link until
// their ctx ends. A bridge the test runs itself is not watched.
func (l *Lab) StartBridge(b *callbridge.Bridge) <-chan error {
	r := &l.bridges
	errc := make(chan error, 1)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = b.Close()
		errc <- b.Run(context.Background()) // returns at once once closed
		return errc
	}
	r.list = append(r.list, b)
	if r.running == 0 {
		r.stopped = make(chan struct{})
	}
	r.running++
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		err := b.Run(context.Background())
		r.mu.Lock()
		r.running--
		if r.running == 0 {
			r.cause = fmt.Errorf("%w (Run: %w)", ErrStopped, err)
			close(r.stopped)
		}
		r.mu.Unlock()
		errc <- err
	}()
	return errc
}

// Close closes the bridges the lab started and waits for their Run to
// return, then stops every server and waits for their goroutines. It is
// idempotent.
func (l *Lab) Close() {
	l.bridges.mu.Lock()
	list := l.bridges.list
	l.bridges.list, l.bridges.closed = nil, true
	l.bridges.mu.Unlock()
	for _, b := range list {
		_ = b.Close()
	}
	l.bridges.wg.Wait()
	l.Lab.Close()
}

// stoppedErr returns ErrStopped with its reason when every bridge the lab
// started has stopped.
func (r *bridges) stoppedErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped != nil && r.running == 0 {
		return r.cause
	}
	return nil
}

// watch runs f with a ctx that also ends when every bridge the lab started
// stops, and returns ErrStopped then rather than the ctx's error.
func (r *bridges) watch(ctx context.Context, f func(ctx context.Context) error) error {
	if err := r.stoppedErr(); err != nil {
		return err
	}
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if stopped == nil {
		return f(ctx)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-stopped:
			cancel()
		case <-done:
		}
	})
	err := f(fctx)
	close(done)
	wg.Wait()
	if err != nil && ctx.Err() == nil && fctx.Err() != nil {
		if serr := r.stoppedErr(); serr != nil {
			return serr
		}
	}
	return err
}

// Join is componenttest.Lab.Join, failing at once with ErrStopped when
// every bridge the lab started (StartBridge) has stopped.
func (l *Lab) Join(ctx context.Context, server string, req *component.JoinRequest) (*component.JoinResult, error) {
	var res *component.JoinResult
	err := l.bridges.watch(ctx, func(ctx context.Context) (err error) {
		res, err = l.Lab.Join(ctx, server, req)
		return err
	})
	return res, err
}

// StartJoin is componenttest.Lab.StartJoin, failing at once with
// ErrStopped when every bridge the lab started has stopped.
func (l *Lab) StartJoin(ctx context.Context, server string, req *component.JoinRequest) (*componenttest.PendingJoin, error) {
	var p *componenttest.PendingJoin
	err := l.bridges.watch(ctx, func(ctx context.Context) (err error) {
		p, err = l.Lab.StartJoin(ctx, server, req)
		return err
	})
	return p, err
}

// WaitLink is componenttest.Lab.WaitLink, failing at once with ErrStopped
// when every bridge the lab started has stopped.
func (l *Lab) WaitLink(ctx context.Context, old *componenttest.Conn) (componenttest.Link, error) {
	var link componenttest.Link
	err := l.bridges.watch(ctx, func(ctx context.Context) (err error) {
		link, err = l.Lab.WaitLink(ctx, old)
		return err
	})
	return link, err
}
