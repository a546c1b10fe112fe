package authorize

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstreamtokens"
)

// hookStore runs a hook before UpsertUser, which the callback calls
// between reading the pending request and claiming it.
type hookStore struct {
	testStore
	mu           sync.Mutex
	beforeUpsert func()
}

func (s *hookStore) UpsertUser(ctx context.Context, u store.User) (store.User, error) {
	s.mu.Lock()
	f := s.beforeUpsert
	s.beforeUpsert = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return s.testStore.UpsertUser(ctx, u)
}

// devCallbacks starts an authorization at the development login and
// returns, for each name, the callback URL its form submission sends the
// browser to: answers to one upstream state, each signing in another user.
func devCallbacks(t *testing.T, e *env, b *browser, a *authz, names ...string) []string {
	t.Helper()
	form := b.get(a.url(e))
	if form.status != http.StatusOK || form.url.Path != "/dev/login" {
		t.Fatalf("want the dev login form, got %d %s", form.status, form.url)
	}
	q := form.url.Query()
	b.stopAtCallback = true
	defer func() { b.stopAtCallback = false }()
	var out []string
	for _, name := range names {
		r := b.post("/dev/login", url.Values{
			"upstream": {q.Get("upstream")}, "state": {q.Get("state")}, "code_challenge": {q.Get("code_challenge")},
			"name": {name},
		})
		loc := r.location()
		if loc == nil || loc.Path != "/callback/dev" {
			t.Fatalf("dev login as %s: want the redirect to the callback, got %d %v", name, r.status, loc)
		}
		out = append(out, e.srv.URL+loc.RequestURI())
	}
	return out
}

// raceCallbacks sends the callbacks at once from browser b (its cookies,
// no redirects followed) and returns the answers.
func raceCallbacks(t *testing.T, b *browser, callbacks []string) []*http.Response {
	t.Helper()
	c := *b.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	out := make([]*http.Response, len(callbacks))
	errs := make([]error, len(callbacks))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, cb := range callbacks {
		wg.Go(func() {
			<-start
			out[i], errs[i] = c.Get(cb)
			if errs[i] == nil {
				out[i].Body.Close()
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("callback %d: %v", i, err)
		}
	}
	return out
}

// TestConcurrentCallbacksSignInOnce: callbacks racing for one pending
// request (a reload, the back button, a double submit at the provider),
// each with a valid upstream answer: the development login's answers all
// exchange, so only the callback's claim of the request decides. Exactly
// one signs in (one session, one claim), whichever user each answer
// names; the others get a page and change nothing; the winner's user is
// the one the consent page and the code name.
func TestConcurrentCallbacksSignInOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"dev"}, func(h *Handler) { h.DevMode = true })
	const racers = 6

	t.Run("consent follows", func(t *testing.T) {
		client := e.addClient(store.Client{})
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		names := []string{"dave", "erin"}
		two := devCallbacks(t, e, b, a, names...)
		var callbacks []string
		for i := range racers {
			callbacks = append(callbacks, two[i%2])
		}
		e.st.Writes()
		var winner string
		for i, res := range raceCallbacks(t, b, callbacks) {
			loc := res.Header.Get("Location")
			switch {
			case res.StatusCode == http.StatusFound || res.StatusCode == http.StatusSeeOther:
				if winner != "" {
					t.Fatalf("two callbacks signed in (%s and %s)", winner, names[i%2])
				}
				if !strings.HasPrefix(loc, "/consent?req=") {
					t.Fatalf("callback %d redirected to %s, want the consent page", i, loc)
				}
				winner = names[i%2]
			case res.StatusCode != http.StatusBadRequest || loc != "":
				t.Fatalf("callback %d: %d %s, want the winner's redirect or a 400 page", i, res.StatusCode, loc)
			}
		}
		if winner == "" {
			t.Fatal("no callback signed in")
		}
		if w := e.st.Writes(); w["CreateSession"] != 1 || w["ClaimAuthRequest"] != 1 || w["CreateAuthRequest"] != 0 {
			t.Fatalf("writes %v, want one session and one claim", w)
		}
		page := b.get(a.url(e)) // a fresh request: single sign-on as the winner
		if !isConsentPage(page) || !strings.Contains(page.body, winner) {
			t.Fatalf("want the consent page for %s, got %d\n%s", winner, page.status, excerpt(page.body))
		}
		_, code := e.expectCode(t, b.decide(page, "approve"), a)
		if u, err := e.st.GetUser(context.Background(), code.UserID); err != nil || u.Login != winner {
			t.Fatalf("code for %+v (%v), want %s", u, err, winner)
		}
	})

	t.Run("code follows at once", func(t *testing.T) {
		client := e.addClient(store.Client{SkipConsent: true})
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		one := devCallbacks(t, e, b, a, "frank")
		callbacks := make([]string, racers)
		for i := range callbacks {
			callbacks[i] = one[0]
		}
		e.st.Writes()
		codes := 0
		for i, res := range raceCallbacks(t, b, callbacks) {
			loc := res.Header.Get("Location")
			switch {
			case strings.HasPrefix(loc, appURI):
				if mustURL(loc).Query().Get("code") == "" || mustURL(loc).Query().Get("state") != a.state {
					t.Fatalf("callback %d redirected to %s", i, loc)
				}
				codes++
			case res.StatusCode != http.StatusBadRequest || loc != "":
				t.Fatalf("callback %d: %d %s, want a code or a 400 page", i, res.StatusCode, loc)
			}
		}
		if codes != 1 {
			t.Fatalf("%d of %d concurrent callbacks issued a code, want exactly 1", codes, racers)
		}
		if w := e.st.Writes(); w["CreateAuthCode"] != 1 || w["CreateSession"] != 1 || w["CreateAuthRequest"] != 0 {
			t.Fatalf("writes %v, want one code and one session", w)
		}
	})
}

// TestCallbackReplacedMidway: the user starts the upstream sign-in again
// (back button, another window) while the first answer is being checked:
// the first answer signs nobody in and says so, and the newer one still
// can.
func TestCallbackReplacedMidway(t *testing.T) {
	t.Parallel()
	st := &hookStore{testStore: newTestStore(t)}
	e := newEnvStore(t, st, []string{"github"})
	client := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	b.stopAtCallback = true
	first := b.get(a.url(e)).location()
	if first == nil || first.Path != "/callback/github" {
		t.Fatalf("no callback captured: %v", first)
	}
	req, err := st.GetAuthRequestByUpstreamState(context.Background(), oauth.Digest(first.Query().Get("state")), e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}

	var second *url.URL
	st.mu.Lock()
	st.beforeUpsert = func() {
		// The upstream already answered the first sign-in; a second one
		// starts for the same request.
		second = b.get("/login?req=" + requestHandle(req.IDDigest)).location()
	}
	st.mu.Unlock()
	e.st.Writes()
	e.expectPage(t, b.get(first.String()), http.StatusBadRequest, "replaced by a newer one")
	if second == nil || second.Path != "/callback/github" || second.Query().Get("state") == first.Query().Get("state") {
		t.Fatalf("the second sign-in did not reach the callback with a new state: %v", second)
	}
	if w := e.st.Writes(); w["CreateSession"] != 0 || w["ClaimAuthRequest"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("the replaced answer wrote %v", w)
	}
	b.stopAtCallback = false
	e.expectCode(t, b.get(second.String()), a)
}

// failingKeep is an upstream-token broker that cannot keep a grant.
type failingKeep struct{}

func (failingKeep) Keep(context.Context, string, string, *upstream.Grant) error {
	return errors.New("keeping the upstream grant failed")
}
func (failingKeep) Covers(context.Context, string, string, []string) (bool, error) { return true, nil }
func (failingKeep) Connections(context.Context, string) ([]upstreamtokens.Connection, error) {
	return nil, nil
}
func (failingKeep) Disconnect(context.Context, string, string) error { return nil }

// capture starts an authorization in b and stops before authd's callback,
// returning the callback URL and the pending request it answers.
func capture(t *testing.T, e *env, b *browser, a *authz) (*url.URL, store.AuthRequest) {
	t.Helper()
	b.stopAtCallback = true
	defer func() { b.stopAtCallback = false }()
	cb := b.get(a.url(e)).location()
	if cb == nil || !strings.HasPrefix(cb.Path, "/callback/") {
		t.Fatalf("no callback captured: %v", cb)
	}
	req, err := e.st.GetAuthRequestByUpstreamState(context.Background(), oauth.Digest(cb.Query().Get("state")), e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cb, req
}

// TestCallbackFailureAfterClaimEndsRequest: a sign-in that fails after the
// callback claimed the request for the consent page (here the upstream
// grant cannot be kept) leaves nothing half done: no session, and the
// request, signed in by the claim, is ended with its cookie, so the
// consent page cannot be reached with it.
func TestCallbackFailureAfterClaimEndsRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"}, func(h *Handler) { h.UpstreamGrants = failingKeep{} })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	cb, req := capture(t, e, b, newAuthz(client.ID, appURI))
	e.st.Writes()
	if r := b.get(cb.String()); r.status != http.StatusInternalServerError || r.location() != nil {
		t.Fatalf("callback: %d %v, want the internal error page", r.status, r.location())
	}
	if w := e.st.Writes(); w["ClaimAuthRequest"] != 1 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("writes %v, want the claim and nothing after it", w)
	}
	if _, err := e.st.GetAuthRequest(context.Background(), req.IDDigest, e.clock.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the claimed request outlived the failed sign-in: %v", err)
	}
	e.expectPage(t, b.get("/consent?req="+requestHandle(req.IDDigest)), http.StatusBadRequest, "expired")
}

// TestUnusableAnswerLeavesRequestWaiting: an upstream answer that cannot
// be used (here a code the provider does not know, as a reload gets once
// its twin has spent the code) ends nothing, so the answer that can be
// used still signs in: ending the request there would leave a double
// submit with no sign-in at all.
func TestUnusableAnswerLeavesRequestWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	client := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	cb, _ := capture(t, e, b, a)
	bad := *cb
	q := bad.Query()
	q.Set("code", "spent-or-unknown")
	bad.RawQuery = q.Encode()
	e.st.Writes()
	if r := b.get(bad.String()); r.status != http.StatusBadGateway || r.location() != nil {
		t.Fatalf("unusable answer: %d %v, want the 502 page", r.status, r.location())
	}
	e.expectNoWrites(t)
	e.expectCode(t, b.get(cb.String()), a)
}

// TestSignInAgainFromConsentPage: on the consent page the user notices
// the wrong account and starts the upstream sign-in again for the same
// request (back to /login); the new answer replaces the sign-in, and the
// code is for the account chosen last.
func TestSignInAgainFromConsentPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"dev"}, func(h *Handler) { h.DevMode = true })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	devLogin := func(form resp, name string) resp {
		t.Helper()
		if form.status != http.StatusOK || form.url.Path != "/dev/login" {
			t.Fatalf("want the dev login form, got %d %s", form.status, form.url)
		}
		q := form.url.Query()
		return b.post("/dev/login", url.Values{
			"upstream": {q.Get("upstream")}, "state": {q.Get("state")}, "code_challenge": {q.Get("code_challenge")},
			"name": {name},
		})
	}
	first := devLogin(b.get(a.url(e)), "dave")
	if !isConsentPage(first) || !strings.Contains(first.body, "dave") {
		t.Fatalf("want the consent page for dave, got %d\n%s", first.status, excerpt(first.body))
	}
	second := devLogin(b.get("/login?req="+consentForm(t, first).Get("req")), "erin")
	if !isConsentPage(second) || !strings.Contains(second.body, "erin") {
		t.Fatalf("want the consent page for erin, got %d\n%s", second.status, excerpt(second.body))
	}
	_, code := e.expectCode(t, b.decide(second, "approve"), a)
	if u, err := e.st.GetUser(context.Background(), code.UserID); err != nil || u.Login != "erin" {
		t.Fatalf("code for %+v (%v), want erin", u, err)
	}
}
