// Package linkid holds the one set of rules for a component link's
// identity (its name, XMPP domain and component address), which
// component.Config and callbridge.Config both apply, so that a setting is
// valid for one exactly when it is valid for the other.
//
// The rules follow Cisco Meeting Server, where the Call Bridge's name is
// configured without a domain ("cb1") and the component address is
// <name>.<domain>:
//   - Domain is required: it is the XMPP domain pings go to (and, for
//     callbridge, the SRV name and a name the certificate must carry).
//   - Name is one DNS label: a dotted name is refused rather than guessed
//     at ("cb1.example.com" with domain example.com would otherwise give
//     cb1.example.com.example.com). A full address goes in the address
//     field instead, and then Name may be empty (it is taken from the
//     address's first label, for messages).
//   - Domain and address are normalized (IDNA to ASCII, lower case,
//     without a trailing dot), so both packages send the same address.
package linkid

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Problem is one invalid setting: Field is its Go field name.
type Problem struct{ Field, Msg string }

// Identity is a valid identity, normalized.
type Identity struct {
	Name   string // the bare name ("cb1")
	Domain string // the XMPP domain ("example.com")
	Addr   string // the component address ("cb1.example.com")
}

// Resolve applies the rules to name, domain and address; addressField is
// the name of the address's field in the caller's Config ("Address",
// "ComponentAddress"). It returns every problem found.
func Resolve(name, domain, address, addressField string) (Identity, []Problem) {
	var (
		id    Identity
		probs []Problem
	)
	bad := func(field, format string, args ...any) {
		probs = append(probs, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	d, err := NormalizeDomain(domain)
	switch {
	case strings.TrimSpace(domain) == "":
		bad("Domain", "must be set (the XMPP domain, for example \"example.com\")")
	case err != nil:
		bad("Domain", "%q is not a valid domain name: %v", domain, err)
	default:
		id.Domain = d
	}

	switch {
	case name == "" && address == "":
		bad("Name", "must be set (the Call Bridge's unique name, for example \"cb1\")")
	case name == "":
	case strings.Contains(name, "."):
		bad("Name", "must not contain a domain part: %q (set the domain separately, or the full component address in %s)", name, addressField)
	default:
		label, err := NormalizeDomain(name)
		if err != nil || strings.ContainsAny(name, "@/ ") {
			bad("Name", "%q is not a valid name: use letters, digits and hyphens", name)
		} else {
			id.Name = label
		}
	}

	switch {
	case address != "":
		a, err := NormalizeDomain(address)
		if err != nil || strings.ContainsAny(address, "@/ ") {
			bad(addressField, "%q is not a valid domain name (a bare component address such as \"cb1.example.com\")", address)
			break
		}
		id.Addr = a
		if id.Name == "" {
			id.Name, _, _ = strings.Cut(a, ".")
		}
	case id.Name != "" && id.Domain != "":
		id.Addr = id.Name + "." + id.Domain
	}
	return id, probs
}

var profile = idna.Lookup

// NormalizeDomain returns s as an ASCII domain name in lower case, without
// surrounding spaces or a trailing dot, or an error if it is not one.
func NormalizeDomain(s string) (string, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	if s == "" {
		return "", errors.New("empty")
	}
	a, err := profile.ToASCII(s)
	if err != nil {
		return "", err
	}
	return strings.ToLower(a), nil
}
