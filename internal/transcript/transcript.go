// Package transcript records the bytes of a component link as a real XMPP
// server sent them, and plays the server's side back to a component, so
// that unit tests parse what Prosody really writes without running
// Prosody.
//
// The integration suite records (a Recorder wraps the TLS connection of a
// link; Save writes testdata/prosody/<name>.json when
// CBLINK_RECORD_TRANSCRIPTS names that folder). The unit tests of
// internal/xstream and component load those files and replay them.
//
// A transcript is a list of turns in the order they happened: what the
// server sent (one Read's bytes each) and what the client sent (one Write's
// bytes each). Replay writes the server's turns and, before each, waits
// until the component has sent as many elements of each kind as it had by
// that point of the recording, so a reply is never played before the
// request it answers. It never compares the client's bytes: a change in
// how cblink writes must not break a test of how it reads.
package transcript

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Transcript is one recorded link.
type Transcript struct {
	// Server names the server and version that sent the bytes, e.g.
	// "Prosody 0.12.4".
	Server string `json:"server"`
	// Scenario says what happened on the link, in a sentence.
	Scenario string `json:"scenario"`
	// Name and Domain are the component's settings on the link.
	Name   string `json:"name"`
	Domain string `json:"domain"`
	// Turns are the bytes each side sent, in order.
	Turns []Turn `json:"turns"`
	// ServerClosed is true when the server closed the connection at the
	// end of the recording (after its last turn).
	ServerClosed bool `json:"server_closed"`
}

// Turn is one chunk of bytes one side sent.
type Turn struct {
	From string `json:"from"` // "server" or "client"
	Data string `json:"data"`
}

// Side names.
const (
	FromServer = "server"
	FromClient = "client"
)

// ServerBytes is everything the server sent, in order.
func (t *Transcript) ServerBytes() []byte {
	var b []byte
	for _, turn := range t.Turns {
		if turn.From == FromServer {
			b = append(b, turn.Data...)
		}
	}
	return b
}

// Load reads a transcript file.
func Load(path string) (*Transcript, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Transcript
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("transcript %s: %w", path, err)
	}
	for i, turn := range t.Turns {
		if turn.From != FromServer && turn.From != FromClient {
			return nil, fmt.Errorf("transcript %s: turn %d: from %q", path, i, turn.From)
		}
	}
	return &t, nil
}

// LoadDir loads every *.json transcript in dir, by file name without the
// extension.
func LoadDir(dir string) (map[string]*Transcript, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	all := make(map[string]*Transcript, len(paths))
	for _, p := range paths {
		t, err := Load(p)
		if err != nil {
			return nil, err
		}
		all[strings.TrimSuffix(filepath.Base(p), ".json")] = t
	}
	return all, nil
}

// Save writes t as indented JSON to path, with '<', '>' and '&' as they
// are (the bytes stay readable).
func (t *Transcript) Save(path string) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(t); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Recorder is a net.Conn that records what passes through it. NetConn
// returns the wrapped connection's own NetConn when it has one (a
// *tls.Conn), so a component closing the raw socket still can.
type Recorder struct {
	net.Conn
	mu     sync.Mutex
	turns  []Turn
	closed bool // a Read returned io.EOF
}

// Record wraps c.
func Record(c net.Conn) *Recorder { return &Recorder{Conn: c} }

func (r *Recorder) add(from string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.turns); n > 0 && r.turns[n-1].From == from && from == FromClient {
		// The client's writes are coalesced per element by its writer;
		// consecutive writes are one turn.
		r.turns[n-1].Data += string(b)
		return
	}
	r.turns = append(r.turns, Turn{From: from, Data: string(b)})
}

func (r *Recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if n > 0 {
		r.add(FromServer, b[:n])
	}
	if errors.Is(err, io.EOF) {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
	}
	return n, err
}

// Write records b before writing it, so that the server's answer to b is
// never recorded ahead of it; what could not be written is taken off again.
func (r *Recorder) Write(b []byte) (int, error) {
	r.add(FromClient, b)
	n, err := r.Conn.Write(b)
	if n < len(b) {
		r.mu.Lock()
		for i := len(r.turns) - 1; i >= 0; i-- {
			if r.turns[i].From == FromClient {
				d := r.turns[i].Data
				r.turns[i].Data = d[:len(d)-(len(b)-n)]
				break
			}
		}
		r.mu.Unlock()
	}
	return n, err
}

// NetConn returns the connection under the wrapped one, or the wrapped one.
func (r *Recorder) NetConn() net.Conn {
	if nc, ok := r.Conn.(interface{ NetConn() net.Conn }); ok {
		return nc.NetConn()
	}
	return r.Conn
}

// handshakeDigest matches the component's handshake element.
var handshakeDigest = regexp.MustCompile(`<handshake>[^<]*</handshake>`)

// Transcript returns what was recorded so far. The component's handshake
// digest is left out (the server's reply does not depend on it when
// replayed, and with the stream id it would allow guessing the secret).
func (r *Recorder) Transcript(server, scenario, name, domain string) *Transcript {
	r.mu.Lock()
	defer r.mu.Unlock()
	turns := slices.Clone(r.turns)
	for i := range turns {
		if turns[i].From == FromClient {
			turns[i].Data = handshakeDigest.ReplaceAllString(turns[i].Data, "<handshake>(digest not recorded)</handshake>")
		}
	}
	return &Transcript{
		Server: server, Scenario: scenario, Name: name, Domain: domain,
		Turns: turns, ServerClosed: r.closed,
	}
}

// eachTag calls f with the kind of each tag in b, in order, and whether it
// is at the top level of the stream (a stanza, the handshake, the stream's
// own tags) rather than inside an element. A kind is the text from '<' up
// to the first space, '>' or '/' after the name: "<stream:stream",
// "<handshake", "<iq", "<joined", …, "</stream:stream". The XML
// declaration is not a tag here: a component may or may not send one. A
// tag cut at the end of b is left for when the rest arrives.
func eachTag(b []byte, f func(kind string, top bool)) {
	depth := 0
	for i := 0; i < len(b); i++ {
		if b[i] != '<' {
			continue
		}
		j := i + 1
		closing := j < len(b) && b[j] == '/'
		if closing {
			j++
		}
		for j < len(b) && !strings.ContainsRune(" \t\r\n>/?", rune(b[j])) {
			j++
		}
		// The tag's end, past quoted attribute values.
		k, quote := j, byte(0)
		for ; k < len(b); k++ {
			switch c := b[k]; {
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '\'' || c == '"':
				quote = c
			}
			if quote == 0 && b[k] == '>' {
				break
			}
		}
		if k == len(b) {
			return
		}
		kind := string(b[i:j])
		stream := kind == "<stream:stream" || kind == "</stream:stream"
		switch {
		case b[i+1] == '?':
		case closing:
			if !stream {
				depth--
			}
			f(kind, depth == 0)
		default:
			f(kind, depth == 0)
			if !stream && b[k-1] != '/' {
				depth++
			}
		}
		i = k
	}
}

// marks counts the top-level tags in b by kind.
func marks(b []byte, into map[string]int) {
	eachTag(b, func(k string, top bool) {
		if top {
			into[k]++
		}
	})
}

// ServerShape lists the kinds of the tags the server sent, in order: what
// stays the same when a server is recorded again (ids, timestamps and
// chunking change).
func (t *Transcript) ServerShape() []string {
	var shape []string
	eachTag(t.ServerBytes(), func(k string, _ bool) { shape = append(shape, k) })
	return shape
}

// Replay plays the server's side of t on conn: for each server turn it
// waits until the component has sent at least the elements it had sent at
// that point of the recording, then writes the turn. Everything the
// component sends is read and returned. At the end it closes conn when
// the server did; otherwise it keeps reading until the component closes
// or ctx ends. Replay returns when conn is done with, and the error says
// why the replay could not play every turn (nil when it did).
func Replay(ctx context.Context, conn net.Conn, t *Transcript) (sent []byte, err error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var (
		mu      sync.Mutex
		got     []byte
		counts  = map[string]int{}
		changed = make(chan struct{}, 1)
		readEnd = make(chan error, 1)
	)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				mu.Lock()
				got = append(got, buf[:n]...)
				clear(counts)
				marks(got, counts)
				mu.Unlock()
				select {
				case changed <- struct{}{}:
				default:
				}
			}
			if err != nil {
				readEnd <- err
				close(changed)
				return
			}
		}
	}()
	sentSoFar := func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}

	want := map[string]int{}
	for i, turn := range t.Turns {
		if turn.From == FromClient {
			marks([]byte(turn.Data), want)
			continue
		}
		for !covers(&mu, counts, want) {
			if _, ok := <-changed; !ok {
				readErr := <-readEnd
				_ = conn.Close()
				return sentSoFar(), fmt.Errorf("transcript: before server turn %d the component stopped sending (%v); it sent %s, the recording %s", i, readErr, describe(&mu, counts), describeMap(want))
			}
		}
		if _, err := conn.Write([]byte(turn.Data)); err != nil {
			_ = conn.Close()
			<-readEnd
			return sentSoFar(), fmt.Errorf("transcript: server turn %d: %w", i, err)
		}
	}
	if t.ServerClosed {
		_ = conn.Close()
	}
	<-readEnd
	_ = conn.Close()
	if ctx.Err() != nil {
		return sentSoFar(), ctx.Err()
	}
	return sentSoFar(), nil
}

func covers(mu *sync.Mutex, have, want map[string]int) bool {
	mu.Lock()
	defer mu.Unlock()
	for k, n := range want {
		if have[k] < n {
			return false
		}
	}
	return true
}

func describe(mu *sync.Mutex, m map[string]int) string {
	mu.Lock()
	defer mu.Unlock()
	return describeMap(m)
}

func describeMap(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteByte('[')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d×%s", m[k], k)
	}
	b.WriteByte(']')
	return b.String()
}
