package clientauth

import (
	"container/list"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	// client id that holds a secret (or names no client; a public
	// client's id, which anyone may send, is never charged) from all
	// networks together, except networks where that
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
// own per-client budget; maxKnownGood bounds how many such pairs are kept
// (the least recently successful is forgotten first).
const (
	knownGoodFor = 24 * time.Hour
	maxKnownGood = 10000
)

// Throttle limits failed credential checks at every endpoint that checks
// a client secret or registration access token (/token, /revoke,
// /introspect, RFC 7592), per client network and per client id, before
// any secret is compared: each check reserves its failure up front, and
// once a budget is spent the answer is 429 with Retry-After and no lookup
// or comparison happens. A nil *Throttle limits nothing. Budgets live in
// this process: each replica counts its own.
//
// Only failures against a secret count against a client id: anyone may
// present a public client's id, so failures with one are charged to the
// failing network alone, and cannot lock the client's users out.
type Throttle struct {
	byAddr, byClient *ratelimit.Budget
	now              func() time.Time

	mu   sync.Mutex
	good map[string]*list.Element // client id + network → *success, in lru
	lru  *list.List               // most recent success first
}

type success struct {
	pair string
	at   time.Time
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
		good:     map[string]*list.Element{},
		lru:      list.New(),
	}
}

// Attempt is one credential check admitted by Check. Call Done with its
// outcome once the credentials have been judged.
type Attempt struct {
	t            *Throttle
	addr, client string
	pair         string
}

// Outcome is how a credential check ended.
type Outcome int

const (
	// Succeeded: nothing is charged; with a secret, the network becomes
	// known-good for the client.
	Succeeded Outcome = iota
	// Failed: the client id names a client that holds the secret checked,
	// or names no client at all (so that the answer does not tell which
	// ids hold one): charged to the network and the client id.
	Failed
	// FailedPublic: the client id names a client without such a secret
	// (a public or metadata-document client), whose id anyone may send:
	// charged to the network only.
	FailedPublic
	// NoVerdict: the check could not be made (the store failed): nothing
	// is charged.
	NoVerdict
)

// Check admits a credential check at /token, /revoke or /introspect for
// clientID ("" when there is none, e.g. a static introspection token)
// from r's network, or returns the 429 to answer instead. secret says
// whether the caller presented a client secret: only a success with one
// makes the network known-good for the client.
func (t *Throttle) Check(r *http.Request, clientID string, secret bool) (Attempt, error) {
	return t.check(r, "client:", clientID, secret)
}

// CheckManagement is Check for RFC 7592 registration access tokens. Their
// failures have a per-client budget apart from the client secret's, so
// that guessing a client's registration access token never throttles the
// client at /token.
func (t *Throttle) CheckManagement(r *http.Request, clientID string, token bool) (Attempt, error) {
	return t.check(r, "manage:", clientID, token)
}

func (t *Throttle) check(r *http.Request, space, clientID string, secret bool) (Attempt, error) {
	if t == nil {
		return Attempt{}, nil
	}
	a := Attempt{t: t, addr: "ip:" + ratelimit.RemoteIPKey(r)}
	// Client ID metadata document URLs name public clients only: no
	// secret to guess, so no budget of their own.
	if clientID != "" && !strings.HasPrefix(clientID, "https://") {
		pair := space + clientID + "\x00" + a.addr
		a.client = space + clientID
		if t.knownGood(pair) {
			a.client = pair
		}
		if secret {
			a.pair = pair
		}
	}
	ok, wait := t.byAddr.Take(a.addr)
	if ok && a.client != "" {
		if ok, wait = t.byClient.Take(a.client); !ok {
			t.byAddr.Refund(a.addr)
		}
	}
	if !ok {
		return Attempt{}, oauth.TooManyRequests(ratelimit.RetryAfterSeconds(wait)).
			WithCause(errors.New("too many failed client authentications"))
	}
	return a, nil
}

// Done records the outcome of the check, and must be called once for
// every admitted attempt: Check charged the network and the client id
// already; a success gives both back (and marks the network as known-good
// for the client), as does a check that reached no verdict, and a failure
// of a public client's id gives back the client id's.
func (a Attempt) Done(o Outcome) {
	t := a.t
	if t == nil {
		return
	}
	if o == Succeeded || o == NoVerdict {
		t.byAddr.Refund(a.addr)
	}
	if o != Failed && a.client != "" {
		t.byClient.Refund(a.client)
	}
	if o == Succeeded && a.pair != "" {
		t.remember(a.pair)
	}
}

func (t *Throttle) knownGood(pair string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.good[pair]
	return ok && t.now().Sub(e.Value.(*success).at) < knownGoodFor
}

func (t *Throttle) remember(pair string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.good[pair]; ok {
		e.Value.(*success).at = now
		t.lru.MoveToFront(e)
		return
	}
	for t.lru.Len() >= maxKnownGood {
		oldest := t.lru.Back()
		t.lru.Remove(oldest)
		delete(t.good, oldest.Value.(*success).pair)
	}
	t.good[pair] = t.lru.PushFront(&success{pair: pair, at: now})
}
