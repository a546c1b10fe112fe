package authorize

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// TestEndToEnd runs the whole browser flow for each upstream kind against
// its fake: /authorize → upstream → /callback → consent → code at the
// client's redirect URI, and checks what the code is bound to.
func TestEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		connector string
		memory    bool // the in-memory dev store instead of Postgres
		check     func(t *testing.T, u store.User)
	}{
		{"github", false, func(t *testing.T, u store.User) {
			if u.Subject != "1001" || u.Login != "alice" || u.Email != "alice@example.com" || !u.EmailVerified {
				t.Fatalf("github user %+v", u)
			}
		}},
		{"google", false, func(t *testing.T, u store.User) {
			if u.Subject != "g-123" || u.Domain != "example.com" || u.Email != "bob@example.com" || !u.EmailVerified {
				t.Fatalf("google user %+v", u)
			}
		}},
		{"oidc", false, func(t *testing.T, u store.User) {
			if u.Subject != "o-456" || !slices.Equal(u.Groups, []string{"engineering", "mcp-users"}) || u.Email != "carol@corp.example" {
				t.Fatalf("oidc user %+v", u)
			}
		}},
		{"github", true, func(t *testing.T, u store.User) {
			if u.Subject != "1001" {
				t.Fatalf("github user %+v", u)
			}
		}},
	} {
		name := tc.connector
		if tc.memory {
			name += "/memory"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var st testStore = store.NewMemory()
			if !tc.memory {
				st = newTestStore(t)
			}
			e := newEnvStore(t, st, []string{tc.connector})
			client := e.addClient(store.Client{})
			b := e.browser(t)
			a := newAuthz(client.ID, appURI)
			a.scopes = []string{"read", "write"}

			page := b.get(a.url(e))
			if !isConsentPage(page) {
				t.Fatalf("want the consent page, got %d\n%s", page.status, excerpt(page.body))
			}
			e.expectPage(t, page, http.StatusOK, "Test App")
			for _, s := range []string{"app.example.com", "Unverified", "Example MCP", resMCP, "Read your notes", "Change your notes"} {
				if !strings.Contains(page.body, s) {
					t.Errorf("consent page does not show %q", s)
				}
			}
			if w := e.st.Writes(); w["CreateAuthCode"] != 0 || w["UpsertUser"] != 1 || w["CreateSession"] != 1 {
				t.Fatalf("writes before consent: %v", w)
			}

			start := e.clock.Now()
			code, c := e.expectCode(t, b.decide(page, "approve"), a)
			user, err := e.st.GetUser(context.Background(), c.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if user.Provider != tc.connector || user.CreatedAt.Unix() != start.Unix() || user.LastLoginAt.Unix() != start.Unix() {
				t.Fatalf("user %+v", user)
			}
			tc.check(t, user)
			if c.ClientID != client.ID || c.RedirectURI != appURI || !c.RedirectURIProvided ||
				!slices.Equal(c.Scopes, []string{"read", "write"}) || !slices.Equal(c.Resources, []string{resMCP}) ||
				c.CodeChallenge != oauth.S256Challenge(a.verifier) || c.CodeChallengeMethod != "S256" ||
				c.UsedAt != nil || c.AuthTime.Unix() != start.Unix() {
				t.Fatalf("code binds %+v", c)
			}
			if d := c.ExpiresAt.Sub(c.CreatedAt); d <= 0 || d > 60*time.Second {
				t.Fatalf("code lifetime %v", d)
			}
			if c.Digest == code || strings.Contains(c.Digest, code) {
				t.Fatal("code stored in clear")
			}
			// The code and the request cookie are gone from the browser's
			// view; the session stays.
			u, _ := url.Parse(e.srv.URL)
			var names []string
			for _, ck := range b.jar.Cookies(u) {
				names = append(names, ck.Name)
			}
			if len(names) != 1 || names[0] != sessionCookie {
				t.Fatalf("cookies after the flow: %v", names)
			}
		})
	}
}

// TestDevLogin runs the flow through the development login form, which
// DevMode mounts.
func TestDevLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"dev"}, func(h *Handler) { h.DevMode = true })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	form := b.get(a.url(e))
	if form.status != http.StatusOK || form.url.Path != "/dev/login" {
		t.Fatalf("want the dev login form, got %d %s", form.status, form.url)
	}
	q := form.url.Query()
	page := b.post("/dev/login", url.Values{
		"upstream": {q.Get("upstream")}, "state": {q.Get("state")}, "code_challenge": {q.Get("code_challenge")},
		"name": {"dave"},
	})
	e.expectPage(t, page, http.StatusOK, "Development server")
	_, c := e.expectCode(t, b.decide(page, "approve"), a)
	u, err := e.st.GetUser(context.Background(), c.UserID)
	if err != nil || u.Provider != "dev" || u.Login != "dave" {
		t.Fatalf("user %+v %v", u, err)
	}
}

// TestCallbackRejections: a callback with unknown, expired, replayed or
// other-browser state gets an error page and creates nothing.
func TestCallbackRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	client := e.addClient(store.Client{SkipConsent: true})

	// capture starts an authorization and stops before authd's callback,
	// returning the callback URL the upstream sent the browser to.
	capture := func(t *testing.T, b *browser) (string, *authz) {
		t.Helper()
		b.stopAtCallback = true
		defer func() { b.stopAtCallback = false }()
		a := newAuthz(client.ID, appURI)
		r := b.get(a.url(e))
		loc := r.location()
		if loc == nil || !strings.HasPrefix(loc.Path, "/callback/github") {
			t.Fatalf("no callback captured: %d %v", r.status, loc)
		}
		e.st.Writes()
		return loc.String(), a
	}

	t.Run("unknown state", func(t *testing.T) {
		b := e.browser(t)
		cb, _ := capture(t, b)
		u := mustURL(cb)
		q := u.Query()
		q.Set("state", oauth.NewToken(oauth.PrefixState))
		u.RawQuery = q.Encode()
		e.expectPage(t, b.get(u.String()), http.StatusBadRequest, "expired or was already completed")
		e.expectNoWrites(t)
	})
	t.Run("missing state", func(t *testing.T) {
		b := e.browser(t)
		e.expectPage(t, b.get("/callback/github?code=abc"), http.StatusBadRequest, "incomplete")
		e.expectNoWrites(t)
	})
	t.Run("other browser", func(t *testing.T) {
		victim := e.browser(t)
		cb, a := capture(t, victim)
		attacker := e.browser(t)
		e.expectPage(t, attacker.get(cb), http.StatusBadRequest, "different browser")
		e.expectNoWrites(t)
		// The request is untouched: the rightful browser can still finish.
		e.expectCode(t, victim.get(cb), a)
	})
	t.Run("replayed", func(t *testing.T) {
		b := e.browser(t)
		cb, _ := capture(t, b)
		r := b.get(cb)
		if r.location() == nil || r.location().Query().Get("code") == "" {
			t.Fatalf("first callback did not finish: %d", r.status)
		}
		e.st.Writes()
		e.expectPage(t, b.get(cb), http.StatusBadRequest, "expired or was already completed")
		e.expectNoWrites(t)
	})
	t.Run("concurrent replays", func(t *testing.T) {
		b := e.browser(t)
		cb, a := capture(t, b)
		const n = 6
		results := make(chan string, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				res, err := b.c.Get(cb)
				if err != nil {
					results <- "error: " + err.Error()
					return
				}
				res.Body.Close()
				results <- res.Header.Get("Location")
			})
		}
		wg.Wait()
		close(results)
		codes := 0
		for loc := range results {
			if strings.HasPrefix(loc, appURI) && mustURL(loc).Query().Get("code") != "" {
				codes++
				if mustURL(loc).Query().Get("state") != a.state {
					t.Fatal("wrong state")
				}
			} else if loc != "" {
				t.Fatalf("unexpected redirect %s", loc)
			}
		}
		if codes != 1 {
			t.Fatalf("%d of %d concurrent callbacks issued a code, want exactly 1", codes, n)
		}
		if w := e.st.Writes(); w["CreateAuthCode"] != 1 || w["CreateSession"] != 1 || w["UpsertUser"] != 1 {
			t.Fatalf("writes %v", w)
		}
	})
	t.Run("expired", func(t *testing.T) {
		b := e.browser(t)
		cb, _ := capture(t, b)
		e.clock.Advance(10*time.Minute + time.Second)
		e.expectPage(t, b.get(cb), http.StatusBadRequest, "expired or was already completed")
		e.expectNoWrites(t)
	})
}
