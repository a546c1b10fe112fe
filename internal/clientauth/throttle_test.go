package clientauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/store"
)

// countingGetter counts lookups, to prove a throttled request does none.
type countingGetter struct {
	clientauth.ClientGetter
	n atomic.Int64
}

func (c *countingGetter) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	c.n.Add(1)
	return c.ClientGetter.GetClient(ctx, id, now)
}

// TestThrottleFailedAuthentication: failed client authentications are
// limited per network and per client id before any lookup or secret
// comparison (429 with Retry-After); successes are never charged; a
// network where the client authenticated before keeps working while
// others exhaust the client id's budget.
func TestThrottleFailedAuthentication(t *testing.T) {
	st := store.NewMemory()
	seed(t, st)
	get := &countingGetter{ClientGetter: st}
	clock := now
	a := &clientauth.Authenticator{
		Clients: get, Now: func() time.Time { return now },
		Throttle: clientauth.NewThrottle(clientauth.ThrottleConfig{
			PerIPPerMinute: 1, PerIPBurst: 3, PerClientPerMinute: 1, PerClientBurst: 5,
		}, func() time.Time { return clock }),
	}
	try := func(addr, id, secret string) error {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.RemoteAddr = addr + ":1234"
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		_, _, err := a.Authenticate(r, url.Values{})
		return err
	}
	status := func(err error) int {
		if err == nil {
			return http.StatusOK
		}
		return oauth.AsError(err).Status
	}

	// The legitimate client, from its own network, many times: never limited.
	for range 20 {
		if err := try("192.0.2.1", "conf", confSecret); err != nil {
			t.Fatalf("right secret: %v", err)
		}
	}
	// One attacker network: three failures, then 429 without a lookup.
	for i := range 3 {
		if got := status(try("198.51.100.1", "conf", "guess")); got != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, got)
		}
	}
	before := get.n.Load()
	err := try("198.51.100.1", "conf", confSecret) // even the right secret: not checked
	if oe := oauth.AsError(err); oe.Status != http.StatusTooManyRequests || oe.Header.Get("Retry-After") == "" {
		t.Fatalf("over the budget: %v", err)
	}
	if get.n.Load() != before {
		t.Fatal("a throttled request looked the client up")
	}
	// Unknown ids from that network are throttled too.
	if got := status(try("198.51.100.1", "ghost", "x")); got != http.StatusTooManyRequests {
		t.Fatalf("unknown id from a throttled network: %d", got)
	}
	// Other networks spend the client id's budget (5): then the id is
	// throttled for every network that failed for it ...
	for i, addr := range []string{"203.0.113.1", "203.0.113.2"} {
		if got := status(try(addr, "conf", "guess")); got != http.StatusUnauthorized {
			t.Fatalf("failure from network %d: %d", i+1, got)
		}
	}
	if got := status(try("203.0.113.1", "conf", confSecret)); got != http.StatusTooManyRequests {
		t.Fatalf("client id over its budget, from a network that failed for it: %d", got)
	}
	// ... a network that has not gets one try at a time (the client
	// itself, moved to a new network, succeeds; a guesser fails once) ...
	if err := try("203.0.113.3", "conf", confSecret); err != nil {
		t.Fatalf("client id over its budget, new network, right secret: %v", err)
	}
	if got := status(try("203.0.113.4", "conf", "guess")); got != http.StatusUnauthorized {
		t.Fatalf("client id over its budget, new network's first guess: %d", got)
	}
	if got := status(try("203.0.113.4", "conf", confSecret)); got != http.StatusTooManyRequests {
		t.Fatalf("client id over its budget, new network's second try: %d", got)
	}
	// ... and the network it works from is never stopped.
	if err := try("192.0.2.1", "conf", confSecret); err != nil {
		t.Fatalf("known network locked out by others' failures: %v", err)
	}
	// A public client's id, which anyone may send, has no budget: others'
	// failures with it, from any number of networks, never throttle its
	// users (on any network, new ones included).
	pub := func(addr, secret string) error {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.RemoteAddr = addr + ":1"
		f := url.Values{"client_id": {"pub"}}
		if secret != "" {
			f.Set("client_secret", secret)
		}
		_, _, err := a.Authenticate(r, f)
		return err
	}
	for i := range 12 {
		if got := status(pub(fmt.Sprint("203.0.113.", 10+i/3), "guess")); got != http.StatusUnauthorized {
			t.Fatalf("public client failure %d: %d", i+1, got)
		}
	}
	for _, addr := range []string{"192.0.2.50", "192.0.2.51"} {
		if err := pub(addr, ""); err != nil {
			t.Fatalf("public client from %s after others' failures with its id: %v", addr, err)
		}
	}
	// An unknown id is charged like a confidential client's, so the
	// throttle does not tell which ids hold a secret.
	for i := range 5 {
		if got := status(try(fmt.Sprint("203.0.113.", 20+i), "ghost", "guess")); got != http.StatusUnauthorized {
			t.Fatalf("unknown id failure %d: %d", i+1, got)
		}
	}
	if got := status(try("203.0.113.20", "ghost", "guess")); got != http.StatusTooManyRequests {
		t.Fatalf("unknown id over its budget: %d, want 429", got)
	}

	// Budgets refill.
	clock = clock.Add(10 * time.Minute)
	if err := try("198.51.100.1", "conf", confSecret); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
}

// TestFailureFloor: a failed authentication answers no sooner than the
// floor, whatever the lookup cost (cache or database), while a success
// is not delayed.
func TestFailureFloor(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	seed(t, st)
	const floor = 200 * time.Millisecond
	a := &clientauth.Authenticator{Clients: st, Now: func() time.Time { return now }, FailureFloor: floor}
	try := func(id, secret string) (time.Duration, error) {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		start := time.Now()
		_, _, err := a.Authenticate(r, url.Values{})
		return time.Since(start), err
	}
	for _, id := range []string{"conf", "ghost"} {
		if d, err := try(id, "wrong"); err == nil || d < floor {
			t.Errorf("failure for %s answered after %v (err %v), floor %v", id, d, err, floor)
		}
	}
	if d, err := try("conf", confSecret); err != nil || d >= floor {
		t.Errorf("success answered after %v (err %v): delayed by the floor", d, err)
	}
}

// fromAddr is a request from addr.
func fromAddr(addr string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/token", nil)
	r.RemoteAddr = addr + ":1234"
	return r
}

// TestThrottleConcurrentAttemptsBounded: attempts in flight at once are
// admitted only up to the burst, since each reserves its failure before
// its credentials are compared; successes give the reservation back.
func TestThrottleConcurrentAttemptsBounded(t *testing.T) {
	t.Parallel()
	th := clientauth.NewThrottle(clientauth.ThrottleConfig{
		PerIPPerMinute: 1, PerIPBurst: 20, PerClientPerMinute: 1, PerClientBurst: 60,
	}, func() time.Time { return now })
	for _, tc := range []struct {
		name   string
		addr   func(i int) string
		budget int
	}{
		// No failure is known while these are in flight: a first wave
		// is bounded by ratelimit.FreshInFlight (then the strict rule:
		// TestThrottleStrictAfterAFailure).
		{"one network", func(int) string { return "198.51.100.1" }, ratelimit.FreshInFlight},
		// Past the client id's first wave, each network gets one try at
		// a time.
		{"ten networks", func(i int) string { return fmt.Sprintf("10.0.%d.1", i%10) }, ratelimit.FreshInFlight + 10},
	} {
		var admitted atomic.Int64
		var checked, release sync.WaitGroup
		release.Add(1)
		var done sync.WaitGroup
		for i := range 1000 {
			checked.Add(1)
			done.Go(func() {
				att, err := th.Check(fromAddr(tc.addr(i)), "conf-"+tc.name, true)
				checked.Done()
				release.Wait() // every check runs before any failure is known
				if err == nil {
					admitted.Add(1)
					att.Done(clientauth.Failed)
				}
			})
		}
		checked.Wait()
		release.Done()
		done.Wait()
		if n := admitted.Load(); n > int64(tc.budget) || n == 0 {
			t.Errorf("%s: %d of 1000 concurrent attempts admitted, budget %d", tc.name, n, tc.budget)
		}
	}
	// A success gives its reservation back: a network can succeed forever.
	for i := range 100 {
		att, err := th.Check(fromAddr("192.0.2.7"), "conf-ok", true)
		if err != nil {
			t.Fatalf("success %d: %v", i+1, err)
		}
		att.Done(clientauth.Succeeded)
	}
}

// TestThrottleKnownGoodEviction: past the bound on known-good pairs, the
// least recently successful pair is forgotten, not all of them: a client
// that keeps authenticating keeps its network's own budget however many
// other pairs succeed.
func TestThrottleKnownGoodEviction(t *testing.T) {
	t.Parallel()
	clock := now
	th := clientauth.NewThrottle(clientauth.ThrottleConfig{
		PerIPPerMinute: 1000, PerIPBurst: 1000, PerClientPerMinute: 1, PerClientBurst: 2,
	}, func() time.Time { return clock })
	succeed := func(addr, id string) {
		t.Helper()
		att, err := th.Check(fromAddr(addr), id, true)
		if err != nil {
			t.Fatalf("%s from %s: %v", id, addr, err)
		}
		att.Done(clientauth.Succeeded)
	}
	succeed("192.0.2.1", "conf")
	for i := range 9999 {
		succeed("198.51.100.1", fmt.Sprint("other-", i))
	}
	clock = clock.Add(2 * time.Hour)
	succeed("192.0.2.1", "conf") // the pair in use again
	succeed("198.51.100.1", "one-more")
	// conf fails once from its own network (it still has its own
	// budget, 2) ...
	att, err := th.Check(fromAddr("192.0.2.1"), "conf", true)
	if err != nil {
		t.Fatal(err)
	}
	att.Done(clientauth.Failed)
	// ... others' failures spend the client id's budget (2) ...
	for i := 0; ; i++ {
		att, err := th.Check(fromAddr("203.0.113.1"), "conf", true)
		if err != nil {
			break
		}
		if i == 5 {
			t.Fatal("conf's budget never spent")
		}
		att.Done(clientauth.Failed)
	}
	// ... but the network conf works from keeps its own: it is still
	// known-good however many other pairs succeeded.
	succeed("192.0.2.1", "conf")
}

// brokenGetter fails every lookup, as a database that is down.
type brokenGetter struct{}

func (brokenGetter) GetClient(context.Context, string, time.Time) (store.Client, error) {
	return store.Client{}, errDatabaseDown
}

var errDatabaseDown = errors.New("database down")

// TestThrottleNoVerdictNotCharged: a check that reached no verdict (the
// store failed) gives its reservation back: an outage does not use up a
// working client's budget.
func TestThrottleNoVerdictNotCharged(t *testing.T) {
	t.Parallel()
	th := clientauth.NewThrottle(clientauth.ThrottleConfig{
		PerIPPerMinute: 1, PerIPBurst: 2, PerClientPerMinute: 1, PerClientBurst: 2,
	}, func() time.Time { return now })
	a := &clientauth.Authenticator{Clients: brokenGetter{}, Now: func() time.Time { return now }, Throttle: th}
	for i := range 5 {
		r := fromAddr("192.0.2.1")
		r.SetBasicAuth("conf", url.QueryEscape(confSecret))
		_, _, err := a.Authenticate(r, url.Values{})
		if !errors.Is(err, errDatabaseDown) {
			t.Fatalf("attempt %d during the outage: %v, want the store's error", i+1, err)
		}
	}
}

// TestThrottleManagementApart: guesses at a client's registration access
// token (RFC 7592) spend a per-client budget apart from its secret's, so
// they never throttle the client at /token from a network it has not
// used yet; the per-network budget is shared.
func TestThrottleManagementApart(t *testing.T) {
	t.Parallel()
	th := clientauth.NewThrottle(clientauth.ThrottleConfig{
		PerIPPerMinute: 1, PerIPBurst: 3, PerClientPerMinute: 1, PerClientBurst: 3,
	}, func() time.Time { return now })
	for i := range 3 {
		att, err := th.CheckManagement(fromAddr(fmt.Sprint("198.51.100.", i+1)), "conf", true)
		if err != nil {
			t.Fatalf("management guess %d: %v", i+1, err)
		}
		att.Done(clientauth.Failed)
	}
	if _, err := th.CheckManagement(fromAddr("198.51.100.1"), "conf", true); err == nil {
		t.Fatal("management guesses past the client's budget admitted")
	}
	att, err := th.Check(fromAddr("198.51.100.1"), "conf", true)
	if err != nil {
		t.Fatalf("/token for the client after management guesses: %v", err)
	}
	att.Done(clientauth.Succeeded)
	// One network: its failures at either count against both.
	for range 3 {
		att, err := th.Check(fromAddr("198.51.100.50"), "other", true)
		if err != nil {
			t.Fatal(err)
		}
		att.Done(clientauth.Failed)
	}
	if _, err := th.CheckManagement(fromAddr("198.51.100.50"), "fresh", true); err == nil {
		t.Fatal("a network over its budget at /token was admitted at RFC 7592")
	}
}

// TestThrottleStrictAfterAFailure: once a network has failed, attempts in
// flight at once from it are bounded by the failures it has left, however
// many arrive together; and before any failure, a client's concurrent
// successes from one network are never refused (a resource server making
// many introspections at once).
func TestThrottleStrictAfterAFailure(t *testing.T) {
	t.Parallel()
	th := clientauth.NewThrottle(clientauth.ThrottleConfig{
		PerIPPerMinute: 1, PerIPBurst: 20, PerClientPerMinute: 1, PerClientBurst: 60,
	}, func() time.Time { return now })
	var held []clientauth.Attempt
	for i := range 100 {
		att, err := th.Check(fromAddr("192.0.2.50"), "busy-rs", true)
		if err != nil {
			t.Fatalf("concurrent success %d refused: %v", i+1, err)
		}
		held = append(held, att)
	}
	for _, att := range held {
		att.Done(clientauth.Succeeded)
	}

	att, err := th.Check(fromAddr("198.51.100.9"), "victim", true)
	if err != nil {
		t.Fatal(err)
	}
	att.Done(clientauth.Failed)
	var admitted atomic.Int64
	var checked, release, done sync.WaitGroup
	release.Add(1)
	for range 1000 {
		checked.Add(1)
		done.Go(func() {
			att, err := th.Check(fromAddr("198.51.100.9"), "victim", true)
			checked.Done()
			release.Wait()
			if err == nil {
				admitted.Add(1)
				att.Done(clientauth.Failed)
			}
		})
	}
	checked.Wait()
	release.Done()
	done.Wait()
	if n := admitted.Load(); n == 0 || n > 19 {
		t.Errorf("%d of 1000 concurrent attempts admitted after a failure, want at most the 19 failures left", n)
	}
}
