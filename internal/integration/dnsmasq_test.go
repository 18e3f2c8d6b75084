//go:build integration

package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cblink/cblink/discovery"
)

// srvRecord is one SRV record; Name defaults to
// _xmpp-component._tcp.example.com.
type srvRecord struct {
	Name                   string
	Target                 string
	Port, Priority, Weight uint16
}

// hostRecord gives a name its A/AAAA records.
type hostRecord struct {
	Name  string
	Addrs []netip.Addr
}

// dnsZone is what startDNS serves; dnsmasq answers everything under
// example.com from it and forwards nothing.
type dnsZone struct {
	SRV   []srvRecord
	Hosts []hostRecord
}

// dnsmasq is a running dnsmasq serving a dnsZone on 127.0.0.1.
type dnsmasq struct {
	Addr       string // "127.0.0.1:port", for discovery.Resolver.NameServers
	Port       uint16
	ConfigFile string
	log        *logBuffer
	proc       *child
}

// serviceName is the SRV owner name a Call Bridge looks up.
const serviceName = discovery.Service + "." + domain

// startDNS starts dnsmasq serving zone on a free port of 127.0.0.1 (UDP and
// TCP) and waits until it accepts TCP connections. It stops dnsmasq in
// t.Cleanup and logs its output (queries included) if the test failed.
func startDNS(t testing.TB, zone dnsZone) *dnsmasq {
	t.Helper()
	bin := findBinary(t, "dnsmasq", pkgDnsmasq)
	port, err := freePort("127.0.0.1", true)
	require.NoError(t, err)
	dir := t.TempDir()
	d := &dnsmasq{
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))),
		Port:       port,
		ConfigFile: filepath.Join(dir, "dnsmasq.conf"),
		log:        &logBuffer{},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "port=%d\n", port)
	b.WriteString("listen-address=127.0.0.1\nbind-interfaces\n")
	b.WriteString("no-resolv\nno-hosts\nno-poll\n")
	b.WriteString("keep-in-foreground\nlog-facility=-\nlog-queries\n")
	// Stay the user and group that started it: dnsmasq started as root
	// otherwise drops to nobody:dip, and that change of credentials clears
	// the parent-death signal (prctl PR_SET_PDEATHSIG), so a test binary
	// that dies (a -timeout panic) would leave dnsmasq running.
	usr, grp := currentUser(t)
	fmt.Fprintf(&b, "user=%s\ngroup=%s\n", usr, grp)
	fmt.Fprintf(&b, "local=/%s/\nlocal-ttl=60\n", domain)
	for _, r := range zone.SRV {
		name := r.Name
		if name == "" {
			name = serviceName
		}
		fmt.Fprintf(&b, "srv-host=%s,%s,%d,%d,%d\n", name, r.Target, r.Port, r.Priority, r.Weight)
	}
	for _, h := range zone.Hosts {
		addrs := make([]string, len(h.Addrs))
		for i, a := range h.Addrs {
			addrs[i] = a.String()
		}
		fmt.Fprintf(&b, "host-record=%s,%s\n", h.Name, strings.Join(addrs, ","))
	}
	require.NoError(t, os.WriteFile(d.ConfigFile, []byte(b.String()), 0o644))

	cmd := exec.Command(bin, "--conf-file="+d.ConfigFile, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"))
	cmd.Dir = dir
	begin := time.Now()
	d.proc, err = startChild("dnsmasq", cmd, d.log, d.ConfigFile)
	require.NoError(t, err)
	t.Cleanup(func() {
		d.proc.stop(3 * time.Second)
		if t.Failed() {
			t.Logf("dnsmasq config:\n%s\ndnsmasq output:\n%s", b.String(), d.log.String())
		}
	})
	require.NoError(t, waitAccepting(d.proc, 10*time.Second, d.Addr))
	t.Logf("dnsmasq on %s started in %v", d.Addr, time.Since(begin).Round(time.Millisecond))
	return d
}

// currentUser names the user running the tests and its primary group.
func currentUser(t testing.TB) (name, group string) {
	t.Helper()
	u, err := user.Current()
	require.NoError(t, err)
	g, err := user.LookupGroupId(u.Gid)
	require.NoError(t, err)
	return u.Username, g.Name
}

// Resolver returns a discovery.Resolver that asks only this dnsmasq.
func (d *dnsmasq) Resolver() *discovery.Resolver {
	return &discovery.Resolver{NameServers: []string{d.Addr}, Timeout: 2 * time.Second}
}
