package component

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The reader writes its replies itself when the writer is idle (see
// flushBeforeRead). These tests hold the rules of docs/lifecycle.md while
// such a write is blocked on a server that stopped reading: the peer is a
// net.Pipe, so a write blocks until the peer reads.

// pingNoRead starts a session whose peer sends a ping and then stops
// reading, and returns once the pong's write is in progress (answered,
// and taken from the queue: the reader, or the writer, is blocked in it).
func pingNoRead(t *testing.T, cfg Config) (*Session, *peer) {
	t.Helper()
	c, p := newPeer(t)
	go p.accept()
	s, err := NewSession(context.Background(), c, cfg)
	require.NoError(t, err)
	t.Cleanup(s.Abort)
	p.write(`<iq type='get' id='p1' from='example.com' to='cb1.example.com'><ping xmlns='urn:xmpp:ping'/></iq>`)
	require.Eventually(t, func() bool { return s.Stats().PingsAnswered == 1 && s.w.Pending() == 0 },
		10*time.Second, time.Millisecond, "the pong's write never started")
	return s, p
}

// TestPingTimesOutWhileReplyWriteBlocked: a write of the reader's replies
// blocked on a server that stopped reading does not stop the ping timeout
// from ending the link; the write timeout (an hour) is not what ends it.
func TestPingTimesOutWhileReplyWriteBlocked(t *testing.T) {
	cfg := testConfig(nil)
	cfg.WriteTimeout = time.Hour
	cfg.PingInterval = 200 * time.Millisecond
	cfg.PingTimeout = 100 * time.Millisecond
	cfg.ReadTimeout = -1
	s, _ := pingNoRead(t, cfg)
	err := waitDoneWithin(t, s, 10*time.Second)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Contains(t, err.Error(), "ping")
}

// TestCloseBoundedWhileReplyWriteBlocked: Close returns after about
// CloseTimeout while a write of the reader's replies is blocked on a
// server that does not read.
func TestCloseBoundedWhileReplyWriteBlocked(t *testing.T) {
	cfg := testConfig(nil)
	cfg.WriteTimeout = time.Hour
	cfg.CloseTimeout = 100 * time.Millisecond
	s, _ := pingNoRead(t, cfg)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a write of the reader's blocked on a server that does not read")
	}
}

// TestReplyWriteThenClosingTag: a reply the reader is writing when Close
// starts leaves before </stream:stream>, and the close is clean once the
// server reads again.
func TestReplyWriteThenClosingTag(t *testing.T) {
	cfg := testConfig(nil)
	cfg.WriteTimeout = time.Hour
	cfg.CloseTimeout = 5 * time.Second
	s, p := pingNoRead(t, cfg)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	out := readAllUntil(p, closed) // the server reads again
	pong := strings.Index(out, "id='p1'")
	end := strings.Index(out, "</stream:stream>")
	require.True(t, end >= 0, "the stream was not closed cleanly")
	assert.True(t, pong >= 0 && pong < end, "the pong did not leave before the closing tag: %q", out)
	assert.Equal(t, len(out)-len("</stream:stream>"), end, "something followed the closing tag")
	assert.ErrorIs(t, s.Err(), ErrClosed, "the link ended for another reason")
}
