package xstream

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/transcript"
)

// TestProsodyTranscripts decodes what a real Prosody sent on each recorded
// component link (testdata/prosody, recorded by the integration suite),
// whole and one byte at a time: the header, each top-level element, stream
// errors with their condition and text, and how the stream ended.
func TestProsodyTranscripts(t *testing.T) {
	all, err := transcript.LoadDir("../../testdata/prosody")
	require.NoError(t, err)

	type streamErr struct{ condition, text string }
	tests := map[string]struct {
		from     string // the header's from
		noID     bool   // the header has an empty id
		elements []string
		errors   []streamErr // the stream errors among elements, in order
		end      error       // what Next returns after the last element
	}{
		"join": {
			from:     "cb1.example.com",
			elements: []string{"handshake", "iq", "iq", "message"},
			end:      ErrStreamEnd,
		},
		"not-authorized": {
			from:     "cb1.example.com",
			elements: []string{"stream:error"},
			errors:   []streamErr{{"not-authorized", "Given token does not match calculated token"}},
			end:      ErrStreamEnd,
		},
		"host-unknown": {
			noID:     true,
			elements: []string{"stream:error"},
			errors:   []streamErr{{"host-unknown", "cb9.example.com does not match any configured external components"}},
			end:      ErrStreamEnd,
		},
		"conflict": {
			from:     "cb1.example.com",
			elements: []string{"stream:error"},
			errors:   []streamErr{{"conflict", "Component already connected"}},
			end:      ErrStreamEnd,
		},
		"stop": {
			from:     "cb1.example.com",
			elements: []string{"handshake"},
			end:      io.ErrUnexpectedEOF, // Prosody closes the connection without a word
		},
	}
	var names []string
	for name := range all {
		names = append(names, name)
	}
	slices.Sort(names)
	for name := range tests {
		assert.Contains(t, names, name, "testdata/prosody/%s.json is missing", name)
	}
	for _, name := range names {
		tr := all[name]
		tc, ok := tests[name]
		if !assert.True(t, ok, "testdata/prosody/%s.json has no expectations here", name) {
			continue
		}
		for _, mode := range []string{"whole", "one byte at a time"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				var r io.Reader = bytes.NewReader(tr.ServerBytes())
				if mode != "whole" {
					r = iotest.OneByteReader(r)
				}
				d := NewDecoder(r, 0, 0)
				h, err := d.ReadHeader()
				require.NoError(t, err)
				assert.Equal(t, NSComponent, h.NS)
				assert.Equal(t, tc.from, h.From)
				assert.Equal(t, tc.noID, h.ID == "", "id %q", h.ID)

				var got []string
				var errs []streamErr
				for {
					el, err := d.Next()
					if err != nil {
						assert.True(t, errors.Is(err, tc.end), "the stream ended with %v, want %v", err, tc.end)
						break
					}
					if el.Keepalive {
						continue
					}
					got = append(got, string(el.Name()))
					if string(el.Name()) == "stream:error" {
						se, err := ParseStreamError(el.Raw)
						require.NoError(t, err)
						var text string
						if len(se.Text) > 0 {
							text = se.Text[0].Value
						}
						errs = append(errs, streamErr{se.Err, text})
					}
				}
				assert.Equal(t, tc.elements, got)
				assert.Equal(t, tc.errors, errs)
				assert.Equal(t, tr.ServerShape(), shapeOf(t, tr), "ServerShape lists the tags in order")
			})
		}
	}
}

// shapeOf lists the tag kinds of the server's bytes with encoding-agnostic
// means (a plain scan for '<'), to check ServerShape independently.
func shapeOf(t *testing.T, tr *transcript.Transcript) []string {
	t.Helper()
	var shape []string
	for _, part := range strings.Split(string(tr.ServerBytes()), "<")[1:] {
		if strings.HasPrefix(part, "?") {
			continue
		}
		end := strings.IndexAny(part, " />")
		if strings.HasPrefix(part, "/") {
			end = 1 + strings.IndexAny(part[1:], " />")
		}
		shape = append(shape, "<"+part[:end])
	}
	return shape
}
