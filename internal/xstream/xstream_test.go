package xstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"mellium.im/xmpp/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const serverHeader = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='cb1.example.com' id='3BF96D32'>"

// readAll returns the names of all elements until the stream ends.
func readAll(t *testing.T, d *Decoder) ([]string, int) {
	t.Helper()
	var names []string
	keepalives := 0
	for {
		el, err := d.Next()
		if errors.Is(err, ErrStreamEnd) {
			return names, keepalives
		}
		require.NoError(t, err)
		if el.Keepalive {
			keepalives++
			continue
		}
		names = append(names, string(el.Raw))
	}
}

func TestDecoderFraming(t *testing.T) {
	in := "<?xml version='1.0'?>\n\n  " + serverHeader + "\n" +
		"<handshake/> \n" +
		"<iq type='get' id='a&amp;b' to='cb1.example.com' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>" +
		`<message to="x" note='a>b "q"'><body>1 &lt; 2 <![CDATA[<not><a><tag>]]></body><x:y xmlns:x='u'><x:z/></x:y></message>` +
		"</stream:stream>"
	want := []string{
		"<handshake/>",
		"<iq type='get' id='a&amp;b' to='cb1.example.com' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
		`<message to="x" note='a>b "q"'><body>1 &lt; 2 <![CDATA[<not><a><tag>]]></body><x:y xmlns:x='u'><x:z/></x:y></message>`,
	}
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
		"half":     iotest.HalfReader(strings.NewReader(in)),
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder(r, 0, 0)
			h, err := d.ReadHeader()
			require.NoError(t, err)
			assert.Equal(t, "3BF96D32", h.ID)
			assert.Equal(t, "cb1.example.com", h.From)
			got, _ := readAll(t, d)
			assert.Equal(t, want, got)
		})
	}
}

func TestDecoderKeepalive(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	d := NewDecoder(c2, 0, 0)
	go func() {
		c1.Write([]byte(serverHeader))
		c1.Write([]byte(" "))
		c1.Write([]byte("<a/>"))
	}()
	_, err := d.ReadHeader()
	require.NoError(t, err)
	el, err := d.Next()
	require.NoError(t, err)
	assert.True(t, el.Keepalive, "a lone space must be reported before more data arrives")
	el, err = d.Next()
	require.NoError(t, err)
	assert.Equal(t, "<a/>", string(el.Raw))
}

func TestElementAccessors(t *testing.T) {
	d := NewDecoder(strings.NewReader(serverHeader+
		`<iq type="set" id='j&lt;1' from='u@example.com/web' to='cb1.example.com'>`+
		`<![CDATA[x]]><join xmlns='urn:cblink:join:0' call='42'/></iq><presence/>`), 0, 0)
	_, err := d.ReadHeader()
	require.NoError(t, err)
	el, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, "iq", string(el.Name()))
	assert.Equal(t, "iq", string(el.Local()))
	assert.Equal(t, "set", el.AttrString("type"))
	assert.Equal(t, "j<1", el.AttrString("id"))
	assert.Equal(t, "u@example.com/web", el.AttrString("from"))
	_, ok := el.Attr("missing")
	assert.False(t, ok)
	name, ns, ok := el.FirstChild()
	require.True(t, ok)
	assert.Equal(t, "join", string(name))
	assert.Equal(t, "urn:cblink:join:0", string(ns))
	assert.False(t, el.SelfClosing())

	el, err = d.Next()
	require.NoError(t, err)
	assert.True(t, el.SelfClosing())
	_, _, ok = el.FirstChild()
	assert.False(t, ok)
}

func TestDecoderRejects(t *testing.T) {
	cases := []struct {
		name       string
		body       string
		max, depth int
		want       error
		restricted bool
	}{
		{name: "mismatched end tag", body: "<a><b></a></b>"},
		{name: "comment", body: "<a><!-- x --></a>", restricted: true},
		{name: "top-level comment", body: "<!-- x -->", restricted: true},
		{name: "processing instruction", body: "<a><?pi x?></a>", restricted: true},
		{name: "DTD", body: "<!DOCTYPE x>", restricted: true},
		{name: "text at top level", body: "hello"},
		{name: "lt in attribute", body: "<a b='<'/>"},
		{name: "too large", body: "<a>" + strings.Repeat("x", 2000) + "</a>", max: 1024, want: ErrTooLarge},
		{name: "too large unterminated", body: "<a>" + strings.Repeat("x", 100000), max: 1024, want: ErrTooLarge},
		{name: "too deep", body: strings.Repeat("<a>", 10) + strings.Repeat("</a>", 10), depth: 5, want: ErrTooDeep},
		{name: "truncated", body: "<a><b>", want: io.ErrUnexpectedEOF},
		{name: "bad name start", body: "<1a/>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(strings.NewReader(serverHeader+tc.body), tc.max, tc.depth)
			_, err := d.ReadHeader()
			require.NoError(t, err)
			_, err = d.Next()
			require.Error(t, err)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
				return
			}
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.restricted, se.Restricted)
		})
	}
}

func TestDecoderBoundedMemory(t *testing.T) {
	// An endless element must fail without the buffer growing past the bound.
	r := io.MultiReader(strings.NewReader(serverHeader+"<a>"), infinite('x'))
	d := NewDecoder(r, 8192, 0)
	_, err := d.ReadHeader()
	require.NoError(t, err)
	_, err = d.Next()
	require.ErrorIs(t, err, ErrTooLarge)
	assert.LessOrEqual(t, cap(d.buf), 8192+minBuf)
}

type infinite byte

func (c infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

func TestReadHeader(t *testing.T) {
	cases := []struct {
		name string
		in   string
		cond string // expected HeaderError condition, "" for success
		syn  bool   // expect a SyntaxError
	}{
		{name: "plain", in: serverHeader},
		{name: "decl and newlines", in: "<?xml version='1.0' encoding='UTF-8'?>\r\n\n" + serverHeader},
		{name: "double quotes and other prefix", in: `<s:stream xmlns="jabber:component:accept" xmlns:s="http://etherx.jabber.org/streams" id="x">`},
		{name: "wrong default ns", in: "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x'>", cond: "invalid-namespace"},
		{name: "wrong stream ns", in: "<stream:stream xmlns='jabber:component:accept' xmlns:stream='urn:other' id='x'>", cond: "invalid-namespace"},
		{name: "unbound prefix", in: "<stream:stream xmlns='jabber:component:accept' id='x'>", cond: "bad-namespace-prefix"},
		{name: "not a stream", in: "<foo xmlns='jabber:component:accept'>", cond: "bad-format"},
		{name: "self closing", in: "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'/>", syn: true},
		{name: "other PI", in: "<?php x?>" + serverHeader, syn: true},
		{name: "junk", in: "HTTP/1.1 400 Bad Request\r\n", syn: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(iotest.OneByteReader(strings.NewReader(tc.in)), 0, 0)
			h, err := d.ReadHeader()
			switch {
			case tc.syn:
				var se *SyntaxError
				assert.ErrorAs(t, err, &se)
			case tc.cond != "":
				var he *HeaderError
				require.ErrorAs(t, err, &he)
				assert.Equal(t, tc.cond, he.Condition)
			default:
				require.NoError(t, err)
				assert.Equal(t, NSComponent, h.NS)
				assert.NotEmpty(t, h.ID)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{To: "cb1.example.com", From: "a'b<c", ID: "i&d"}
	d := NewDecoder(bytes.NewReader(AppendHeader(nil, h)), 0, 0)
	got, err := d.ReadHeader()
	require.NoError(t, err)
	assert.Equal(t, h.To, got.To)
	assert.Equal(t, h.From, got.From)
	assert.Equal(t, h.ID, got.ID)
}

func TestHandshakeDigest(t *testing.T) {
	// Vectors computed with sha1sum.
	d := HandshakeDigest("3BF96D32", "s3cr3t")
	assert.Equal(t, "ba33290100f616a33656a931798d6c9011cfa840", string(d[:]))
	d = HandshakeDigest("abc", "pässwörd")
	assert.Equal(t, "54cada76cca532ac2d8b40393947ee55459bb575", string(d[:]))

	assert.True(t, CheckHandshake("3BF96D32", "s3cr3t", []byte("ba33290100f616a33656a931798d6c9011cfa840")))
	assert.True(t, CheckHandshake("3BF96D32", "s3cr3t", []byte("BA33290100F616A33656A931798D6C9011CFA840")))
	assert.False(t, CheckHandshake("3BF96D32", "wrong", []byte("ba33290100f616a33656a931798d6c9011cfa840")))
	assert.False(t, CheckHandshake("3BF96D32", "s3cr3t", []byte("ba33")))
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `<a href="x">'&'</a>`, "tab\tnl\ncr\r", "ünï©ødé", "ctl\x01\x00x", "bad\xffutf8"} {
		esc := AppendEscaped(nil, s)
		assert.NotContains(t, string(esc), "<")
		got, err := Unescape(esc)
		require.NoError(t, err)
		want := strings.Map(func(r rune) rune {
			if r == 0x01 || r == 0x00 {
				return '\uFFFD'
			}
			return r
		}, strings.ToValidUTF8(s, "\uFFFD"))
		assert.Equal(t, want, got, "%q", s)
	}
	_, err := Unescape([]byte("&custom;"))
	assert.Error(t, err)
	_, err = Unescape([]byte("&#0;"))
	assert.Error(t, err)
	s, err := Unescape([]byte("&#x41;&#66;"))
	require.NoError(t, err)
	assert.Equal(t, "AB", s)
}

func TestStreamErrorRoundTrip(t *testing.T) {
	raw := AppendStreamError(nil, "see-other-host", "[2001:db8::1]:5223", "moved <now>")
	se, err := ParseStreamError(raw)
	require.NoError(t, err)
	assert.Equal(t, "see-other-host", se.Err)
	assert.Equal(t, "[2001:db8::1]:5223", se.Content)
	require.Len(t, se.Text, 1)
	assert.Equal(t, "moved <now>", se.Text[0].Value)
	assert.ErrorIs(t, se, stream.SeeOtherHost)

	se, err = ParseStreamError(AppendStreamError(nil, "not-authorized", "", ""))
	require.NoError(t, err)
	assert.ErrorIs(t, se, stream.NotAuthorized)

	_, err = ParseStreamError([]byte("<stream:error></stream:error>"))
	assert.Error(t, err)
}

func TestWriterCoalesces(t *testing.T) {
	var rec recorder
	rec.gate = make(chan struct{})
	w := NewWriter(&rec, 0, 0)
	ctx := context.Background()
	require.NoError(t, w.Write(ctx, []byte("<a/>")))
	// The first write is now blocked in the recorder; queue more meanwhile.
	for range 10 {
		require.NoError(t, w.Write(ctx, []byte("<b/>")))
	}
	close(rec.gate)
	require.NoError(t, w.Close(ctx, []byte(StreamEnd)))
	assert.Equal(t, "<a/>"+strings.Repeat("<b/>", 10)+StreamEnd, rec.buf.String())
	assert.LessOrEqual(t, rec.writes, 3, "queued stanzas must leave in few writes")
	assert.ErrorIs(t, w.Write(ctx, []byte("x")), ErrWriterClosed)
}

type recorder struct {
	gate   chan struct{}
	buf    bytes.Buffer
	writes int
}

func (r *recorder) Write(p []byte) (int, error) {
	<-r.gate
	r.writes++
	return r.buf.Write(p)
}

func TestWriterFailsFast(t *testing.T) {
	c1, c2 := net.Pipe()
	c2.Close()
	w := NewWriter(c1, 0, 0)
	defer w.Abort(nil)
	ctx := context.Background()
	_ = w.Write(ctx, []byte("<a/>"))
	<-w.Done()
	assert.Error(t, w.Err())
	assert.Error(t, w.Write(ctx, []byte("<a/>")), "a send on a failed link must fail at once")
}

func TestWriterBackpressure(t *testing.T) {
	c1, c2 := net.Pipe() // nobody reads c2: writes block
	defer c2.Close()
	w := NewWriter(c1, 16, time.Hour)
	ctx := context.Background()
	require.NoError(t, w.Write(ctx, []byte(strings.Repeat("x", 16))))
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.pend) == 0
	}, time.Second, time.Millisecond, "writer takes the first batch")
	require.NoError(t, w.Write(ctx, []byte(strings.Repeat("y", 16))))
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, w.Write(tctx, []byte("z")), context.DeadlineExceeded)
	w.Abort(nil)
	c1.Close()
	<-w.Done()
}

// TestWriterCloseBoundedByCtx: a peer that stops reading must not hold
// Close past its ctx, whatever the write timeout.
func TestWriterCloseBoundedByCtx(t *testing.T) {
	c1, c2 := net.Pipe() // nobody reads c2: the first write blocks
	defer c2.Close()
	defer c1.Close()
	w := NewWriter(c1, 16, time.Hour)
	ctx := context.Background()
	require.NoError(t, w.Write(ctx, []byte(strings.Repeat("x", 16))))
	require.Eventually(t, func() bool { return w.Pending() == 0 }, 5*time.Second, time.Millisecond, "writer takes the first batch")
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Close(cctx, []byte(StreamEnd)) }()
	select {
	case err := <-done:
		assert.Error(t, err, "the blocked write was interrupted")
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a write blocked on a peer that does not read (write timeout 1h)")
	}
	<-w.Done()
}

// TestWriterAbortInterruptsWrite: Abort alone (no conn.Close) ends a
// write blocked on a peer that stopped reading.
func TestWriterAbortInterruptsWrite(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	defer c1.Close()
	w := NewWriter(c1, 0, time.Hour)
	require.NoError(t, w.Write(context.Background(), []byte("<a/>")))
	require.Eventually(t, func() bool { return w.Pending() == 0 }, 5*time.Second, time.Millisecond)
	w.Abort(errors.New("give up"))
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Abort did not interrupt the blocked write")
	}
}

// TestWriterAppendControlDoesNotWait: control stanzas are queued even
// while the queue is over its bound (a sender would wait).
func TestWriterAppendControlDoesNotWait(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	defer c1.Close()
	w := NewWriter(c1, 16, time.Hour)
	ctx := context.Background()
	require.NoError(t, w.Write(ctx, []byte(strings.Repeat("x", 16))))
	require.Eventually(t, func() bool { return w.Pending() == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, w.Write(ctx, []byte(strings.Repeat("y", 16)))) // now over the bound
	tctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.Write(tctx, []byte("z")), context.DeadlineExceeded, "a sender waits")
	require.NoError(t, w.AppendControl(func(b []byte) []byte { return append(b, ' ') }), "a control stanza does not")
	assert.Equal(t, 17, w.Pending())
	w.Abort(nil)
	<-w.Done()
	assert.ErrorIs(t, w.AppendControl(func(b []byte) []byte { return b }), ErrWriterClosed)
}

func TestFirstChildPrefixed(t *testing.T) {
	d := NewDecoder(strings.NewReader(serverHeader+
		"<iq type='get' id='1'><p:query xmlns:p='urn:x'/></iq>"+
		"<iq type='get' id='2' xmlns:q='urn:y'><q:query/></iq>"+
		"<iq type='get' id='3'><query/></iq>"), 0, 0)
	_, err := d.ReadHeader()
	require.NoError(t, err)
	for _, want := range []string{"urn:x", "urn:y", ""} {
		el, err := d.Next()
		require.NoError(t, err)
		local, ns, ok := el.FirstChild()
		require.True(t, ok)
		assert.Equal(t, "query", string(local))
		assert.Equal(t, want, string(ns))
	}
}

// emptyReader returns (0, nil) a few times before each real read, as
// io.Reader allows.
type emptyReader struct {
	r     io.Reader
	empty int
}

func (e *emptyReader) Read(p []byte) (int, error) {
	if e.empty < 3 {
		e.empty++
		return 0, nil
	}
	e.empty = 0
	return e.r.Read(p)
}

func TestDecoderToleratesEmptyReads(t *testing.T) {
	d := NewDecoder(&emptyReader{r: iotest.OneByteReader(strings.NewReader(serverHeader + "<a/></stream:stream>"))}, 0, 0)
	_, err := d.ReadHeader()
	require.NoError(t, err)
	got, _ := readAll(t, d)
	assert.Equal(t, []string{"<a/>"}, got)
}

func TestCleanText(t *testing.T) {
	assert.Equal(t, "plain text, é ok", CleanText("plain text, é ok"))
	assert.Equal(t, `a\nOK    result\r\tz\x1b[31m\u2028\u202e`, CleanText("a\nOK    result\r\tz\x1b[31m\u2028\u202e"))
	assert.Equal(t, "bad \uFFFD byte", CleanText("bad \xff byte"))
	long := strings.Repeat("é", 200) // 400 bytes
	got := CleanText(long)
	assert.True(t, strings.HasPrefix(got, strings.Repeat("é", MaxServerText/2)), "cut at a character boundary")
	assert.True(t, strings.HasSuffix(got, "...[cut 144 bytes]"), got)
	assert.True(t, utf8.ValidString(got))
	odd := "x" + strings.Repeat("é", 200) // the cut falls inside a character
	assert.True(t, utf8.ValidString(CleanText(odd)))
	assert.Equal(t, "ok", EscapeControls("ok"))
}

// TestParseStreamErrorBounded: what a hostile server writes in a stream
// error is kept bounded and on one line.
func TestParseStreamErrorBounded(t *testing.T) {
	huge := strings.Repeat("A", 250<<10)
	var texts strings.Builder
	for range 10 {
		texts.WriteString("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>line1\nOK    result  -  would work " + huge + "</text>")
	}
	raw := "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>" +
		huge + "</see-other-host>" + texts.String() + "</stream:error>"
	se, err := ParseStreamError([]byte(raw))
	require.NoError(t, err)
	assert.Equal(t, "see-other-host", se.Err)
	assert.LessOrEqual(t, len(se.Content), MaxServerText+32)
	assert.Len(t, se.Text, 4, "only the first few texts")
	for _, tx := range se.Text {
		assert.LessOrEqual(t, len(tx.Value), MaxServerText+32)
		assert.NotContains(t, tx.Value, "\n")
		assert.Contains(t, tx.Value, "...[cut ")
	}
}
