// Package ratelimit is authd's request limiter: a token bucket per key
// (normally the client's network, see RemoteIPKey) combined with one global
// bucket, so that a single source cannot exhaust an endpoint and a flood
// spread over many sources is still capped as a whole.
//
// Memory is bounded: at most Config.MaxKeys per-key buckets are kept, the
// least recently used one making room for a new key. Evicting a bucket only
// forgets that key's recent history (it starts again with a full burst); the
// global bucket still bounds what a flood over many distinct keys achieves.
package ratelimit

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/authd/authd/internal/oauth"
)

// DefaultMaxKeys bounds the per-key buckets when Config.MaxKeys is 0. Each
// costs a few hundred bytes, so the default bounds the limiter at a few MB.
const DefaultMaxKeys = 10000

// Config is one limiter's configuration. Rates are in requests per minute;
// a rate of 0 disables that bucket (both 0: no limit at all).
type Config struct {
	// PerKeyPerMinute is the sustained rate allowed to one key (client IP).
	PerKeyPerMinute float64 `mapstructure:"per_ip_per_minute"`
	// PerKeyBurst is how many requests one key may make at once.
	PerKeyBurst int `mapstructure:"per_ip_burst"`
	// GlobalPerMinute is the sustained rate allowed to all keys together.
	GlobalPerMinute float64 `mapstructure:"global_per_minute"`
	// GlobalBurst is how many requests all keys together may make at once.
	GlobalBurst int `mapstructure:"global_burst"`
	// MaxKeys bounds the number of per-key buckets kept (0: DefaultMaxKeys).
	MaxKeys int `mapstructure:"max_keys"`
}

// Validate lists every problem with c.
func (c Config) Validate() []error {
	var errs []error
	if c.PerKeyPerMinute < 0 || math.IsNaN(c.PerKeyPerMinute) || math.IsInf(c.PerKeyPerMinute, 0) {
		errs = append(errs, errors.New("per_ip_per_minute must be a finite number >= 0"))
	}
	if c.PerKeyPerMinute > 0 && c.PerKeyBurst < 1 {
		errs = append(errs, errors.New("per_ip_burst must be at least 1 when per_ip_per_minute is set"))
	}
	if c.GlobalPerMinute < 0 || math.IsNaN(c.GlobalPerMinute) || math.IsInf(c.GlobalPerMinute, 0) {
		errs = append(errs, errors.New("global_per_minute must be a finite number >= 0"))
	}
	if c.GlobalPerMinute > 0 && c.GlobalBurst < 1 {
		errs = append(errs, errors.New("global_burst must be at least 1 when global_per_minute is set"))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("max_keys must be >= 0, got %d", c.MaxKeys))
	}
	return errs
}

// Limiter combines per-key token buckets with a global one. A nil *Limiter
// allows everything. It is safe for concurrent use.
type Limiter struct {
	now func() time.Time

	perKey      rate.Limit // 0: no per-key limit
	perKeyBurst int
	global      *rate.Limiter // nil: no global limit
	maxKeys     int

	mu   sync.Mutex
	keys map[string]*list.Element // of *bucket
	lru  *list.List               // front: most recently used
}

type bucket struct {
	key string
	lim *rate.Limiter
}

// New returns a limiter for c; now is the clock (time.Now in production).
// Invalid values are clamped (bursts to at least 1), so check c.Validate
// where configuration is loaded.
func New(c Config, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{
		now:     now,
		maxKeys: c.MaxKeys,
		keys:    map[string]*list.Element{},
		lru:     list.New(),
	}
	if l.maxKeys <= 0 {
		l.maxKeys = DefaultMaxKeys
	}
	if c.PerKeyPerMinute > 0 {
		l.perKey = perMinute(c.PerKeyPerMinute)
		l.perKeyBurst = max(c.PerKeyBurst, 1)
	}
	if c.GlobalPerMinute > 0 {
		l.global = rate.NewLimiter(perMinute(c.GlobalPerMinute), max(c.GlobalBurst, 1))
	}
	return l
}

func perMinute(n float64) rate.Limit { return rate.Limit(n / 60) }

// Allow takes one token from key's bucket and from the global bucket, or
// from neither: a request refused by one bucket does not drain the other.
// When refused, retryAfter says how long until a token is available.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()

	var kb *rate.Limiter
	if l.perKey > 0 {
		kb = l.bucket(key)
		if d := wait(kb, now); d > 0 {
			return false, d
		}
	}
	if l.global != nil {
		if d := wait(l.global, now); d > 0 {
			return false, d
		}
		l.global.AllowN(now, 1)
	}
	if kb != nil {
		kb.AllowN(now, 1)
	}
	return true, 0
}

// wait is how long until lim holds a whole token. Every access to the
// buckets happens under l.mu, so a zero result means AllowN will succeed.
func wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return max(time.Duration(missing/float64(lim.Limit())*float64(time.Second)), time.Nanosecond)
}

// bucket returns key's bucket, creating it (and evicting the least recently
// used one when full). Called with l.mu held.
func (l *Limiter) bucket(key string) *rate.Limiter {
	if e, ok := l.keys[key]; ok {
		l.lru.MoveToFront(e)
		return e.Value.(*bucket).lim
	}
	for l.lru.Len() >= l.maxKeys {
		oldest := l.lru.Back()
		l.lru.Remove(oldest)
		delete(l.keys, oldest.Value.(*bucket).key)
	}
	b := &bucket{key: key, lim: rate.NewLimiter(l.perKey, l.perKeyBurst)}
	l.keys[key] = l.lru.PushFront(b)
	return b.lim
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1, as the
// Retry-After header wants (RFC 9110 §10.2.3).
func RetryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	return max(s, 1)
}

// Middleware refuses requests over the limit with 429, a Retry-After header
// and an RFC 6749-style JSON error body. A nil limiter passes everything.
func Middleware(l *Limiter, key func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if l == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ok, retry := l.Allow(key(r)); !ok {
				oauth.WriteError(w, r, nil, oauth.TooManyRequests(RetryAfterSeconds(retry)))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RemoteIPKey keys a request by its client network: the IPv4 address, or
// the /64 of an IPv6 address (one host usually owns a whole /64, so keying
// by full address would give it 2^64 buckets). It relies on the server's
// trusted-proxy middleware having set r.RemoteAddr to the real client.
func RemoteIPKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return Network(a, 32, 64).String()
}

// Network returns the prefix of a's network: IPv4 (and IPv4-mapped IPv6)
// addresses masked to v4Bits, IPv6 addresses to v6Bits.
func Network(a netip.Addr, v4Bits, v6Bits int) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := v6Bits
	if a.Is4() {
		bits = v4Bits
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}
