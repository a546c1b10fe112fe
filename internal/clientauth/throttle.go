package clientauth

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/ratelimit"
)

// ThrottleConfig bounds failed credential checks (config key
// rate_limits.client_auth_failures). Rates are failures per minute; a rate
// of 0 turns that limit off. Successful checks are never counted.
type ThrottleConfig struct {
	// PerIPPerMinute and PerIPBurst bound the failures of one client
	// network (IPv4 address, IPv6 /64; see ratelimit.RemoteIPKey).
	PerIPPerMinute float64 `mapstructure:"per_ip_per_minute"`
	PerIPBurst     int     `mapstructure:"per_ip_burst"`
	// PerClientPerMinute and PerClientBurst bound the failures for one
	// client id from all networks together, except networks where that
	// client authenticated successfully in the last day, which get a
	// budget of their own: guessing spread over many addresses is slowed,
	// and cannot lock a working client out.
	PerClientPerMinute float64 `mapstructure:"per_client_per_minute"`
	PerClientBurst     int     `mapstructure:"per_client_burst"`
}

// DefaultThrottle is small: a legitimate client fails rarely.
var DefaultThrottle = ThrottleConfig{PerIPPerMinute: 10, PerIPBurst: 20, PerClientPerMinute: 30, PerClientBurst: 60}

// Validate lists every problem with c.
func (c ThrottleConfig) Validate() []error {
	var errs []error
	for _, v := range []struct {
		name  string
		rate  float64
		burst int
	}{{"per_ip", c.PerIPPerMinute, c.PerIPBurst}, {"per_client", c.PerClientPerMinute, c.PerClientBurst}} {
		if v.rate < 0 || v.rate != v.rate || v.rate > 1e12 {
			errs = append(errs, fmt.Errorf("%s_per_minute must be a finite number >= 0", v.name))
		}
		if v.rate > 0 && v.burst < 1 {
			errs = append(errs, fmt.Errorf("%s_burst must be at least 1 when %s_per_minute is set", v.name, v.name))
		}
	}
	return errs
}

// knownGoodFor is how long a network that authenticated a client keeps its
// own per-client budget; maxKnownGood bounds how many such pairs are kept.
const (
	knownGoodFor = 24 * time.Hour
	maxKnownGood = 10000
)

// Throttle limits failed credential checks at every endpoint that checks
// a client secret or registration access token (/token, /revoke,
// /introspect, RFC 7592), per client network and per client id, before
// any secret is compared: once a budget is spent, the answer is 429 with
// Retry-After and no lookup or comparison happens. A nil *Throttle limits
// nothing. Budgets live in this process: each replica counts its own.
type Throttle struct {
	byAddr, byClient *ratelimit.Budget
	now              func() time.Time

	mu   sync.Mutex
	good map[string]time.Time // client id + network → last success
}

// NewThrottle returns the throttle for c; now is the clock (time.Now if nil).
func NewThrottle(c ThrottleConfig, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{
		byAddr:   ratelimit.NewBudget(c.PerIPPerMinute, c.PerIPBurst, 0, now),
		byClient: ratelimit.NewBudget(c.PerClientPerMinute, c.PerClientBurst, 0, now),
		now:      now,
		good:     map[string]time.Time{},
	}
}

// Attempt is one credential check admitted by Check. Call Done with its
// outcome once the credentials have been judged.
type Attempt struct {
	t            *Throttle
	addr, client string
	pair         string
}

// Check admits a credential check for clientID ("" when there is none,
// e.g. a static introspection token) from r's network, or returns the 429
// to answer instead. secret says whether the caller presented a secret (a
// client secret or a registration access token): only a success with one
// makes the network known-good for the client, so that a public client's
// id, which anyone may present, earns nothing.
func (t *Throttle) Check(r *http.Request, clientID string, secret bool) (Attempt, error) {
	if t == nil {
		return Attempt{}, nil
	}
	a := Attempt{t: t, addr: "ip:" + ratelimit.RemoteIPKey(r)}
	if clientID != "" {
		pair := clientID + "\x00" + a.addr
		a.client = "client:" + clientID
		if t.knownGood(pair) {
			a.client = "client:" + pair
		}
		if secret {
			a.pair = pair
		}
	}
	var wait time.Duration
	if blocked, d := t.byAddr.Blocked(a.addr); blocked {
		wait = d
	}
	if a.client != "" {
		if blocked, d := t.byClient.Blocked(a.client); blocked {
			wait = max(wait, d)
		}
	}
	if wait > 0 {
		return Attempt{}, oauth.TooManyRequests(ratelimit.RetryAfterSeconds(wait)).
			WithCause(errors.New("too many failed client authentications"))
	}
	return a, nil
}

// Done records the outcome of the check: a failure is charged to the
// network and the client id, a success marks the network as known-good
// for the client.
func (a Attempt) Done(ok bool) {
	t := a.t
	if t == nil {
		return
	}
	if ok {
		if a.pair != "" {
			t.remember(a.pair)
		}
		return
	}
	t.byAddr.Charge(a.addr)
	if a.client != "" {
		t.byClient.Charge(a.client)
	}
}

func (t *Throttle) knownGood(pair string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.good[pair]
	return ok && t.now().Sub(at) < knownGoodFor
}

func (t *Throttle) remember(pair string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	last, ok := t.good[pair]
	if ok && now.Sub(last) < time.Hour {
		return // fresh enough: the hot path writes nothing
	}
	if !ok && len(t.good) >= maxKnownGood {
		for k, at := range t.good {
			if now.Sub(at) >= knownGoodFor {
				delete(t.good, k)
			}
		}
		if len(t.good) >= maxKnownGood {
			clear(t.good) // at worst, working clients share the id's budget again
		}
	}
	t.good[pair] = now
}
