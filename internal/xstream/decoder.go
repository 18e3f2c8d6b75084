package xstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Namespaces of a component stream.
const (
	NSStream    = "http://etherx.jabber.org/streams"
	NSComponent = "jabber:component:accept"
	NSStreamErr = "urn:ietf:params:xml:ns:xmpp-streams"
)

// Default bounds.
const (
	DefaultMaxSize  = 256 << 10
	DefaultMaxDepth = 32
	minBuf          = 4 << 10
	maxEmptyReads   = 100
)

// Errors returned by the Decoder. ErrTooLarge and ErrTooDeep mean the peer
// broke a local policy (answer policy-violation); SyntaxError means the
// bytes were not acceptable XML (answer not-well-formed or restricted-xml).
var (
	ErrTooLarge = errors.New("xstream: element exceeds the maximum size")
	ErrTooDeep  = errors.New("xstream: element exceeds the maximum nesting depth")
	// ErrStreamEnd is returned by Next when the peer closed its stream with
	// </stream:stream>.
	ErrStreamEnd = errors.New("xstream: stream closed by peer")
)

// SyntaxError reports bytes that are not acceptable XML on an XMPP stream.
type SyntaxError struct {
	// Restricted is true when the XML was well-formed but uses a construct
	// that RFC 6120 forbids (comment, processing instruction, DTD).
	Restricted bool
	Msg        string
	Offset     int64 // byte offset in the stream where the problem was seen
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("xstream: %s at byte %d", e.Msg, e.Offset)
}

// Decoder cuts a stream into its header and top-level elements. It is not
// safe for concurrent use; one reader goroutine owns it.
type Decoder struct {
	r        io.Reader
	buf      []byte
	r0, w0   int   // unconsumed data is buf[r0:w0]
	consumed int64 // bytes consumed before buf[r0]
	maxSize  int
	maxDepth int

	pendingSkip int // bytes of the last element, consumed on the next call
	err         error

	streamPrefix []byte // prefix bound to NSStream in the header ("stream")

	// resumable scanner state, offsets relative to r0
	sc scanner
}

type scanner struct {
	pos    int
	tagEnd int // end of the top-level start tag, once seen
	state  scanState
	quote  byte
	depth  int
	names  [][2]int // start offset and length of each open element's name
}

type scanState uint8

const (
	stText     scanState = iota // character data
	stTagOpen                   // just after '<'
	stStartTag                  // inside a start tag, after its name
	stQuote                     // inside an attribute value
	stEndTag                    // inside an end tag
	stCDATA                     // inside <![CDATA[ ... ]]>
)

// NewDecoder returns a Decoder reading from r. maxSize bounds every
// top-level element (and the header) in bytes and maxDepth their nesting;
// values <= 0 select the defaults.
func NewDecoder(r io.Reader, maxSize, maxDepth int) *Decoder {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	return &Decoder{r: r, buf: make([]byte, minBuf), maxSize: maxSize, maxDepth: maxDepth, streamPrefix: []byte("stream")}
}

// InputOffset returns how many bytes of the stream have been consumed.
func (d *Decoder) InputOffset() int64 { return d.consumed + int64(d.pendingSkip) }

func (d *Decoder) syntax(restricted bool, msg string, at int) error {
	return &SyntaxError{Restricted: restricted, Msg: msg, Offset: d.consumed + int64(at)}
}

// fill reads more data, compacting or growing the buffer as needed. The
// buffer never grows past what maxSize needs, so memory stays bounded
// whatever the peer sends.
func (d *Decoder) fill() error {
	if d.err != nil {
		return d.err
	}
	if d.r0 > 0 && (d.w0 == len(d.buf) || d.r0 >= len(d.buf)/2) {
		n := copy(d.buf, d.buf[d.r0:d.w0])
		d.w0 = n
		d.r0 = 0
	}
	if d.w0 == len(d.buf) {
		limit := d.maxSize + minBuf
		if len(d.buf) >= limit {
			return ErrTooLarge
		}
		nb := make([]byte, min(2*len(d.buf), limit))
		copy(nb, d.buf[d.r0:d.w0])
		d.w0 -= d.r0
		d.r0 = 0
		d.buf = nb
	}
	var n int
	var err error
	// io.Reader allows (0, nil); bufio retries such reads, and so do we.
	for range maxEmptyReads {
		n, err = d.r.Read(d.buf[d.w0:])
		if n > 0 || err != nil {
			break
		}
	}
	d.w0 += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
	return err
}

func (d *Decoder) consume(n int) {
	d.r0 += n
	d.consumed += int64(n)
}

func (d *Decoder) skipPending() {
	if d.pendingSkip > 0 {
		d.consume(d.pendingSkip)
		d.pendingSkip = 0
	}
}

func trimSpaceRight(b []byte) []byte {
	for len(b) > 0 && IsSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// IsSpace reports whether c is XML white space (space, tab, CR or LF).
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipSpace consumes whitespace, reading as needed, and reports whether any
// was seen. It returns once a non-space byte is buffered or, with
// stopAfterSpace, as soon as the buffered data was all whitespace.
func (d *Decoder) skipSpace(stopAfterSpace bool) (bool, error) {
	seen := false
	for {
		for d.r0 < d.w0 && IsSpace(d.buf[d.r0]) {
			d.consume(1)
			seen = true
		}
		if d.r0 < d.w0 {
			return seen, nil
		}
		if seen && stopAfterSpace {
			// Report whitespace keepalives without blocking for more.
			return true, nil
		}
		if err := d.fill(); err != nil {
			return seen, err
		}
	}
}

// need makes sure n bytes are buffered from r0 on.
func (d *Decoder) need(n int) error {
	for d.w0-d.r0 < n {
		if err := d.fill(); err != nil {
			return err
		}
	}
	return nil
}

// findFrom finds sep at or after absolute index from, reading as needed,
// and returns its absolute index. The search is bounded by maxSize.
func (d *Decoder) findFrom(from int, sep []byte) (int, error) {
	rel := from - d.r0
	for {
		abs := d.r0 + rel
		if i := bytes.Index(d.buf[abs:d.w0], sep); i >= 0 {
			return abs + i, nil
		}
		if d.w0-d.r0 > d.maxSize {
			return 0, ErrTooLarge
		}
		if err := d.fill(); err != nil {
			return 0, err
		}
	}
}

// Next returns the next top-level element. Whitespace between elements is
// skipped; when only whitespace was available, Next returns a zero Element
// with Keepalive set, so the caller sees the peer's keepalives. At the
// peer's </stream:stream> it returns ErrStreamEnd. The element's bytes are
// valid until the next call.
func (d *Decoder) Next() (Element, error) {
	d.skipPending()
	seen, err := d.skipSpace(true)
	if err != nil {
		return Element{}, err
	}
	if d.r0 == d.w0 && seen {
		return Element{Keepalive: true}, nil
	}
	if d.buf[d.r0] != '<' {
		return Element{}, d.syntax(false, "character data between top-level elements", 0)
	}
	if err := d.need(2); err != nil {
		return Element{}, err
	}
	switch d.buf[d.r0+1] {
	case '/':
		end, err := d.findFrom(d.r0+2, []byte(">"))
		if err != nil {
			return Element{}, err
		}
		name := trimSpaceRight(d.buf[d.r0+2 : end])
		if !isQName(name, d.streamPrefix, "stream") {
			return Element{}, d.syntax(false, "unexpected end tag at top level", 0)
		}
		d.consume(end + 1 - d.r0)
		return Element{}, ErrStreamEnd
	case '?':
		return Element{}, d.syntax(true, "processing instruction", 0)
	case '!':
		return Element{}, d.syntax(true, "comment, CDATA or DTD at top level", 0)
	}
	d.sc = scanner{pos: 1, state: stTagOpen, names: d.sc.names[:0]}
	for {
		n, err := d.scan()
		if err != nil {
			return Element{}, err
		}
		if n > d.maxSize {
			return Element{}, ErrTooLarge
		}
		if n > 0 {
			raw := d.buf[d.r0 : d.r0+n]
			d.pendingSkip = n
			el := Element{Raw: raw}
			el.init(d.sc.tagEnd)
			return el, nil
		}
		if d.w0-d.r0 > d.maxSize {
			return Element{}, ErrTooLarge
		}
		if err := d.fill(); err != nil {
			return Element{}, err
		}
	}
}

func isQName(name, prefix []byte, local string) bool {
	if len(prefix) == 0 {
		return string(name) == local
	}
	return len(name) == len(prefix)+1+len(local) && bytes.HasPrefix(name, prefix) &&
		name[len(prefix)] == ':' && string(name[len(prefix)+1:]) == local
}

func isNameByte(c byte) bool { return nameBytes[c] }

// nameBytes says which bytes may appear in a name: one load per byte
// instead of a chain of comparisons, on the scanner's hottest path.
var nameBytes = func() (t [256]bool) {
	for c := range 256 {
		b := byte(c)
		t[c] = b == ':' || b == '_' || b == '-' || b == '.' || b >= 0x80 ||
			(b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
	}
	return t
}()

// scan advances the resumable scanner over buf[r0:w0]. It returns the
// element's length once its end is found, or 0 when it needs more data.
func (d *Decoder) scan() (int, error) {
	b := d.buf[d.r0:d.w0]
	s := &d.sc
	p := s.pos
	for p < len(b) {
		switch s.state {
		case stText:
			i := bytes.IndexByte(b[p:], '<')
			if i < 0 {
				p = len(b)
				continue
			}
			p += i + 1
			s.state = stTagOpen
		case stTagOpen:
			c := b[p]
			switch {
			case c == '/':
				if s.depth == 0 {
					return 0, d.syntax(false, "end tag without start", p)
				}
				s.state = stEndTag
				p++
			case c == '!':
				// Only CDATA is allowed inside elements.
				if len(b)-p < 8 {
					s.pos = p
					return 0, nil
				}
				if !bytes.HasPrefix(b[p:], []byte("![CDATA[")) {
					return 0, d.syntax(true, "comment or DTD", p)
				}
				p += 8
				s.state = stCDATA
			case c == '?':
				return 0, d.syntax(true, "processing instruction", p)
			case isNameByte(c) && c != '-' && c != '.' && !(c >= '0' && c <= '9'):
				// Element name: find its end.
				start := p
				for p < len(b) && isNameByte(b[p]) {
					p++
				}
				if p == len(b) {
					s.pos = start
					return 0, nil
				}
				if s.depth >= d.maxDepth {
					return 0, ErrTooDeep
				}
				s.names = append(s.names, [2]int{start, p - start})
				s.depth++
				s.state = stStartTag
			default:
				return 0, d.syntax(false, "invalid character after '<'", p)
			}
		case stStartTag:
			// Scan attributes up to '>' or '/>'.
			for p < len(b) {
				c := b[p]
				if c > '>' { // names and most of the tag: nothing to do
					p++
					continue
				}
				if c == '"' || c == '\'' {
					s.quote = c
					s.state = stQuote
					p++
					break
				}
				if c == '<' {
					return 0, d.syntax(false, "'<' inside a tag", p)
				}
				if c == '>' {
					p++
					if s.depth == 1 && s.tagEnd == 0 {
						s.tagEnd = p
					}
					if b[p-2] == '/' {
						s.depth--
						s.names = s.names[:len(s.names)-1]
						if s.depth == 0 {
							return p, nil
						}
					}
					s.state = stText
					break
				}
				p++
			}
		case stQuote:
			i := bytes.IndexByte(b[p:], s.quote)
			val := b[p:]
			if i >= 0 {
				val = val[:i]
			}
			if lt := bytes.IndexByte(val, '<'); lt >= 0 {
				return 0, d.syntax(false, "'<' in attribute value", p+lt)
			}
			if i < 0 {
				p = len(b)
				continue
			}
			p += i + 1
			s.state = stStartTag
		case stEndTag:
			i := bytes.IndexByte(b[p:], '>')
			if i < 0 {
				s.pos = p
				// Bound how far an unterminated end tag can run.
				if len(b)-p > 1024 {
					return 0, d.syntax(false, "unterminated end tag", p)
				}
				return 0, nil
			}
			name := trimSpaceRight(b[p : p+i])
			top := s.names[len(s.names)-1]
			if !bytes.Equal(name, b[top[0]:top[0]+top[1]]) {
				return 0, d.syntax(false, "mismatched end tag", p)
			}
			s.names = s.names[:len(s.names)-1]
			s.depth--
			p += i + 1
			if s.depth == 0 {
				return p, nil
			}
			s.state = stText
		case stCDATA:
			i := bytes.Index(b[p:], []byte("]]>"))
			if i < 0 {
				// Keep the last two bytes: "]]" may be split across reads.
				p = max(p, len(b)-2)
				s.pos = p
				return 0, nil
			}
			p += i + 3
			s.state = stText
		}
	}
	s.pos = p
	return 0, nil
}
