package authorize

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	runSubtests(t, e,
		subtest{"upstream declined", testUpstreamDeclined},
		subtest{"upstream failure", testUpstreamFailureShowsPage},
		subtest{"concurrent requests in one browser", testConcurrentRequestsInOneBrowser},
		subtest{"session and current policy", testSessionRespectsCurrentPolicy},
		subtest{"single sign-on", testSingleSignOn},
	)
}

func TestChooser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github", "google", "oidc"})
	runSubtests(t, e,
		subtest{"chooser", testChooser},
		subtest{"allowlist denied", testAllowlistDenied},
		subtest{"callback at another provider's path", testWrongProviderPath},
		subtest{"account refused by the connector", testConnectorRefusesAccount},
	)
}

// testConnectorRefusesAccount: Google answers for an account of another
// Workspace domain than configured; the user sees why, nothing is issued.
func testConnectorRefusesAccount(t *testing.T, e *env) {
	e.google.AddUser(upstreamtest.OIDCUser{Subject: "g-999", Email: "eve@other.example", EmailVerified: true, HostedDomain: "other.example"})
	e.google.SetNextUser("g-999")
	t.Cleanup(func() { e.google.SetNextUser("g-123") })
	client := e.addClient(store.Client{})
	a := newAuthz(client.ID, appURI)
	a.extra = map[string]string{"idp_hint": "google"}
	b := e.browser(t)
	cb, req := capture(t, e, b, a)
	e.expectPage(t, b.get(cb.String()), http.StatusForbidden, "Please sign in with your example.com Google account.")
	if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("writes %v", w)
	}
	expectEnded(t, e, req)
}

func testWrongProviderPath(t *testing.T, e *env) {
	client := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)
	b.stopAtCallback = true
	a := newAuthz(client.ID, appURI)
	a.extra = map[string]string{"idp_hint": "github"}
	loc := b.get(a.url(e)).location()
	e.st.Writes()
	b.stopAtCallback = false
	e.expectPage(t, b.get(strings.Replace(loc.String(), "/callback/github", "/callback/oidc", 1)), http.StatusBadRequest, "different identity provider")
	e.expectNoWrites(t)
	e.expectCode(t, b.get(loc.String()), a) // the request is intact
}

func testSingleSignOn(t *testing.T, e *env) {
	first := e.addClient(store.Client{SkipConsent: true})
	second := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)

	before := len(e.gh.AuthorizeRequests())
	upstreamLogins := func() int { return len(e.gh.AuthorizeRequests()) - before }
	a := newAuthz(first.ID, appURI)
	_, c1 := e.expectCode(t, b.get(a.url(e)), a)
	if upstreamLogins() != 1 {
		t.Fatalf("%d upstream logins", upstreamLogins())
	}

	t.Run("second client skips the upstream", func(t *testing.T) {
		a := newAuthz(second.ID, appURI)
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		if upstreamLogins() != 1 || c.UserID != c1.UserID || !c.AuthTime.Equal(c1.AuthTime) {
			t.Fatalf("logins %d user %s auth_time %v", upstreamLogins(), c.UserID, c.AuthTime)
		}
	})
	t.Run("prompt=login forces the upstream", func(t *testing.T) {
		e.clock.Advance(time.Minute)
		a := newAuthz(second.ID, appURI)
		a.extra = map[string]string{"prompt": "login"}
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		if upstreamLogins() != 2 || c.UserID != c1.UserID || !c.AuthTime.After(c1.AuthTime) {
			t.Fatalf("logins %d auth_time %v", upstreamLogins(), c.AuthTime)
		}
	})
	t.Run("max_age within the session's age", func(t *testing.T) {
		e.clock.Advance(30 * time.Second)
		a := newAuthz(first.ID, appURI)
		a.extra = map[string]string{"max_age": "60"}
		e.expectCode(t, b.get(a.url(e)), a)
		if upstreamLogins() != 2 {
			t.Fatal("max_age not exceeded but sent upstream")
		}
	})
	t.Run("max_age exceeded forces the upstream", func(t *testing.T) {
		e.clock.Advance(31 * time.Second)
		a := newAuthz(first.ID, appURI)
		a.extra = map[string]string{"max_age": "60"}
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		if upstreamLogins() != 3 || !c.AuthTime.Equal(e.clock.Now()) {
			t.Fatalf("logins %d auth_time %v", upstreamLogins(), c.AuthTime)
		}
	})
	t.Run("max_age=0", func(t *testing.T) {
		a := newAuthz(first.ID, appURI)
		a.extra = map[string]string{"max_age": "0"}
		e.expectCode(t, b.get(a.url(e)), a)
		if upstreamLogins() != 4 {
			t.Fatal("max_age=0 did not force a login")
		}
	})
	t.Run("prompt=none with max_age exceeded", func(t *testing.T) {
		e.clock.Advance(2 * time.Minute)
		a := newAuthz(first.ID, appURI)
		a.extra = map[string]string{"prompt": "none", "max_age": "60"}
		e.st.Writes()
		e.expectRedirectError(t, b.get(a.url(e)), appURI, "login_required", a.state)
		e.expectNoWrites(t)
	})
	t.Run("session expires", func(t *testing.T) {
		e.clock.Advance(24 * time.Hour)
		a := newAuthz(first.ID, appURI)
		a.extra = map[string]string{"prompt": "none"}
		e.expectRedirectError(t, b.get(a.url(e)), appURI, "login_required", a.state)
	})
	t.Run("another browser has no session", func(t *testing.T) {
		a := newAuthz(first.ID, appURI)
		a.extra = map[string]string{"prompt": "none"}
		e.expectRedirectError(t, e.browser(t).get(a.url(e)), appURI, "login_required", a.state)
	})
}

// testSessionRespectsCurrentPolicy: a disabled user, or one the allowlist
// no longer admits, loses single sign-on at once.
func testSessionRespectsCurrentPolicy(t *testing.T, e *env) {
	client := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	_, c := e.expectCode(t, b.get(a.url(e)), a)
	t.Cleanup(func() {
		e.setAllow(nil)
		_ = e.st.SetUserDisabled(context.Background(), c.UserID, false)
	})

	e.setAllow(func(string, store.User) error { return errDenied })
	a2 := newAuthz(client.ID, appURI)
	a2.extra = map[string]string{"prompt": "none"}
	e.expectRedirectError(t, b.get(a2.url(e)), appURI, "login_required", a2.state)
	e.st.Writes()
	e.expectPage(t, b.get(newAuthz(client.ID, appURI).url(e)), http.StatusForbidden, "not allowed")
	if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("denied login wrote %v", w)
	}

	e.setAllow(nil)
	if err := e.st.SetUserDisabled(context.Background(), c.UserID, true); err != nil {
		t.Fatal(err)
	}
	e.expectRedirectError(t, b.get(a2.url(e)), appURI, "login_required", a2.state)
	e.st.Writes()
	cb, req := capture(t, e, b, newAuthz(client.ID, appURI))
	e.expectPage(t, b.get(cb.String()), http.StatusForbidden, "disabled")
	if w := e.st.Writes(); w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("disabled login wrote %v", w)
	}
	expectEnded(t, e, req)
}

func testAllowlistDenied(t *testing.T, e *env) {
	e.setAllow(func(pt string, u store.User) error {
		if pt != "oidc" || u.Subject != "o-456" {
			t.Errorf("allowlist asked about %s %+v", pt, u)
		}
		return errDenied
	})
	t.Cleanup(func() { e.setAllow(nil) })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	a.extra = map[string]string{"idp_hint": "oidc"}
	cb, req := capture(t, e, b, a)
	r := b.get(cb.String())
	e.expectPage(t, r, http.StatusForbidden, "You signed in as carol with Company SSO, but you are not allowed to use this server.")
	if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 || w["AddConsent"] != 0 {
		t.Fatalf("denied login wrote %v", w)
	}
	expectEnded(t, e, req)
	if strings.Contains(r.body, "not on the list") {
		// Only *allowlist.Denied reasons are shown; other errors are not.
		t.Fatal("internal error text shown")
	}
}

func testUpstreamDeclined(t *testing.T, e *env) {
	e.gh.SetDecline(true)
	t.Cleanup(func() { e.gh.SetDecline(false) })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	cb, req := capture(t, e, b, a)
	e.expectRedirectError(t, b.get(cb.String()), appURI, "access_denied", a.state)
	if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("writes %v", w)
	}
	expectEnded(t, e, req)
	// A reloaded decline tells the client nothing again.
	e.expectPage(t, b.get(cb.String()), http.StatusBadRequest, "expired or was already completed")

	// The database fails to end the claimed request: the client is told
	// of the decline all the same (the claim already made the request
	// unusable), not left with a 500 page.
	b = e.browser(t)
	a = newAuthz(client.ID, appURI)
	cb, req = capture(t, e, b, a)
	e.st.FailEnd(req.IDDigest)
	e.expectRedirectError(t, b.get(cb.String()), appURI, "access_denied", a.state)
}

func testUpstreamFailureShowsPage(t *testing.T, e *env) {
	e.gh.FailAPI("/user", http.StatusInternalServerError)
	t.Cleanup(func() { e.gh.FailAPI("/user", 0) })
	client := e.addClient(store.Client{})
	b := e.browser(t)
	cb, req := capture(t, e, b, newAuthz(client.ID, appURI))
	r := b.get(cb.String())
	if r.status < 500 || r.location() != nil {
		t.Fatalf("status %d location %v", r.status, r.location())
	}
	expectSecurityHeaders(t, r)
	if w := e.st.Writes(); w["UpsertUser"] != 0 || w["CreateSession"] != 0 || w["CreateAuthCode"] != 0 {
		t.Fatalf("writes %v", w)
	}
	expectEnded(t, e, req) // the outage is the answer
}

func testChooser(t *testing.T, e *env) {
	client := e.addClient(store.Client{SkipConsent: true})

	t.Run("several upstreams show the chooser", func(t *testing.T) {
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		page := b.get(a.url(e))
		e.expectPage(t, page, http.StatusOK, "Sign in with GitHub")
		gh, g, o := strings.Index(page.body, "GitHub"), strings.Index(page.body, "Google"), strings.Index(page.body, "Company SSO")
		if gh < 0 || g < gh || o < g {
			t.Fatal("chooser does not list the upstreams in order")
		}
		link := chooserLink(t, page.body, "google")
		_, c := e.expectCode(t, b.get(link), a)
		u, _ := e.st.GetUser(context.Background(), c.UserID)
		if u.Provider != "google" {
			t.Fatalf("signed in with %s", u.Provider)
		}
	})
	t.Run("idp_hint picks the upstream", func(t *testing.T) {
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		a.extra = map[string]string{"idp_hint": "oidc", "login_hint": "carol@corp.example"}
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		u, _ := e.st.GetUser(context.Background(), c.UserID)
		if u.Provider != "oidc" {
			t.Fatalf("signed in with %s", u.Provider)
		}
		reqs := e.oidc.AuthorizeRequests()
		if got := reqs[len(reqs)-1].Get("login_hint"); got != "carol@corp.example" {
			t.Fatalf("login_hint %q not passed on", got)
		}
	})
	t.Run("unknown idp_hint shows the chooser", func(t *testing.T) {
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		a.extra = map[string]string{"idp_hint": "nope"}
		e.expectPage(t, b.get(a.url(e)), http.StatusOK, "Sign in with Company SSO")
	})
	t.Run("chooser of another browser", func(t *testing.T) {
		b := e.browser(t)
		page := b.get(newAuthz(client.ID, appURI).url(e))
		e.st.Writes()
		e.expectPage(t, e.browser(t).get(chooserLink(t, page.body, "github")), http.StatusBadRequest, "expired")
		e.expectNoWrites(t)
	})
	t.Run("going back to the chooser replaces the upstream state", func(t *testing.T) {
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		page := b.get(a.url(e))
		b.stopAtCallback = true
		first := b.get(chooserLink(t, page.body, "github")).location()
		second := b.get(chooserLink(t, page.body, "oidc")).location()
		b.stopAtCallback = false
		e.st.Writes()
		e.expectPage(t, b.get(first.String()), http.StatusBadRequest, "expired")
		e.expectNoWrites(t)
		e.expectCode(t, b.get(second.String()), a)
	})
}

func chooserLink(t *testing.T, body, idp string) string {
	t.Helper()
	for _, part := range strings.Split(body, `href="`)[1:] {
		link, _, _ := strings.Cut(part, `"`)
		link = strings.ReplaceAll(link, "&amp;", "&")
		if strings.Contains(link, "idp="+idp) {
			return link
		}
	}
	t.Fatalf("no chooser link for %s", idp)
	return ""
}

// testConcurrentRequestsInOneBrowser: two clients authorizing at once in
// one browser do not overwrite each other's pending request.
func testConcurrentRequestsInOneBrowser(t *testing.T, e *env) {
	c1 := e.addClient(store.Client{})
	c2 := e.addClient(store.Client{})
	b := e.browser(t)
	a1, a2 := newAuthz(c1.ID, appURI), newAuthz(c2.ID, appURI)
	p1 := b.get(a1.url(e))
	p2 := b.get(a2.url(e))
	e.expectCode(t, b.decide(p1, "approve"), a1)
	e.expectCode(t, b.decide(p2, "approve"), a2)
}

// TestLoginFreshnessAtUpstream: prompt=login and max_age reach the
// upstream, and the auth_time recorded (for the code and the session) is
// the upstream's, not the time authd heard back from it.
func TestLoginFreshnessAtUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"oidc", "github"})
	client := e.addClient(store.Client{SkipConsent: true})
	b := e.browser(t)
	lastOIDC := func() url.Values { r := e.oidc.AuthorizeRequests(); return r[len(r)-1] }
	at := func(extra map[string]string) *authz {
		a := newAuthz(client.ID, appURI)
		a.extra = map[string]string{"idp_hint": "oidc"}
		maps.Copy(a.extra, extra)
		return a
	}

	// The upstream signs the user in from its session of ten minutes ago.
	old := e.clock.Now().Add(-10 * time.Minute)
	e.oidc.SetAuthTime(old)
	a := at(nil)
	if _, c := e.expectCode(t, b.get(a.url(e)), a); !c.AuthTime.Equal(old) {
		t.Fatalf("code auth_time %v, want the upstream's %v", c.AuthTime, old)
	}
	q := lastOIDC()
	if q.Has("prompt") || q.Has("max_age") {
		t.Fatalf("plain request sent prompt=%q max_age=%q upstream", q.Get("prompt"), q.Get("max_age"))
	}
	n := len(e.oidc.AuthorizeRequests())

	t.Run("single sign-on keeps the upstream's auth_time", func(t *testing.T) {
		a := at(nil)
		if _, c := e.expectCode(t, b.get(a.url(e)), a); !c.AuthTime.Equal(old) || len(e.oidc.AuthorizeRequests()) != n {
			t.Fatalf("code auth_time %v, %d upstream requests", c.AuthTime, len(e.oidc.AuthorizeRequests())-n)
		}
	})
	t.Run("max_age the upstream ignores is refused", func(t *testing.T) {
		// The session is ten minutes old: authd goes upstream with
		// max_age, and the upstream answers from the same old session.
		a := at(map[string]string{"max_age": "300"})
		e.st.Writes()
		e.expectPage(t, b.get(a.url(e)), http.StatusBadGateway, "asked for a recent sign-in")
		if q := lastOIDC(); q.Get("max_age") != "300" {
			t.Fatalf("upstream got max_age=%q", q.Get("max_age"))
		}
		if w := e.st.Writes(); w["CreateAuthCode"] != 0 || w["CreateSession"] != 0 || w["UpsertUser"] != 0 {
			t.Fatalf("writes %v", w)
		}
	})
	t.Run("max_age honoured", func(t *testing.T) {
		e.oidc.SetAuthTime(time.Time{}) // a fresh sign-in at the upstream
		e.clock.Advance(time.Minute)
		a := at(map[string]string{"max_age": "300"})
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		if q := lastOIDC(); q.Get("max_age") != "300" || !c.AuthTime.Equal(e.clock.Now()) {
			t.Fatalf("upstream got max_age=%q; code auth_time %v", q.Get("max_age"), c.AuthTime)
		}
	})
	t.Run("prompt=login reaches the upstream", func(t *testing.T) {
		e.clock.Advance(time.Minute)
		a := at(map[string]string{"prompt": "login"})
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		if q := lastOIDC(); q.Get("prompt") != "login" || q.Has("max_age") || !c.AuthTime.Equal(e.clock.Now()) {
			t.Fatalf("upstream got prompt=%q max_age=%q; code auth_time %v", q.Get("prompt"), q.Get("max_age"), c.AuthTime)
		}
	})
	t.Run("auth_time ahead of our clock", func(t *testing.T) {
		e.oidc.SetAuthTime(e.clock.Now().Add(time.Hour))
		a := at(map[string]string{"prompt": "login"})
		if _, c := e.expectCode(t, b.get(a.url(e)), a); !c.AuthTime.Equal(e.clock.Now()) {
			t.Fatalf("code auth_time %v, want now %v", c.AuthTime, e.clock.Now())
		}
	})
	t.Run("github: prompt=login shows the account chooser", func(t *testing.T) {
		a := at(map[string]string{"prompt": "login", "idp_hint": "github"})
		_, c := e.expectCode(t, b.get(a.url(e)), a)
		r := e.gh.AuthorizeRequests()
		if q := r[len(r)-1]; q.Get("prompt") != "select_account" || !c.AuthTime.Equal(e.clock.Now()) {
			t.Fatalf("github got prompt=%q; code auth_time %v", q.Get("prompt"), c.AuthTime)
		}
	})
}
