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
	// networks together, except networks where that client
	// authenticated successfully in the last day, which get a budget of
	// their own. A spent budget stops only networks that failed for the
	// client in the last hour (others get one try at a time): guessing
	// spread over many addresses is slowed, and cannot lock a working
	// client out.
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
// own per-client budget; failedFor is how long a network that failed for a
// client counts as one while the client id's budget is spent. maxPairs
// bounds how many of each are kept (the least recently seen is forgotten
// first, never all at once).
const (
	knownGoodFor = 24 * time.Hour
	failedFor    = time.Hour
	maxPairs     = 10000
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
// failing network alone, and cannot lock the client's users out. And a
// client id's spent budget stops only networks that failed for it
// recently: one that has not (the client's own, wherever it moves) is
// never locked out by guesses from elsewhere.
type Throttle struct {
	byAddr, byClient *ratelimit.Budget
	now              func() time.Time

	mu           sync.Mutex
	good, failed recent // client id + network → last success, last failure
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
		good:     newRecent(maxPairs),
		failed:   newRecent(maxPairs),
	}
}

// Attempt is one credential check admitted by Check. Call Done with its
// outcome once the credentials have been judged.
type Attempt struct {
	t            *Throttle
	addr, client string
	pair         string // client id + network
	secret       bool   // a secret was presented
	reserved     bool   // a failure was reserved from the client id's budget
	provisional  bool   // admitted over that budget, marked failed in advance
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

// CheckNetwork is Check for a credential that names no client (a static
// introspection token): only r's network's failure budget applies, and no
// network becomes known-good for anyone.
func (t *Throttle) CheckNetwork(r *http.Request) (Attempt, error) {
	return t.check(r, "client:", "", false)
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
	a := Attempt{t: t, addr: "ip:" + ratelimit.RemoteIPKey(r), secret: secret}
	// Client ID metadata document URLs name public clients only: no
	// secret to guess, so no budget of their own.
	if clientID != "" && !strings.HasPrefix(clientID, "https://") {
		a.pair = space + clientID + "\x00" + a.addr
		a.client = space + clientID
		if t.seen(&t.good, a.pair, knownGoodFor) {
			a.client = a.pair
		}
	}
	ok, wait := t.byAddr.Take(a.addr)
	if ok && a.client != "" {
		var spent time.Duration
		a.reserved, spent = t.byClient.Take(a.client)
		// Over the client id's budget, only networks that failed for it
		// recently are stopped: the client's own network, which does not
		// fail, is not locked out by guesses from elsewhere, while each
		// other network gets one try at a time (marked failed until it
		// succeeds), and one per failedFor once it has failed.
		if !a.reserved {
			if a.provisional = t.firstTry(a.pair); !a.provisional {
				t.byAddr.Refund(a.addr)
				ok, wait = false, spent
			}
		}
	}
	if !ok {
		return Attempt{}, oauth.TooManyRequests(ratelimit.RetryAfterSeconds(wait)).
			WithCause(errors.New("too many failed client authentications"))
	}
	return a, nil
}

// Done records the outcome of the check, and must be called once for
// every admitted attempt: a failure is charged to the network and the
// client id; a success (which also marks the network as known-good for the
// client) or a check that reached no verdict charges neither, and a
// failure of a public client's id charges only the network.
func (a Attempt) Done(o Outcome) {
	t := a.t
	if t == nil {
		return
	}
	if o == Succeeded || o == NoVerdict {
		t.byAddr.Refund(a.addr)
	} else {
		t.byAddr.Charge(a.addr)
	}
	switch {
	case !a.reserved:
	case o == Failed:
		t.byClient.Charge(a.client)
	default:
		t.byClient.Refund(a.client)
	}
	switch {
	case o == Failed:
		if a.pair != "" && !a.provisional {
			t.note(&t.failed, a.pair)
		}
	case a.provisional:
		t.forget(&t.failed, a.pair)
	}
	if o == Succeeded && a.secret && a.pair != "" {
		t.note(&t.good, a.pair)
	}
}

// firstTry reports whether pair has not failed within failedFor, and
// marks it failed now if so, in one step: of concurrent tries from one
// network, one is admitted.
func (t *Throttle) firstTry(pair string) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.failed.keys[pair]; ok && now.Sub(e.Value.(*seenAt).at) < failedFor {
		return false
	}
	t.failed.note(pair, now)
	return true
}

// forget removes pair from r.
func (t *Throttle) forget(r *recent, pair string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := r.keys[pair]; ok {
		r.lru.Remove(e)
		delete(r.keys, pair)
	}
}

// seen reports whether pair was noted in r within the last d.
func (t *Throttle) seen(r *recent, pair string, d time.Duration) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := r.keys[pair]
	return ok && now.Sub(e.Value.(*seenAt).at) < d
}

// note records pair in r now, evicting the least recently noted pair when
// r is full.
func (t *Throttle) note(r *recent, pair string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	r.note(pair, now)
}

func (r *recent) note(pair string, now time.Time) {
	if e, ok := r.keys[pair]; ok {
		e.Value.(*seenAt).at = now
		r.lru.MoveToFront(e)
		return
	}
	for r.lru.Len() >= r.max {
		oldest := r.lru.Back()
		r.lru.Remove(oldest)
		delete(r.keys, oldest.Value.(*seenAt).pair)
	}
	r.keys[pair] = r.lru.PushFront(&seenAt{pair: pair, at: now})
}

// recent is a bounded set of pairs with when each was last noted, least
// recently noted evicted first. Guarded by Throttle.mu.
type recent struct {
	max  int
	keys map[string]*list.Element // of *seenAt
	lru  *list.List               // most recent first
}

type seenAt struct {
	pair string
	at   time.Time
}

func newRecent(max int) recent {
	return recent{max: max, keys: map[string]*list.Element{}, lru: list.New()}
}
