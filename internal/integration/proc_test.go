//go:build integration

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Debian packages that provide the server binaries, for the messages of
// tests that cannot find them.
const (
	pkgProsody = "prosody"
	pkgDnsmasq = "dnsmasq-base"
)

// findBinary returns the path of a server binary, looking in PATH and then
// in the directories Debian installs it to. When it is missing the test
// fails if the CI environment variable is set (CI must always run these
// tests) and is skipped otherwise, naming the package to install.
func findBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found in PATH or /usr/{,s}bin: install the Debian package %q (apt-get install -y %s)", name, pkg, pkg)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// logBuffer collects a child process's output, bounded so that a chatty
// server cannot exhaust memory; the oldest half is dropped when full.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLogBytes = 1 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) > maxLogBytes {
		keep := b.buf.Bytes()[b.buf.Len()/2:]
		keep = append([]byte("[... earlier output dropped ...]\n"), keep...)
		b.buf.Reset()
		b.buf.Write(keep)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// child is one running server process.
type child struct {
	name string // "prosody xmpp1.example.com", for messages
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, set before done is closed
}

// startChild starts cmd with its output going to out, records it for the
// leftover check in TestMain and waits for it in the background.
func startChild(name string, cmd *exec.Cmd, out *logBuffer, marker string) (*child, error) {
	cmd.Stdout = out
	cmd.Stderr = out
	// Own process group, so a ^C on the test run does not race our own
	// shutdown; killed with the test binary should it die unexpectedly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	registry.addProcess(cmd.Process.Pid, name, marker)
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL after grace, and waits for it.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(grace):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// waitAccepting polls TCP connects to every address until all accept or the
// deadline passes; it gives up early when the process exits.
func waitAccepting(c *child, deadline time.Duration, addrs ...string) error {
	end := time.Now().Add(deadline)
	for _, addr := range addrs {
		for {
			conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
			if err == nil {
				conn.Close()
				break
			}
			if c.exited() {
				return fmt.Errorf("%s exited before accepting on %s: %v", c.name, addr, c.err)
			}
			if time.Now().After(end) {
				return fmt.Errorf("%s not accepting on %s after %v: %w", c.name, addr, deadline, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// freePort returns a TCP port on ip that was free a moment ago: bound with
// port 0, then closed. With udpToo the same port must be free for UDP too
// (a DNS server listens on both).
func freePort(ip string, udpToo bool) (uint16, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if udpToo {
			u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				l.Close()
				continue
			}
			u.Close()
		}
		l.Close()
		registry.addPort("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if udpToo {
			registry.addPort("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		}
		return uint16(port), nil
	}
	return 0, errors.New("no free port found")
}

// runRegistry remembers every process started and port handed out in this
// test run, for the final check in TestMain.
type runRegistry struct {
	mu    sync.Mutex
	procs []procRecord
	ports []portRecord
}

type procRecord struct {
	pid    int
	name   string
	marker string // a string in its command line (its config file path)
}

type portRecord struct{ network, addr string }

var registry runRegistry

func (r *runRegistry) addProcess(pid int, name, marker string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, procRecord{pid, name, marker})
}

func (r *runRegistry) addPort(network, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ports = append(r.ports, portRecord{network, addr})
}

// leftovers lists the processes of this run still alive (and kills them, so
// that nothing outlives the run) and the ports still bound, one line each.
func (r *runRegistry) leftovers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	seen := map[int]bool{}
	for _, p := range r.procs {
		seen[p.pid] = true
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
		if err != nil {
			continue // gone
		}
		if strings.Contains(string(cmdline), p.marker) {
			out = append(out, fmt.Sprintf("process %d (%s) still running; killed now", p.pid, p.name))
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	// Children this test binary forgot to record (a server that forked).
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || seen[pid] {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after ')'.
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(me) {
			continue
		}
		if strings.HasPrefix(comm, "lua") || comm == "prosody" || comm == "dnsmasq" || comm == "prosodyctl" {
			out = append(out, fmt.Sprintf("child process %d (%s) still running", pid, comm))
		}
	}
	for _, p := range r.ports {
		if p.network == "udp" {
			c, err := net.ListenPacket("udp", p.addr)
			if err != nil {
				out = append(out, fmt.Sprintf("udp %s still bound: %v", p.addr, err))
				continue
			}
			c.Close()
			continue
		}
		l, err := net.Listen("tcp", p.addr)
		if err != nil {
			out = append(out, fmt.Sprintf("tcp %s still bound: %v", p.addr, err))
			continue
		}
		l.Close()
	}
	return out
}
