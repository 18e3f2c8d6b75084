package discovery

import (
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The query layers under Lookup, outermost first. Each calls the one below
// it, except that askOneServer calls exchangeOnce, then rrsetFromReply.
//
//	lookupRRset     answer from the cache or a concurrent identical query (cache.go)
//	fetchAndCache   cache the answer; serve a stale one when all servers fail (cache.go)
//	followCNAMEs    ask again for a CNAME target the reply left unanswered (query.go)
//	askServers      try each name server in turn, Attempts rounds (query.go)
//	askOneServer    one server: UDP, then TCP when truncated; trace each try (query.go)
//	exchangeOnce    one round trip over one transport, cut short when ctx ends (query.go)
//	rrsetFromReply  check the reply, extract the records asked for (reply.go)
//
// Lookup reaches lookupRRset through srv (srv.go) and resolveTargets
// (addrs.go).

// Defaults for the zero values of [Resolver] fields.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultAttempts   = 2
	DefaultMaxTTL     = time.Hour
	DefaultMaxStale   = 24 * time.Hour
	DefaultMaxRecords = 64
	// ResolvConf is the file read when Resolver.NameServers is empty.
	ResolvConf = "/etc/resolv.conf"
)

const (
	udpSize      = 1232 // EDNS0 payload size (DNS flag day 2020)
	maxCNAMEs    = 8    // CNAME chain length accepted
	staleTTL     = 30 * time.Second
	maxCacheSize = 4096
)

// forever stands for "no TTL constraint yet" before clamping.
const forever = time.Duration(1<<63 - 1)

// Resolver finds XMPP component endpoints in DNS. Its zero value is usable:
// it reads the name servers from /etc/resolv.conf on first use. A Resolver
// is safe for concurrent use; do not change its fields after first use. It
// starts no goroutine that outlives a call.
type Resolver struct {
	// NameServers are "host:port" (or "host", port 53) addresses queried in
	// order, moving to the next on timeout, SERVFAIL, REFUSED or a bad
	// reply. Empty: those of /etc/resolv.conf.
	NameServers []string
	// Timeout bounds each query to one name server. Zero: the resolv.conf
	// timeout when NameServers is empty, else DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many rounds over all name servers a query makes. Zero:
	// the resolv.conf attempts when NameServers is empty, else
	// DefaultAttempts.
	Attempts int
	// MinTTL and MaxTTL clamp how long answers are cached (zero MinTTL: no
	// floor, so a TTL of 0 is not cached; zero MaxTTL: DefaultMaxTTL). They
	// also clamp the TTL reported on endpoints.
	MinTTL, MaxTTL time.Duration
	// MaxStale is how long after expiry a cached answer may still be served
	// when every name server fails (RFC 8767). Zero: DefaultMaxStale;
	// negative: never serve stale answers.
	MaxStale time.Duration
	// MaxRecords bounds the records accepted in one answer; a larger answer
	// is an error of KindTooLarge. Zero: DefaultMaxRecords.
	MaxRecords int
	// Rand orders SRV records of equal priority. Nil: the math/rand/v2
	// global source. A non-nil Rand is used under a lock.
	Rand *rand.Rand
	// Now returns the current time for cache expiry. Nil: time.Now.
	Now func() time.Time

	sequential bool // tests: resolve targets one at a time (benchmark baseline)

	confOnce sync.Once
	conf     resolvConf

	randMu sync.Mutex

	mu      sync.Mutex
	cache   map[cacheKey]*cacheEntry
	flights map[cacheKey]*flight
	plans   map[Request]*plan
}

type resolvConf struct {
	servers  []string
	timeout  time.Duration
	attempts int
	err      error
}

// config resolves the name servers, timeout and attempts once.
func (r *Resolver) config() *resolvConf {
	r.confOnce.Do(func() {
		c := &r.conf
		c.timeout, c.attempts = DefaultTimeout, DefaultAttempts
		servers := r.NameServers
		if len(servers) == 0 {
			cc, err := dns.ClientConfigFromFile(ResolvConf)
			if err != nil {
				c.err = &Error{Op: "read", Name: ResolvConf, Kind: KindNoNameServers, Err: err}
				return
			}
			for _, s := range cc.Servers {
				servers = append(servers, net.JoinHostPort(s, cc.Port))
			}
			if cc.Timeout > 0 {
				c.timeout = time.Duration(cc.Timeout) * time.Second
			}
			if cc.Attempts > 0 {
				c.attempts = cc.Attempts
			}
		}
		for _, s := range servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
			}
			c.servers = append(c.servers, s)
		}
		if r.Timeout > 0 {
			c.timeout = r.Timeout
		}
		if r.Attempts > 0 {
			c.attempts = r.Attempts
		}
		if len(c.servers) == 0 {
			c.err = &Error{Op: "configure", Name: ResolvConf, Kind: KindNoNameServers}
		}
	})
	return &r.conf
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) maxRecords() int {
	if r.MaxRecords > 0 {
		return r.MaxRecords
	}
	return DefaultMaxRecords
}

func (r *Resolver) maxStale() time.Duration {
	if r.MaxStale == 0 {
		return DefaultMaxStale
	}
	return max(r.MaxStale, 0)
}

// clampTTL applies MinTTL and MaxTTL.
func (r *Resolver) clampTTL(d time.Duration) time.Duration {
	hi := r.MaxTTL
	if hi <= 0 {
		hi = DefaultMaxTTL
	}
	return min(max(d, r.MinTTL), hi)
}

// intN returns a random int in [0, n).
func (r *Resolver) intN(n int) int {
	if r.Rand == nil {
		return rand.IntN(n)
	}
	r.randMu.Lock()
	defer r.randMu.Unlock()
	return r.Rand.IntN(n)
}
