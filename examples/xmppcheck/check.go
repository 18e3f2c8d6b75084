package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/cblink/cblink/component"
	"github.com/cblink/cblink/discovery"
	"github.com/cblink/cblink/examples/internal/calls"
	"github.com/cblink/cblink/examples/internal/logformat"
	"github.com/cblink/cblink/examples/internal/settings"
	"github.com/cblink/cblink/tlsverify"
)

// Step names, in the order they run.
const (
	stepSettings  = "settings"
	stepSRV       = "srv"    // or stepServer with an explicit -server
	stepServer    = "server" // explicit address: no SRV lookup
	stepAddress   = "address"
	stepTCP       = "tcp"
	stepTLS       = "tls"
	stepSAN       = "san"
	stepHandshake = "handshake"
	stepPing      = "ping"
	stepResult    = "result"
)

// targetSteps are the steps run for every server.
var targetSteps = []string{stepAddress, stepTCP, stepTLS, stepSAN, stepHandshake, stepPing}

// checker walks the connection steps once and records them.
type checker struct {
	s                *settings.Settings
	b                *bridgeSettings
	strict           bool // every server must pass
	dialTimeout      time.Duration
	handshakeTimeout time.Duration // TLS and XEP-0114 together, as the bridge
	pingTimeout      time.Duration
	steps            []Step

	domain  string // normalised
	addr    string // component address
	secret  component.Secret
	verify  tlsverify.Config // per-target ServerName filled in
	sni     string
	servers []string // the targets that passed every step
}

func (c *checker) add(step, target string, r Result, d time.Duration, detail, hint string) {
	c.steps = append(c.steps, newStep(step, target, r, d, detail, hint))
}

// skipRest records the steps after failed as not reached.
func (c *checker) skipRest(target, failed, why string) {
	after := false
	for _, s := range targetSteps {
		if after {
			c.add(s, target, Skip, 0, why, "")
		}
		if s == failed {
			after = true
		}
	}
}

// outcome is what a check concludes.
type outcome int

const (
	invalidSettings outcome = iota // exit 2
	wouldNotConnect                // exit 1
	wouldConnect                   // exit 0
)

// run checks everything and says whether a Call Bridge would connect (with
// strict, whether every server would accept it).
func (c *checker) run(ctx context.Context) outcome {
	if !c.checkSettings() {
		c.add(stepResult, "", Fail, 0, "a Call Bridge with these settings would not start", "")
		return invalidSettings
	}
	targets := c.locate(ctx)
	for _, t := range targets {
		c.checkTarget(ctx, t)
	}
	n := plural(len(targets), "server")
	switch {
	case len(targets) == 0:
		c.add(stepResult, "", Fail, 0, "no server to connect to: a Call Bridge with these settings would not connect", "")
	case len(c.servers) == 0:
		c.add(stepResult, "", Fail, 0, fmt.Sprintf("no server accepts this Call Bridge (%s checked): it would not connect", n), "")
	case c.strict && len(c.servers) < len(targets):
		c.add(stepResult, "", Fail, 0, fmt.Sprintf("-strict: only %d of %s would work (%s); a Call Bridge would connect, but without a working spare",
			len(c.servers), n, strings.Join(c.servers, ", ")), "fix the failing servers above")
	default:
		c.add(stepResult, "", OK, 0, fmt.Sprintf("%d of %s would work: %s", len(c.servers), n, strings.Join(c.servers, ", ")), "")
		return wouldConnect
	}
	return wouldNotConnect
}

// checkSettings checks the settings as a Call Bridge starting with them
// would: the callbridge.Config, then the bridge's own -log-format and
// -calls. Every problem is reported at once.
func (c *checker) checkSettings() bool {
	start := time.Now()
	cfg := c.s.Config()
	// The secret is read once, as the bridge reads it: a pipe
	// (-secret-file /dev/stdin, or <(...)) gives it only once. Validate
	// then checks the rest with the secret in hand.
	secret, serr := cfg.LoadSecret()
	cfg.SecretFile, cfg.SecretCredential, cfg.SecretEnv = "", "", ""
	cfg.Secret = secret
	if serr != nil {
		cfg.Secret = component.NewSecret("unread") // stands in: serr says what is wrong with the secret
	}
	problems := settings.Problems(cfg.Validate())
	problems = append(problems, settings.Problems(serr)...)
	if err := logformat.Check(c.b.logFormat); err != nil {
		problems = append(problems, "-log-format: "+err.Error())
	}
	var callsDetail string
	if c.b.calls != "" {
		d, err := calls.Load(c.b.calls) // its errors never quote a passcode
		if err != nil {
			problems = append(problems, "-calls: "+err.Error())
		} else {
			callsDetail = fmt.Sprintf(", call directory %s (%s)", c.b.calls, plural(len(d), "call"))
		}
	}
	if len(problems) > 0 {
		c.add(stepSettings, "", Fail, time.Since(start), strings.Join(problems, "; "),
			"fix the settings above (flags, or CBLINK_<FLAG> environment variables)")
		return false
	}
	c.secret = secret
	c.domain = strings.ToLower(strings.TrimSuffix(c.s.Domain, "."))
	c.addr = c.s.Name + "." + c.domain
	c.sni = c.s.SNI
	if c.sni == "" {
		c.sni = c.domain
	}
	c.verify = tlsverify.Config{Domain: c.domain, RootsFile: c.s.CAFile}

	where := "SRV _xmpp-component._tcp." + c.domain
	if c.s.Server != "" {
		where = c.s.Server
	}
	roots := "system roots"
	if c.s.CAFile != "" {
		roots = c.s.CAFile
	}
	dns := "/etc/resolv.conf"
	if ns := c.s.NameServers(); len(ns) > 0 {
		dns = strings.Join(ns, ",")
	}
	c.add(stepSettings, "", OK, time.Since(start), fmt.Sprintf("component %s, server %s, secret from %s (redacted), CA %s, DNS %s%s; timeouts: dial %v, handshake %v, ping %v",
		c.addr, where, c.s.SecretSource(), roots, dns, callsDetail, c.dialTimeout, c.handshakeTimeout, c.pingTimeout), "")
	return true
}

// target is one server to check; ep is nil when it has no address.
type target struct {
	name string // host:port
	ep   *discovery.Endpoint
	why  error // why there is no address
}

// locate runs the SRV (or explicit address) step and returns the targets
// in the order a Call Bridge tries them, those without address last.
func (c *checker) locate(ctx context.Context) []target {
	start := time.Now()
	r := &discovery.Resolver{NameServers: c.s.NameServers()}
	res, err := r.Lookup(ctx, discovery.Request{Domain: c.domain, Server: c.s.Server})
	d := time.Since(start)
	srvName := "_xmpp-component._tcp." + c.domain

	if c.s.Server != "" {
		a, perr := discovery.ParseAddress(c.s.Server)
		if perr != nil {
			c.add(stepServer, c.s.Server, Fail, d, perr.Error(), "set -server to host[:port]")
			return nil
		}
		c.add(stepServer, a.String(), OK, 0, "explicit address from -server; no SRV lookup", "")
		if err != nil {
			return []target{{name: a.String(), why: err}}
		}
		return []target{{name: a.String(), ep: &res.Endpoints[0]}}
	}

	var records []string
	for _, te := range traceOf(res) {
		if te.Type == "SRV" && te.Source != discovery.SourceNote {
			for _, a := range te.Answers {
				records = append(records, srvRecord(a))
			}
		}
	}
	var dnsErr *discovery.Error
	switch {
	case errors.As(err, &dnsErr) && dnsErr.Kind == discovery.KindRefused:
		c.add(stepSRV, srvName, Fail, d, err.Error(),
			c.checkDomain("the name servers ("+nameServers(c.s)+") refuse to answer for it, as a name server does for a domain it does not serve")+
				"if it is right, check that they answer for "+c.domain)
		return nil
	case errors.Is(err, discovery.ErrNoSRV) && nxdomain(res, srvName):
		c.add(stepSRV, srvName, Fail, d, err.Error(),
			c.checkDomain("no name "+srvName+" exists (NXDOMAIN)")+
				"if it is right, publish _xmpp-component._tcp."+c.domain+" SRV records or set -server")
		return nil
	case errors.Is(err, discovery.ErrNoService):
		c.add(stepSRV, srvName, Fail, d, fmt.Sprintf("SRV answer %q: the single target \".\"", strings.Join(records, ", ")),
			"the domain publishes that there is no XMPP component service: replace the \".\" record by _xmpp-component._tcp."+c.domain+" SRV records naming the XMPP servers, or set -server")
		return nil
	case errors.Is(err, discovery.ErrNoSRV):
		c.add(stepSRV, srvName, Fail, d, err.Error(),
			"publish _xmpp-component._tcp."+c.domain+" SRV records or set -server")
		return nil
	case err != nil && !errors.Is(err, discovery.ErrNoAddresses):
		c.add(stepSRV, srvName, Fail, d, err.Error(),
			"check that the name servers ("+nameServers(c.s)+") answer for "+c.domain)
		return nil
	}

	var targets []target
	var order []string
	for i := range res.Endpoints {
		ep := &res.Endpoints[i]
		t := net.JoinHostPort(ep.Target, strconv.Itoa(int(ep.Port)))
		targets = append(targets, target{name: t, ep: ep})
		order = append(order, t)
	}
	// Targets skipped for want of an address, from the trace notes.
	for _, te := range traceOf(res) {
		if te.Source == discovery.SourceNote && te.Type == "A/AAAA" {
			targets = append(targets, target{name: strings.TrimSuffix(te.Name, "."), why: te.Err})
		}
	}
	detail := fmt.Sprintf("%s [%s]", plural(len(records), "record"), strings.Join(records, "; "))
	if len(order) > 0 {
		detail += "; order to try: " + strings.Join(order, ", ")
	}
	c.add(stepSRV, srvName, OK, d, detail, "")
	return targets
}

// checkDomain starts a hint whose evidence points at the -domain setting
// rather than at the server or the DNS: a typo there sends the
// administrator to fix the wrong thing.
func (c *checker) checkDomain(evidence string) string {
	return "check -domain first: is " + c.domain + " the XMPP domain (as on the XMPP server and CMS's XMPP page)? " + evidence + "; "
}

// nxdomain reports whether the SRV query for name was answered NXDOMAIN.
func nxdomain(res *discovery.Result, name string) bool {
	for _, te := range traceOf(res) {
		if te.Type == "SRV" && strings.TrimSuffix(te.Name, ".") == name && te.Rcode == "NXDOMAIN" {
			return true
		}
	}
	return false
}

func traceOf(res *discovery.Result) []discovery.TraceEntry {
	if res == nil {
		return nil
	}
	return res.Trace
}

// srvRecord shortens a zone-file SRV answer to "priority weight port target".
func srvRecord(rr string) string {
	f := strings.Fields(rr)
	if len(f) >= 5 && f[len(f)-5] == "SRV" {
		return strings.Join(f[len(f)-4:], " ")
	}
	return strings.Join(f, " ")
}

func nameServers(s *settings.Settings) string {
	if ns := s.NameServers(); len(ns) > 0 {
		return "-dns " + strings.Join(ns, ",")
	}
	return "/etc/resolv.conf"
}

// checkTarget runs the steps from address lookup to ping for one server.
func (c *checker) checkTarget(ctx context.Context, t target) {
	if t.ep == nil {
		detail := "no usable address"
		if t.why != nil {
			detail = t.why.Error()
		}
		host, _, _ := net.SplitHostPort(t.name)
		if host == "" {
			host = t.name
		}
		c.add(stepAddress, t.name, Fail, 0, detail, "publish an A or AAAA record for "+host)
		c.skipRest(t.name, stepAddress, "not reached: no address")
		return
	}
	ep := t.ep
	addrs := make([]string, len(ep.Addrs))
	for i, a := range ep.Addrs {
		addrs[i] = a.String()
	}
	c.add(stepAddress, t.name, OK, 0, strings.Join(addrs, ", "), "")

	// TCP: the addresses in order, the first that answers.
	start := time.Now()
	var conn net.Conn
	var errs []string
	for _, a := range ep.Addrs {
		d := net.Dialer{Timeout: c.dialTimeout}
		cn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, ep.Port).String())
		if err == nil {
			conn = cn
			break
		}
		errs = append(errs, err.Error())
	}
	if conn == nil {
		c.add(stepTCP, t.name, Fail, time.Since(start), strings.Join(errs, "; "),
			fmt.Sprintf("check that the XMPP server on %s runs and accepts components on port %d (direct TLS), and that no firewall blocks it", ep.Target, ep.Port))
		c.skipRest(t.name, stepTCP, "not reached: no TCP connection")
		return
	}
	defer conn.Close()
	c.add(stepTCP, t.name, OK, time.Since(start), "connected to "+conn.RemoteAddr().String(), "")

	// TLS and the XEP-0114 handshake share one bound, as in the bridge.
	hctx, cancel := context.WithTimeout(ctx, c.handshakeTimeout)
	defer cancel()
	tconn := c.checkTLS(hctx, t.name, ep, conn)
	if tconn == nil {
		return
	}
	c.checkHandshake(ctx, hctx, t.name, tconn)
}

// checkTLS runs the TLS handshake, then the chain and the SAN checks as
// separate steps, so that both problems show at once. It returns the TLS
// connection when a Call Bridge would go on to the handshake, else nil.
func (c *checker) checkTLS(ctx context.Context, name string, ep *discovery.Endpoint, conn net.Conn) *tls.Conn {
	start := time.Now()
	sni := c.sni
	if _, err := netip.ParseAddr(sni); err == nil {
		sni = "" // crypto/tls sends no SNI for an IP
	}
	// Verification runs below, with tlsverify, on the chain received: the
	// handshake itself must not stop at the first problem.
	tconn := tls.Client(conn, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tconn.HandshakeContext(ctx); err != nil {
		err = tlsverify.ExplainHandshakeError(err)
		hint := "the server did not complete a direct-TLS handshake: check that port " + strconv.Itoa(int(ep.Port)) +
			" is the component port with TLS from the first byte, and that the SNI " + c.sni + " is one of its hosts (else set -sni)"
		detail := err.Error()
		switch {
		case errors.Is(err, tlsverify.ErrPlainXMPP):
			hint = "point -server or the SRV record at the XMPP server's direct-TLS component port (usually 5223), not port " + strconv.Itoa(int(ep.Port))
		case ctx.Err() != nil:
			detail = fmt.Sprintf("TLS handshake stalled: no answer for %v (-handshake-timeout)", time.Since(start).Round(time.Millisecond))
			hint = "the server accepted TCP but did not answer the TLS handshake: is port " + strconv.Itoa(int(ep.Port)) + " the direct-TLS component port, and is the server overloaded or frozen?"
		case errors.Is(err, tlsverify.ErrUnrecognizedName) && c.s.SNI == "":
			// The SNI is the domain: the server does not serve it.
			served := "it does not say which it serves"
			if names := c.servedNames(ctx, conn.RemoteAddr().String()); len(names) > 0 {
				served = "the certificate it sends without SNI names " + strings.Join(names, ", ")
			}
			hint = c.checkDomain("the server does not serve "+c.domain+" (the SNI sent); "+served) +
				"if it is right, the server must serve it (else set -sni to a host it serves)"
		}
		c.add(stepTLS, name, Fail, time.Since(start), detail, hint)
		c.skipRest(name, stepTLS, "not reached: no TLS")
		return nil
	}
	cs := tconn.ConnectionState()
	chain := cs.PeerCertificates
	v := c.verify
	v.ServerName = ep.Target
	if c.s.ServerName != "" {
		v.ServerName = c.s.ServerName
	}
	err := v.Verify(chain)
	var ce *tlsverify.ChainError
	chainOK := !errors.As(err, &ce)
	var nameErr error
	if chainOK {
		if err != nil && !errors.Is(err, tlsverify.ErrNameMismatch) {
			// Neither a chain nor a name problem: a configuration error.
			c.add(stepTLS, name, Fail, time.Since(start), err.Error(), "check -ca")
			c.skipRest(name, stepTLS, "not reached")
			return nil
		}
		nameErr = err
		sum := tlsverify.Summarize(chain[0])
		c.add(stepTLS, name, OK, time.Since(start), fmt.Sprintf("%s %s, SNI %q; chain trusted: %s issued by %s, valid until %s",
			tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), sni, sum.Subject, sum.Issuer, sum.NotAfter.Format(time.DateOnly)), "")
	} else {
		c.add(stepTLS, name, Fail, time.Since(start), ce.Error(), chainHint(ce))
		// Check the names anyway, trusting this leaf's key, so that a
		// certificate with both problems shows both.
		if len(chain) > 0 {
			pv := tlsverify.Config{Domain: v.Domain, ServerName: v.ServerName, Pins: []string{tlsverify.Summarize(chain[0]).SPKIPin}, PinOnly: true}
			nameErr = pv.Verify(chain)
		}
	}

	var ne *tlsverify.NameError
	switch {
	case errors.As(nameErr, &ne):
		c.add(stepSAN, name, Fail, 0, ne.Error(), c.sanHint(ne))
	case nameErr != nil:
		c.add(stepSAN, name, Skip, 0, "names not checked: "+nameErr.Error(), "")
	default:
		c.add(stepSAN, name, OK, 0, fmt.Sprintf("SANs DNS:%v name both %s (XMPP domain) and %s (server)",
			chain[0].DNSNames, v.Domain, v.ServerName), "")
	}
	if !chainOK || nameErr != nil {
		why := "not attempted: a Call Bridge does not send its handshake to a server whose certificate fails the checks"
		c.add(stepHandshake, name, Skip, 0, why, "")
		c.add(stepPing, name, Skip, 0, why, "")
		return nil
	}
	return tconn
}

// servedNames connects to addr again, without SNI, and returns the DNS
// names of the certificate the server sends then: what it serves. Nil
// when that fails. Bounded by ctx (the handshake timeout).
func (c *checker) servedNames(ctx context.Context, addr string) []string {
	d := net.Dialer{Timeout: c.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	defer conn.Close()
	tconn := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) // names only: nothing is trusted or sent
	if err := tconn.HandshakeContext(ctx); err != nil {
		return nil
	}
	if certs := tconn.ConnectionState().PeerCertificates; len(certs) > 0 {
		return certs[0].DNSNames
	}
	return nil
}

func chainHint(ce *tlsverify.ChainError) string {
	switch {
	case errors.Is(ce, tlsverify.ErrUnknownAuthority):
		return "pass the CA bundle that signed the XMPP server's certificate with -ca"
	case errors.Is(ce, tlsverify.ErrExpired):
		return "renew the XMPP server's certificate"
	case errors.Is(ce, tlsverify.ErrNotYetValid):
		return "check the clock of this host; the certificate is not valid yet"
	case errors.Is(ce, tlsverify.ErrKeyUsage):
		return "reissue the XMPP server certificate for TLS server authentication (extended key usage serverAuth)"
	}
	return "reissue the XMPP server certificate with a complete chain (the server must send its intermediates)"
}

func (c *checker) sanHint(ne *tlsverify.NameError) string {
	names := make([]string, len(ne.Required))
	for i, r := range ne.Required {
		names[i] = r.Name
	}
	h := "reissue the XMPP server certificate with SANs " + strings.Join(names, " and ")
	for _, m := range ne.Missing {
		if m.Role&tlsverify.RoleDomain != 0 && len(ne.DNSNames) > 0 {
			// It names another domain: the setting may be wrong, not it.
			h = c.checkDomain("the certificate names "+strings.Join(ne.DNSNames, ", ")+", not "+c.domain) + "if it is right, " + h
			break
		}
	}
	for _, m := range ne.Missing {
		if m.Role&tlsverify.RoleServerName != 0 && c.s.Server != "" && c.s.ServerName == "" {
			h += " (or, for a combined server dialled by another name, set -server-name to the FQDN the certificate names)"
			break
		}
	}
	return h
}

// checkHandshake runs the XEP-0114 handshake and one XEP-0199 round trip,
// then closes the stream cleanly.
func (c *checker) checkHandshake(ctx, hctx context.Context, name string, conn net.Conn) {
	start := time.Now()
	sess, err := component.NewSession(hctx, conn, component.Config{
		Name:   c.s.Name,
		Domain: c.domain,
		Secret: c.secret,
		Tuning: component.Tuning{HandshakeTimeout: c.handshakeTimeout, KeepaliveIdle: -1, PingInterval: -1},
	})
	if err != nil {
		c.add(stepHandshake, name, Fail, time.Since(start), err.Error(), c.handshakeHint(err))
		c.add(stepPing, name, Skip, 0, "not reached: no link", "")
		return
	}
	defer sess.Close()
	c.add(stepHandshake, name, OK, time.Since(start), "logged in as "+sess.Addr().String(), "")

	pctx, cancel := context.WithTimeout(ctx, c.pingTimeout)
	defer cancel()
	start = time.Now()
	rtt, err := sess.Ping(pctx)
	if err != nil {
		c.add(stepPing, name, Fail, time.Since(start), err.Error(), "the server took the handshake but does not route a ping to its domain "+c.domain+": check its log")
		return
	}
	c.add(stepPing, name, OK, time.Since(start), fmt.Sprintf("XEP-0199 ping to %s answered in %v", c.domain, rtt.Round(time.Microsecond)), "")
	c.servers = append(c.servers, name)
}

func (c *checker) handshakeHint(err error) string {
	var se *component.StreamError
	switch {
	case errors.Is(err, stream.NotAuthorized):
		return "the shared secret does not match the one set with `xmpp callbridge add " + c.s.Name + "` on the XMPP server"
	case errors.Is(err, stream.HostUnknown):
		// The server knows no such component: the name may be a typo, and
		// adding it on the server would register a bogus one.
		return "check -name first: is " + c.s.Name + " the name of this Call Bridge (as on CMS's XMPP page)? the XMPP server knows no component " + c.addr +
			"; if it is right, add the component on the XMPP server: xmpp callbridge add " + c.s.Name
	case errors.Is(err, stream.Conflict):
		return "the XMPP server already has a link for " + c.addr + ": a running Call Bridge with this name (or its stale link); Prosody refuses a second one, so run this check while that Call Bridge is stopped, or give each Call Bridge its own name"
	case errors.Is(err, stream.SeeOtherHost) && errors.As(err, &se):
		other, _ := se.OtherHost()
		return "the server redirects to " + other + ": publish that server in the SRV records or set -server " + other
	case errors.Is(err, stream.SystemShutdown):
		return "the XMPP server is shutting down: try again when it is back"
	case errors.Is(err, stream.InvalidNamespace), errors.Is(err, component.ErrNoStreamID), errors.Is(err, component.ErrProtocol):
		return "this port does not speak XEP-0114: point -server or the SRV record at the XMPP server's component port"
	case errors.Is(err, component.ErrTimeout):
		return "the server did not answer the handshake in time: is this the component port, and is the server overloaded?"
	}
	return "see the XMPP server's log for why it refused " + c.addr
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
