package discovery

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// DefaultPort is the port used when a server address has none: the port a
// Cisco Meeting Server Call Bridge uses for its XMPP component link.
const DefaultPort = 5223

// Address is a parsed "server address" setting.
type Address struct {
	// Host is a lowercase ASCII host name without trailing dot (IDNs are in
	// their A-label form) or an IP address literal without brackets.
	Host string
	// Port is never 0.
	Port uint16
}

// String formats a as host:port, bracketing IPv6 literals; ParseAddress
// parses it back to a.
func (a Address) String() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port)))
}

// IP returns the address when Host is an IP literal.
func (a Address) IP() (netip.Addr, bool) {
	ip, err := netip.ParseAddr(a.Host)
	return ip, err == nil
}

// ParseAddress parses a "server address" setting: host, host:port,
// [v6addr]:port, v6addr, ipv4 or ipv4:port. The port defaults to
// [DefaultPort]; a trailing dot and any letter case are accepted; an
// internationalized name is converted to its ASCII form with the IDNA lookup
// profile (UTS #46). The error, an [*Error] matching [ErrBadAddress], quotes
// the value and says what is wrong with it.
func ParseAddress(s string) (Address, error) {
	a, reason := parseAddress(s)
	if reason != "" {
		return Address{}, &Error{Op: "parse server address", Name: s, Kind: KindBadAddress,
			Err: errors.New(reason)}
	}
	return a, nil
}

func parseAddress(s string) (Address, string) {
	switch {
	case s == "":
		return Address{}, "empty"
	case len(s) > 1024:
		return Address{}, "too long"
	case strings.Contains(s, "://"):
		return Address{}, "has a URL scheme; want host[:port]"
	case !utf8.ValidString(s):
		return Address{}, "is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return Address{}, "contains white space"
	case strings.ContainsAny(s, "/?#@"):
		return Address{}, "contains one of / ? # @; want host[:port]"
	case strings.Contains(s, "%"):
		return Address{}, "contains '%' (IPv6 zones are not supported)"
	}
	host, portStr, hasPort := s, "", false
	switch {
	case s[0] == '[':
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Address{}, "has '[' without ']'"
		}
		host = s[1:end]
		switch rest := s[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			portStr, hasPort = rest[1:], true
		default:
			return Address{}, "has text after ']' that is not :port"
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Is4In6() {
			return Address{}, "has brackets around something that is not an IPv6 address"
		}
		host = ip.String()
	case strings.Count(s, ":") > 1:
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is6() || ip.Is4In6() {
			return Address{}, "is not a valid IPv6 address (write [v6addr]:port to give a port)"
		}
		host = ip.String()
	default:
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, portStr, hasPort = s[:i], s[i+1:], true
		}
		if host == "" {
			return Address{}, "has an empty host"
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.String()
		} else {
			h, reason := normalizeHost(host)
			if reason != "" {
				return Address{}, reason
			}
			host = h
		}
	}
	port := uint16(DefaultPort)
	if hasPort {
		p, reason := parsePort(portStr)
		if reason != "" {
			return Address{}, reason
		}
		port = p
	}
	return Address{Host: host, Port: port}, ""
}

func parsePort(s string) (uint16, string) {
	if s == "" {
		return 0, "has an empty port"
	}
	if len(s) > 5 {
		return 0, "has a port above 65535"
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, "has a port that is not a decimal number"
		}
		n = n*10 + int(c-'0')
	}
	switch {
	case n == 0:
		return 0, "has port 0"
	case n > 65535:
		return 0, "has a port above 65535"
	}
	return uint16(n), ""
}

// normalizeHost checks a host name and returns its lowercase ASCII form
// without trailing dot, or a reason why it is not a host name.
func normalizeHost(h string) (string, string) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", "has an empty host"
	}
	if strings.HasPrefix(h, "[") || strings.HasSuffix(h, "]") {
		return "", "has an unbalanced bracket"
	}
	ascii, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", "has an invalid host name (" + idnaReason(err) + ")"
	}
	ascii = strings.ToLower(strings.TrimSuffix(ascii, "."))
	// The ASCII form must be stable, so that formatting and parsing again
	// gives the same name.
	if again, err := idna.Lookup.ToASCII(ascii); err != nil || again != ascii {
		return "", "has an invalid host name (its ASCII form does not validate)"
	}
	if ascii == "" {
		return "", "has an empty host"
	}
	if len(ascii) > 253 {
		return "", "has a host name longer than 253 characters"
	}
	labels := strings.Split(ascii, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "", "has an empty label in the host name"
		case len(l) > 63:
			return "", "has a host name label longer than 63 characters"
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", "has a character not allowed in a host name"
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", "has a host name label starting or ending with '-'"
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return "", "is neither an IP address nor a host name (all-numeric top-level label)"
	}
	return ascii, ""
}

func idnaReason(err error) string {
	// idna errors read like `idna: disallowed rune U+0020`; keep the tail.
	return strings.TrimPrefix(err.Error(), "idna: ")
}

// validHostName reports whether name (lowercase, no trailing dot) is a
// syntactically valid host name; used for names that come out of DNS answers.
func validHostName(name string) bool {
	_, reason := normalizeHost(name)
	return reason == ""
}
