package transcript

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMarksCountTopLevelOnly(t *testing.T) {
	got := map[string]int{}
	marks([]byte(`<?xml version='1.0'?><stream:stream to='a'><handshake>x</handshake>`+
		`<iq id='1' note='a>b' type='result'><joined session="s/1"/></iq>`+
		`<iq id='2'/><message><body>&lt;x&gt;</body></message></stream:stream><iq id='cut`), got)
	assert.Equal(t, map[string]int{
		"<stream:stream": 1, "<handshake": 1, "</handshake": 1,
		"<iq": 2, "</iq": 1, "<message": 1, "</message": 1, "</stream:stream": 1,
	}, got, "nested tags, the declaration and a cut tag are not counted; '>' in quotes is not a tag end")
}

func TestServerShape(t *testing.T) {
	tr := &Transcript{Turns: []Turn{
		{From: FromClient, Data: "<stream:stream>"},
		{From: FromServer, Data: "<?xml version='1.0'?><stream:stream id='x'>"},
		{From: FromServer, Data: "<stream:error><conflict/><text>t</text></stream:error>"},
	}}
	assert.Equal(t, []string{"<stream:stream", "<stream:error", "<conflict", "<text", "</text", "</stream:error"}, tr.ServerShape())
}

// TestRecordSaveLoadReplay records a scripted exchange, saves and loads it,
// and replays the server's side to a client that speaks only when spoken
// to: each server turn must wait for the client's element before it.
func TestRecordSaveLoadReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Record: a server that answers each client element.
	c, s := net.Pipe()
	rec := Record(c)
	go func() {
		defer s.Close()
		buf := make([]byte, 512)
		for _, answer := range []string{"<stream:stream id='1'>", "<handshake/>", "</stream:stream>"} {
			if _, err := s.Read(buf); err != nil {
				return
			}
			if _, err := s.Write([]byte(answer)); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 512)
	for _, say := range []string{"<stream:stream to='cb1'>", "<handshake>secret-digest</handshake>", "</stream:stream>"} {
		_, err := rec.Write([]byte(say))
		require.NoError(t, err)
		_, err = rec.Read(buf)
		require.NoError(t, err)
	}
	_, err := rec.Read(buf)
	require.ErrorIs(t, err, io.EOF)
	tr := rec.Transcript("test", "scripted", "cb1", "example.com")
	assert.True(t, tr.ServerClosed)
	assert.Equal(t, "<handshake>(digest not recorded)</handshake>", tr.Turns[2].Data)

	path := filepath.Join(t.TempDir(), "t.json")
	require.NoError(t, tr.Save(path))
	loaded, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, tr, loaded)

	// Replay to a client that checks it is never answered early.
	c2, s2 := net.Pipe()
	done := make(chan error, 1)
	var sent []byte
	go func() {
		var err error
		sent, err = Replay(ctx, s2, loaded)
		done <- err
	}()
	for i, say := range []string{"<stream:stream to='cb1'>", "<handshake>other</handshake>", "</stream:stream>"} {
		require.NoError(t, c2.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, err := c2.Read(buf)
		require.Error(t, err, "turn %d was played before the client spoke", i)
		require.NoError(t, c2.SetReadDeadline(time.Time{}))
		_, err = c2.Write([]byte(say))
		require.NoError(t, err)
		n, err := c2.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, loaded.Turns[2*i+1].Data, string(buf[:n]))
	}
	_, err = c2.Read(buf)
	require.ErrorIs(t, err, io.EOF, "the server closed, as recorded")
	require.NoError(t, <-done)
	assert.True(t, bytes.HasPrefix(sent, []byte("<stream:stream to='cb1'>")))
}

func TestReplayReportsSilentComponent(t *testing.T) {
	tr := &Transcript{Turns: []Turn{
		{From: FromClient, Data: "<stream:stream>"},
		{From: FromServer, Data: "<stream:stream id='1'>"},
	}}
	c, s := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Replay(context.Background(), s, tr)
		done <- err
	}()
	c.Close()
	err := <-done
	require.Error(t, err)
	assert.Contains(t, err.Error(), "before server turn 1 the component stopped sending")
}
