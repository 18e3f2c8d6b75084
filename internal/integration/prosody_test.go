//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/internal/testpki"
)

// Defaults of prosodyOptions.
const (
	defaultSecret   = "integration-Sh4red-s3cret"
	defaultUser     = "alice"
	defaultPassword = "alice-Pa55word"
)

// prosodyOptions configures startProsody; the zero value gives
// xmpp1.example.com on a fresh loopback address, certificate with both SANs,
// component cb1.example.com with defaultSecret and the c2s user alice.
type prosodyOptions struct {
	// FQDN is the server's host name. Default "xmpp1.example.com".
	FQDN string
	// IP is the loopback address to listen on. Default: the next of
	// 127.0.0.2, 127.0.0.3, ... (one address per instance, so that the
	// DNS records can tell instances apart by address).
	IP netip.Addr
	// PKI issues the certificate. Default: a new test CA.
	PKI *testPKI
	// Cert is the server certificate. Default: PKI.serverLeaf(FQDN).
	Cert *testpki.Leaf
	// Components maps component addresses to secrets. Default:
	// {componentAddr: defaultSecret}.
	Components map[string]string
	// Users maps c2s localparts (at example.com) to passwords, registered
	// with prosodyctl before the start. Default: {defaultUser:
	// defaultPassword}; an empty non-nil map registers nobody.
	Users map[string]string
	// Debug logs at Prosody's debug level (every stanza) instead of info.
	Debug bool
	// WebSocket also serves XMPP over WebSocket (RFC 7395, mod_websocket)
	// on HTTPPort, with the anonymous host guestDomain for web users.
	WebSocket bool
}

// guestDomain is the anonymous host of a prosodyOptions.WebSocket instance.
const guestDomain = "guest." + domain

// prosody is a running (or stopped) Prosody instance. Its addresses and ports
// stay the same across Stop and Start, for failover tests.
type prosody struct {
	t    testing.TB
	FQDN string
	IP   netip.Addr
	// C2SPort takes client connections (STARTTLS); ComponentPort takes
	// XEP-0114 over plain TCP; TLSPort is direct TLS, handed by
	// net_multiplex to the component or c2s listener.
	C2SPort, ComponentPort, TLSPort uint16
	PKI                             *testPKI
	Cert                            *testpki.Leaf
	Dir, ConfigFile                 string
	CertFile, KeyFile               string
	Secrets                         map[string]string
	debug                           bool
	// StartupTime is how long the last Start took until every port accepted.
	StartupTime time.Duration
	// HTTPPort serves XMPP over WebSocket; 0 unless WebSocket was set.
	HTTPPort uint16

	bin string
	log *logBuffer

	mu   sync.Mutex
	proc *child
}

var nextLoopback atomic.Uint32

// newLoopbackIP returns the next loopback address from 127.0.0.2 on.
func newLoopbackIP() netip.Addr {
	n := nextLoopback.Add(1)
	return netip.AddrFrom4([4]byte{127, 0, byte((n - 1) / 253), byte(2 + (n-1)%253)})
}

// startProsody writes a Prosody configuration into a temporary directory,
// registers the users, starts Prosody and waits until it accepts
// connections. It stops Prosody in t.Cleanup and then, if the test failed,
// logs Prosody's output.
func startProsody(t testing.TB, opts prosodyOptions) *prosody {
	t.Helper()
	p := newProsody(t, opts)
	p.Start()
	return p
}

// newProsody prepares an instance without starting it.
func newProsody(t testing.TB, opts prosodyOptions) *prosody {
	t.Helper()
	bin := findBinary(t, "prosody", pkgProsody)
	ctl := findBinary(t, "prosodyctl", pkgProsody)
	if opts.FQDN == "" {
		opts.FQDN = "xmpp1." + domain
	}
	if !opts.IP.IsValid() {
		opts.IP = newLoopbackIP()
	}
	if opts.PKI == nil {
		opts.PKI = newPKI(t)
	}
	if opts.Cert == nil {
		opts.Cert = opts.PKI.serverLeaf(t, opts.FQDN)
	}
	if opts.Components == nil {
		opts.Components = map[string]string{componentAddr: defaultSecret}
	}
	if opts.Users == nil {
		opts.Users = map[string]string{defaultUser: defaultPassword}
	}
	p := &prosody{
		t: t, FQDN: opts.FQDN, IP: opts.IP, PKI: opts.PKI, Cert: opts.Cert,
		Secrets: opts.Components, debug: opts.Debug, bin: bin, log: &logBuffer{},
	}
	ports := []*uint16{&p.C2SPort, &p.ComponentPort, &p.TLSPort}
	if opts.WebSocket {
		ports = append(ports, &p.HTTPPort)
	}
	ip := p.IP.String()
	var err error
	for _, port := range ports {
		*port, err = freePort(ip, false)
		require.NoError(t, err, "loopback address %s must be usable (Linux routes all of 127/8 to lo)", ip)
	}
	p.Dir = t.TempDir()
	certDir := filepath.Join(p.Dir, "certs")
	require.NoError(t, os.MkdirAll(filepath.Join(p.Dir, "data"), 0o750))
	require.NoError(t, os.MkdirAll(certDir, 0o750))
	p.CertFile = filepath.Join(certDir, "server.crt")
	p.KeyFile = filepath.Join(certDir, "server.key")
	require.NoError(t, os.WriteFile(p.CertFile, p.Cert.CertPEM(), 0o644))
	// The key is readable by its owner only: Prosody runs as the same user
	// (root with run_as_root in CI), which checkReadable confirms.
	require.NoError(t, os.WriteFile(p.KeyFile, p.Cert.KeyPEM(), 0o600))
	checkReadable(t, p.CertFile, p.KeyFile)
	p.ConfigFile = filepath.Join(p.Dir, "prosody.cfg.lua")
	require.NoError(t, os.WriteFile(p.ConfigFile, []byte(p.config(certDir)), 0o644))

	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prosody %s (%s) output:\n%s", p.FQDN, p.IP, p.log.String())
		}
	})

	users := make([]string, 0, len(opts.Users))
	for u := range opts.Users {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, ctl, "--config", p.ConfigFile, "register", u, domain, opts.Users[u]).CombinedOutput()
		cancel()
		require.NoError(t, err, "prosodyctl register %s: %s", u, out)
		_, err = os.Stat(filepath.Join(p.Dir, "data", "example%2ecom", "accounts", u+".dat"))
		require.NoError(t, err, "prosodyctl register did not store %s in data_path; output: %s", u, out)
	}
	return p
}

// checkReadable fails the test when a file Prosody needs cannot be read by
// this (and therefore Prosody's) user.
func checkReadable(t testing.TB, files ...string) {
	t.Helper()
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err, "prosody must be able to read %s", f)
		fh.Close()
	}
}

// lua quotes s as a Lua string literal.
func lua(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// config returns the Prosody configuration; see
// /work/shared/reference/prosody-component.cfg.lua for the lines that matter.
func (p *prosody) config(certDir string) string {
	ip := lua(p.IP.String())
	ssl := fmt.Sprintf("{ certificate = %s; key = %s }", lua(p.CertFile), lua(p.KeyFile))
	var b strings.Builder
	fmt.Fprintf(&b, "-- Generated by cblink internal/integration for %s.\n", p.FQDN)
	b.WriteString("run_as_root = true -- CI runs as root; Prosody refuses to otherwise\n")
	fmt.Fprintf(&b, "pidfile = %s\n", lua(filepath.Join(p.Dir, "prosody.pid")))
	fmt.Fprintf(&b, "data_path = %s\n", lua(filepath.Join(p.Dir, "data")))
	fmt.Fprintf(&b, "certificates = %s\n", lua(certDir))
	b.WriteString("network_settings = { nagle = false } -- else about 40 ms per TLS handshake\n")
	level := "info"
	if p.debug {
		level = "debug"
	}
	fmt.Fprintf(&b, "log = { { levels = { min = %s }, to = \"console\" } }\n", lua(level))
	fmt.Fprintf(&b, "interfaces = { %s }\n", ip)
	fmt.Fprintf(&b, "c2s_ports = { %d }\n", p.C2SPort)
	b.WriteString("c2s_direct_tls_ports = { }\nlegacy_ssl_ports = { }\n")
	fmt.Fprintf(&b, "component_interfaces = { %s }\n", ip)
	fmt.Fprintf(&b, "component_ports = { %d }\n", p.ComponentPort)
	fmt.Fprintf(&b, "ssl_interfaces = { %s }\n", ip)
	fmt.Fprintf(&b, "ssl_ports = { %d } -- direct TLS, demultiplexed by net_multiplex\n", p.TLSPort)
	fmt.Fprintf(&b, "ssl = %s\n", ssl)
	if p.HTTPPort != 0 {
		// XMPP over WebSocket for web users (the pitfalls, each seen: plain
		// ws:// logins get no stream features without
		// consider_websocket_secure; mod_http binds local_interfaces unless
		// http_interfaces is set, and opens https on 5281 unless
		// https_ports is empty).
		b.WriteString(`modules_enabled = { "disco"; "saslauth"; "tls"; "ping"; "net_multiplex"; "websocket" }` + "\n")
		fmt.Fprintf(&b, "http_interfaces = { %s }\nhttp_ports = { %d }\nhttps_ports = { }\n", ip, p.HTTPPort)
		b.WriteString("consider_websocket_secure = true\n")
	} else {
		b.WriteString(`modules_enabled = { "disco"; "saslauth"; "tls"; "ping"; "net_multiplex" }` + "\n")
	}
	b.WriteString(`modules_disabled = { "s2s"; "offline" }` + "\n")
	b.WriteString(`authentication = "internal_hashed"` + "\n")
	b.WriteString(`storage = "internal"` + "\n\n")
	// The TLS SNI must name this host: Prosody refuses others.
	fmt.Fprintf(&b, "VirtualHost %s\n  ssl = %s\n\n", lua(domain), ssl)
	if p.HTTPPort != 0 {
		fmt.Fprintf(&b, "VirtualHost %s\n  authentication = \"anonymous\"\n  ssl = %s\n\n", lua(guestDomain), ssl)
	}
	addrs := make([]string, 0, len(p.Secrets))
	for a := range p.Secrets {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Fprintf(&b, "Component %s\n  component_secret = %s\n", lua(a), lua(p.Secrets[a]))
	}
	return b.String()
}

// TLSAddr is the direct TLS address (component link, as a Call Bridge dials it).
func (p *prosody) TLSAddr() string { return p.hostPort(p.TLSPort) }

// ComponentAddr is the plain TCP XEP-0114 address.
func (p *prosody) ComponentAddr() string { return p.hostPort(p.ComponentPort) }

// WebSocketURL is the XMPP-over-WebSocket URL; "" unless WebSocket was set.
func (p *prosody) WebSocketURL() string {
	if p.HTTPPort == 0 {
		return ""
	}
	return "ws://" + p.hostPort(p.HTTPPort) + "/xmpp-websocket"
}

// C2SAddr is the client-to-server address (STARTTLS).
func (p *prosody) C2SAddr() string { return p.hostPort(p.C2SPort) }

func (p *prosody) hostPort(port uint16) string {
	return net.JoinHostPort(p.IP.String(), strconv.Itoa(int(port)))
}

// Start starts the stopped instance on its addresses and ports and waits
// until it accepts connections on all of them; it fails the test otherwise.
// Starting a running instance fails the test.
func (p *prosody) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Nil(p.t, p.proc, "prosody %s is already running", p.FQDN)
	begin := time.Now()
	cmd := exec.Command(p.bin, "-F", "--config", p.ConfigFile)
	cmd.Dir = p.Dir
	proc, err := startChild("prosody "+p.FQDN, cmd, p.log, p.ConfigFile)
	require.NoError(p.t, err)
	p.proc = proc
	addrs := []string{p.TLSAddr(), p.C2SAddr(), p.ComponentAddr()}
	if p.HTTPPort != 0 {
		addrs = append(addrs, p.hostPort(p.HTTPPort))
	}
	err = waitAccepting(proc, 10*time.Second, addrs...)
	p.StartupTime = time.Since(begin)
	require.NoError(p.t, err)
	p.t.Logf("prosody %s on %s started in %v (pid %d)", p.FQDN, p.IP, p.StartupTime.Round(time.Millisecond), cmd.Process.Pid)
}

// Stop stops the instance (SIGTERM, SIGKILL after 3 s) and waits for it to
// exit. Stopping a stopped instance does nothing.
func (p *prosody) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return
	}
	p.proc.stop(3 * time.Second)
	p.proc = nil
}

// Freeze stops the instance's process with SIGSTOP, as a hung server: its
// kernel still accepts TCP connections and buffers what arrives, but
// nothing answers. Thaw resumes it; a frozen instance must be thawed
// before Stop (register t.Cleanup(p.Thaw) after starting it).
func (p *prosody) Freeze() { p.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen instance (SIGCONT); it does nothing otherwise.
func (p *prosody) Thaw() { p.signal(syscall.SIGCONT) }

func (p *prosody) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil && !p.proc.exited() {
		_ = p.proc.cmd.Process.Signal(sig)
	}
}

// Running reports whether the instance is started and has not exited.
func (p *prosody) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && !p.proc.exited()
}

// Log returns Prosody's output so far.
func (p *prosody) Log() string { return p.log.String() }
