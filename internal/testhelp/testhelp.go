// Package testhelp holds small helpers that the tests of several packages
// share. Only _test files import it.
package testhelp

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer that a logger or a connection may write while
// a test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Listen serves every connection to a new loopback listener with serve,
// each on its own goroutine, and returns the listener's address. When the
// test ends the listener is closed and its goroutines are waited for
// (serve must return once its connection is closed; it is closed after).
func Listen(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); serve(c) })
		}
	})
	return ln.Addr().String()
}

// Busy calls f in a loop on a goroutine of its own until the returned stop
// is called; stop waits for it. Tests use it to keep a link busy while
// they read it from outside.
func Busy(f func()) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
				f()
			}
		}
	}()
	return func() { close(quit); <-done }
}

// Recv receives from ch within 10 s: a test that goes wrong fails instead
// of hanging.
func Recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived within 10 s")
		panic("unreachable")
	}
}
