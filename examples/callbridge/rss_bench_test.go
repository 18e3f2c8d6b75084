package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cblink/cblink/component/componenttest"
)

// idleSettle is how long a connected process idles before its memory is
// read: long enough for the start-up garbage to be collected and the
// first keepalive timers to be armed.
const idleSettle = 1500 * time.Millisecond

// baselines are the baseline binaries of BenchmarkIdleRSS, built once per
// process next to bin (TestMain removes that directory).
var baselines = sync.OnceValues(func() (map[string]string, error) {
	out := map[string]string{}
	for _, name := range []string{"mellium", "handloop"} {
		path := filepath.Join(filepath.Dir(bin), name)
		cmd := exec.Command("go", "build", "-o", path, "github.com/cblink/cblink/internal/benchbin/"+name)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", name, err, msg)
		}
		out[name] = path
	}
	return out, nil
})

// BenchmarkIdleRSS measures the memory of the callbridge binary (default
// settings, no -status-addr) idling on one connected link, against two
// baselines given the same inputs, in the same run: a mellium.im/xmpp
// component answering pings (internal/benchbin/mellium) and a hand-written
// loop on crypto/tls with no XML library (internal/benchbin/handloop).
// It reports VmRSS and its anonymous and file-backed parts
// (/proc/PID/status) and the number of OS threads; ns/op is meaningless
// (one process per iteration, with a fixed settle) and reported as 0.
func BenchmarkIdleRSS(b *testing.B) {
	bins, err := baselines()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := componenttest.NewServer(componenttest.Options{
		Components: map[string]string{"cb1.example.com": testSecret},
		MaxRawLog:  -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ca := filepath.Join(b.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, srv.RootPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	common := []string{"-name", "cb1", "-domain", "example.com", "-server", srv.Addr(), "-ca", ca}

	for _, tc := range []struct {
		name string
		bin  string
		args []string
	}{
		// The server's certificate names example.com and localhost.
		{"callbridge", bin, append([]string{"-server-name", "localhost"}, common...)},
		{"mellium", bins["mellium"], common},
		{"handloop", bins["handloop"], common},
	} {
		b.Run("client="+tc.name, func(b *testing.B) {
			var sum [4]float64
			n := 0
			for b.Loop() {
				m := idleMemory(b, srv, tc.bin, tc.args)
				for i := range sum {
					sum[i] += m[i]
				}
				n++
			}
			b.ReportMetric(0, "ns/op")
			for i, unit := range []string{"rss-MiB", "anon-MiB", "file-MiB", "threads"} {
				b.ReportMetric(sum[i]/float64(n), unit)
			}
		})
	}
}

// idleMemory starts bin with args, waits until srv has its component
// authenticated, lets it idle for idleSettle, and returns its VmRSS,
// RssAnon and RssFile in MiB and its thread count. It then stops the
// process with SIGTERM and waits for the server to see the link end.
func idleMemory(b *testing.B, srv *componenttest.Server, bin string, args []string) [4]float64 {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), "CBLINK_SECRET="+testSecret)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := srv.WaitConn(ctx, "cb1.example.com")
	if err != nil {
		stop() // out is complete once Wait returns
		b.Fatalf("%s did not connect: %v\n%s", filepath.Base(bin), err, out.String())
	}
	time.Sleep(idleSettle)
	m, err := procStatus(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	if err := conn.WaitClosed(ctx); err != nil {
		b.Fatalf("%s: the link did not end after SIGTERM: %v", filepath.Base(bin), err)
	}
	return m
}

// procStatus reads VmRSS, RssAnon and RssFile (MiB) and Threads from
// /proc/PID/status.
func procStatus(pid int) ([4]float64, error) {
	var m [4]float64
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	keys := map[string]int{"VmRSS:": 0, "RssAnon:": 1, "RssFile:": 2, "Threads:": 3}
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		i, ok := keys[fields[0]]
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			return m, fmt.Errorf("/proc/%d/status: %q: %v", pid, sc.Text(), err)
		}
		if i < 3 {
			v /= 1024 // kB
		}
		m[i] = v
		found++
	}
	if found != len(keys) {
		return m, fmt.Errorf("/proc/%d/status: %d of %d fields found", pid, found, len(keys))
	}
	return m, sc.Err()
}
