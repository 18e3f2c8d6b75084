package handloop

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// TestServePings: every ping gets its result, however the reads split
// the stream.
func TestServePings(t *testing.T) {
	c, srv := net.Pipe()
	const n = 5000
	var all []byte
	for i := range n {
		all = fmt.Appendf(all, "<iq type='get' id='p%d' from='example.com' to='cb1.example.com'><ping xmlns='urn:xmpp:ping'/></iq>", i)
		if i%7 == 0 {
			all = append(all, ' ')
		}
	}
	done := make(chan error, 1)
	// The first bytes came with <handshake/>.
	go func() { done <- ServePings(c, "cb1.example.com", bytes.Clone(all[:150])) }()
	go func() {
		rest := all[150:]
		for len(rest) > 0 {
			k := min(len(rest), 1+rand.IntN(300))
			if _, err := srv.Write(rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
		}
	}()
	var got []byte
	buf := make([]byte, 4096)
	for bytes.Count(got, []byte("/>")) < n {
		k, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:k]...)
	}
	for _, i := range []int{0, 1, n / 2, n - 1} {
		want := fmt.Sprintf("<iq type='result' id='p%d' from='cb1.example.com' to='example.com'/>", i)
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("no reply %s", want)
		}
	}
	srv.Close()
	if err := <-done; err != io.EOF && err != io.ErrClosedPipe {
		t.Errorf("ServePings: %v", err)
	}
}
