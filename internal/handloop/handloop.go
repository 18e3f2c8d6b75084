// Package handloop is the baseline that cblink's benchmarks measure
// against: a component written by hand for one job, with no XML library
// and no checks beyond what the job needs. It does the XEP-0114 handshake
// and answers the XEP-0199 pings that componenttest sends, batching the
// replies to everything one read brought in into one write. It is fast
// because it trusts the server's exact byte layout, which no real
// component may do; it exists only to show how far the library is from
// the limit of the machine.
package handloop

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net"
)

// maxBuffered bounds what Handshake and ServePings hold while looking for
// the end of an element.
const maxBuffered = 1 << 20

// Handshake opens the stream to the component address addr and
// authenticates with secret: it sends the header, reads the server's
// header up to its '>' to find the stream id, sends the SHA-1 digest and
// waits for <handshake/>. It returns what it read past <handshake/>, for
// ServePings.
func Handshake(c net.Conn, addr, secret string) (rest []byte, err error) {
	if _, err := c.Write([]byte("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='" + addr + "'>")); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	got, err := readUntil(c, buf, nil, "'>", `">`)
	if err != nil {
		return nil, err
	}
	id, ok := attr(got, "id")
	if !ok {
		return nil, errors.New("handloop: no stream id")
	}
	sum := sha1.Sum(append(id, secret...))
	if _, err := c.Write([]byte("<handshake>" + hex.EncodeToString(sum[:]) + "</handshake>")); err != nil {
		return nil, err
	}
	got, err = readUntil(c, buf, nil, "<handshake/>", "</stream:stream>")
	if err != nil {
		return nil, err
	}
	_, rest, ok = bytes.Cut(got, []byte("<handshake/>"))
	if !ok {
		return nil, errors.New("handloop: handshake refused")
	}
	return rest, nil
}

// readUntil reads into buf, appending to got, until got holds one of ends.
func readUntil(c net.Conn, buf, got []byte, ends ...string) ([]byte, error) {
	for {
		for _, e := range ends {
			if bytes.Contains(got, []byte(e)) {
				return got, nil
			}
		}
		if len(got) > maxBuffered {
			return nil, errors.New("handloop: element too large")
		}
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		got = append(got, buf[:n]...)
	}
}

// attr returns the value of name='...' or name="..." in b.
func attr(b []byte, name string) ([]byte, bool) {
	for _, q := range []string{"'", `"`} {
		if i := bytes.Index(b, []byte(" "+name+"="+q)); i >= 0 {
			v := b[i+len(name)+3:]
			if j := bytes.Index(v, []byte(q)); j >= 0 {
				return v[:j], true
			}
		}
	}
	return nil, false
}

// ServePings answers, as addr, every IQ get it reads with an empty result
// until the connection ends, and returns the read error. The replies to
// what one read brought in leave in one write. pending is what was read
// before (Handshake's rest).
func ServePings(c net.Conn, addr string, pending []byte) error {
	buf := make([]byte, 64<<10)
	var out []byte
	for {
		rest := pending
		out = out[:0]
		for {
			end := bytes.Index(rest, []byte("</iq>"))
			if end < 0 {
				break
			}
			iq := rest[:end]
			rest = rest[end+len("</iq>"):]
			if i := bytes.Index(iq, []byte("<iq ")); i >= 0 {
				iq = iq[i:]
			}
			if typ, _ := attr(iq, "type"); string(typ) != "get" {
				continue
			}
			id, _ := attr(iq, "id")
			from, _ := attr(iq, "from")
			out = append(out, "<iq type='result' id='"...)
			out = append(out, id...)
			out = append(out, "' from='"+addr+"' to='"...)
			out = append(out, from...)
			out = append(out, "'/>"...)
		}
		pending = append(pending[:0], rest...)
		if len(pending) > maxBuffered {
			return errors.New("handloop: element too large")
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return err
			}
		}
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		pending = append(pending, buf[:n]...)
	}
}
