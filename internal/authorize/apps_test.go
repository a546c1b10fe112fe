package authorize

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

func TestConnectedApps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	b := e.browser(t)

	e.expectPage(t, b.get("/apps"), http.StatusOK, "You are not signed in")

	dyn := e.addClient(store.Client{Metadata: store.ClientMetadata{ClientName: "Dynamic Agent",
		RedirectURIs: []string{"http://127.0.0.1/cb", "http://localhost/cb"}}})
	cfg := e.addClient(store.Client{Source: store.SourceConfig, Metadata: store.ClientMetadata{ClientName: "Operator Tool"}})

	a := newAuthz(dyn.ID, "http://127.0.0.1:9999/cb")
	a.scopes = []string{"read", "write"}
	code, c := e.expectCode(t, b.decide(b.get(a.url(e)), "approve"), a)
	a2 := newAuthz(cfg.ID, appURI)
	a2.resources = []string{resOther}
	e.expectCode(t, b.decide(b.get(a2.url(e)), "approve"), a2)

	// A first-party client never asks for consent, but holds a grant.
	fp := e.addClient(store.Client{Source: store.SourceConfig, SkipConsent: true, Metadata: store.ClientMetadata{ClientName: "Zed First Party"}})
	a3 := newAuthz(fp.ID, appURI)
	fpCode, _ := e.expectCode(t, b.get(a3.url(e)), a3)

	// What the token endpoint would do with the codes: grants.
	now := e.clock.Now()
	redeem := func(code string, c store.AuthCode) store.Grant {
		g := store.Grant{ID: uuid.NewString(), ClientID: c.ClientID, UserID: c.UserID, Scopes: c.Scopes, Resources: c.Resources,
			AuthTime: c.AuthTime, CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := e.st.RedeemAuthCode(context.Background(), oauth.Digest(code), now, g, nil); err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := redeem(code, c)
	fpStored, _ := e.st.GetAuthCode(context.Background(), oauth.Digest(fpCode), now)
	fpGrant := redeem(fpCode, fpStored)

	page := b.get("/apps")
	e.expectPage(t, page, http.StatusOK, "Connected apps")
	dynPart, cfgPart, ok := strings.Cut(page.body, "Operator Tool")
	if !ok {
		dynPart, cfgPart = page.body, ""
	}
	for _, s := range []string{"Dynamic Agent", "Unverified", "127.0.0.1", "localhost", "Example MCP (" + resMCP + ")",
		"Change your notes (write)", now.UTC().Format("2006-01-02 15:04 UTC")} {
		if !strings.Contains(dynPart, s) {
			t.Errorf("apps page lacks %q for the dynamic client", s)
		}
	}
	cfgPart, fpPart, _ := strings.Cut(cfgPart, "Zed First Party")
	for _, s := range []string{"Registered by the operator", "app.example.com", "Other MCP", "never"} {
		if !strings.Contains(cfgPart, s) {
			t.Errorf("apps page lacks %q for the config client", s)
		}
	}
	for _, s := range []string{"Registered by the operator", "Example MCP", "Read your notes (read)", now.UTC().Format("2006-01-02 15:04 UTC")} {
		if !strings.Contains(fpPart, s) {
			t.Errorf("apps page lacks %q for the first-party client", s)
		}
	}
	form := url.Values{"csrf": {csrfRe.FindStringSubmatch(page.body)[1]}, "client_id": {dyn.ID}}
	e.st.Writes()

	for _, tc := range []struct {
		name   string
		form   url.Values
		header []string
		status int
		says   string
	}{
		{"wrong token", url.Values{"csrf": {"x"}, "client_id": {dyn.ID}}, nil, http.StatusForbidden, "security token"},
		{"no token", url.Values{"client_id": {dyn.ID}}, nil, http.StatusForbidden, "security token"},
		{"cross-site", form, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "another site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.expectPage(t, b.post("/apps/revoke", tc.form, tc.header...), tc.status, tc.says)
			e.expectNoWrites(t)
		})
	}
	t.Run("not signed in", func(t *testing.T) {
		e.expectPage(t, e.browser(t).post("/apps/revoke", form), http.StatusForbidden, "not signed in")
		e.expectNoWrites(t)
	})

	t.Run("revoke", func(t *testing.T) {
		r := b.post("/apps/revoke", form)
		if r.status != http.StatusOK || r.url.Path != "/apps" {
			t.Fatalf("revoke ended at %d %s", r.status, r.url)
		}
		if strings.Contains(r.body, "Dynamic Agent") || !strings.Contains(r.body, "Operator Tool") {
			t.Fatal("revoked app still listed, or the other one gone")
		}
		got, err := e.st.GetGrant(context.Background(), g.ID)
		if err != nil || got.RevokedAt == nil {
			t.Fatalf("grant not revoked: %+v %v", got, err)
		}
		if _, err := e.st.GetConsent(context.Background(), c.UserID, dyn.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("consent still there: %v", err)
		}
		// The next authorization asks again.
		if !isConsentPage(b.get(newAuthz(dyn.ID, "http://127.0.0.1:9999/cb").url(e))) {
			t.Fatal("consent not asked after revocation")
		}
	})
	t.Run("revoke a first-party client", func(t *testing.T) {
		f := url.Values{"csrf": form["csrf"], "client_id": {fp.ID}}
		r := b.post("/apps/revoke", f)
		if r.status != http.StatusOK || strings.Contains(r.body, "Zed First Party") {
			t.Fatalf("revoke ended at %d, still listed: %v", r.status, strings.Contains(r.body, "Zed First Party"))
		}
		if got, err := e.st.GetGrant(context.Background(), fpGrant.ID); err != nil || got.RevokedAt == nil {
			t.Fatalf("grant not revoked: %+v %v", got, err)
		}
	})

	t.Run("logout", func(t *testing.T) {
		page := b.get("/apps")
		e.expectPage(t, b.post("/logout", url.Values{"csrf": {"wrong"}}), http.StatusForbidden, "security token")
		e.expectPage(t, b.get("/apps"), http.StatusOK, "Operator Tool")
		r := b.post("/logout", url.Values{"csrf": {csrfRe.FindStringSubmatch(page.body)[1]}})
		e.expectPage(t, r, http.StatusOK, "You are not signed in")
		a := newAuthz(cfg.ID, appURI)
		a.extra = map[string]string{"prompt": "none"}
		e.expectRedirectError(t, b.get(a.url(e)), appURI, "login_required", a.state)
	})
}

// TestSecurityHeadersOnEveryPage visits each kind of page and redirect.
func TestSecurityHeadersOnEveryPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github", "oidc"})
	client := e.addClient(store.Client{})
	b := e.browser(t)
	pages := map[string]resp{
		"error":    b.get("/authorize?client_id=nope"),
		"apps 401": b.get("/apps"),
		"expired":  b.get("/consent?req=" + strings.Repeat("a", 22)),
	}
	a := newAuthz(client.ID, appURI)
	chooser := b.get(a.url(e))
	pages["chooser"] = chooser
	consent := b.get(chooserLink(t, chooser.body, "github"))
	pages["consent"] = consent
	e.expectCode(t, b.decide(consent, "approve"), a)
	pages["apps"] = b.get("/apps")
	e.setAllow(func(string, store.User) error { return errDenied })
	other := e.browser(t)
	pages["denied"] = other.get(chooserLink(t, other.get(newAuthz(client.ID, appURI).url(e)).body, "github"))
	if pages["denied"].status != http.StatusForbidden {
		t.Fatalf("denied page: %d", pages["denied"].status)
	}
	for name, r := range pages {
		t.Run(name, func(t *testing.T) {
			if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
				t.Fatalf("%s: %d %s", name, r.status, r.header.Get("Content-Type"))
			}
			expectSecurityHeaders(t, r)
			csp := r.header.Get("Content-Security-Policy")
			if name != "consent" && !strings.Contains(csp, "form-action 'self'") {
				t.Fatalf("CSP %q lacks form-action 'self'", csp)
			}
		})
	}
	t.Run("redirects are not cached", func(t *testing.T) {
		q := validQuery(client.ID, appURI)
		q.Set("response_type", "token")
		r := b.get("/authorize?" + q.Encode())
		if r.location() == nil || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("redirect headers %v", r.header)
		}
	})
}

// TestAppsLastUsedAfterTheGrantEnded: an application the user still
// consents to, whose grant has ended (expired here; revoked alike), shows
// when it was last used, not "never".
func TestAppsLastUsedAfterTheGrantEnded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	b := e.browser(t)
	dyn := e.addClient(store.Client{Metadata: store.ClientMetadata{ClientName: "Ended Agent",
		RedirectURIs: []string{"http://127.0.0.1/cb"}}})
	a := newAuthz(dyn.ID, "http://127.0.0.1:9999/cb")
	code, c := e.expectCode(t, b.decide(b.get(a.url(e)), "approve"), a)
	used := e.clock.Now().Add(-3 * time.Hour)
	g := store.Grant{ID: uuid.NewString(), ClientID: c.ClientID, UserID: c.UserID, Scopes: c.Scopes, Resources: c.Resources,
		AuthTime: c.AuthTime, CreatedAt: used, LastUsedAt: used, ExpiresAt: e.clock.Now().Add(time.Hour)}
	if _, err := e.st.RedeemAuthCode(context.Background(), oauth.Digest(code), e.clock.Now(), g, nil); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour) // the grant has expired; the consent stays
	page := b.get("/apps")
	e.expectPage(t, page, http.StatusOK, "Ended Agent")
	if want := used.UTC().Format("2006-01-02 15:04 UTC"); !strings.Contains(page.body, "<dd>"+want+"</dd>") {
		t.Errorf("/apps shows no last use %s for an app whose grant ended:\n%s", want, page.body)
	}
}

// TestAppsSignInWhenSignedOut: /apps signed out offers a sign-in at each
// upstream; it goes through the upstream and returns to /apps signed in,
// with no client involved. The sign-in is bound to the browser that
// started it: its callback URL signs nobody else in.
func TestAppsSignInWhenSignedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github", "oidc"})
	client := e.addClient(store.Client{})
	b := e.browser(t)
	page := b.get("/apps")
	e.expectPage(t, page, http.StatusOK, "You are not signed in")
	var link string
	for _, m := range anyHref.FindAllStringSubmatch(page.body, -1) {
		if l := html.UnescapeString(m[1]); strings.HasPrefix(l, "/apps/login?") && strings.Contains(l, "idp=github") {
			link = l
		}
	}
	if link == "" || !strings.Contains(page.body, "Sign in with GitHub") || !strings.Contains(page.body, "Sign in with Company SSO") {
		t.Fatalf("signed-out /apps offers no sign-in:\n%s", excerpt(page.body))
	}

	// Someone else's browser gets the callback URL: nobody is signed in.
	thief := e.browser(t)
	thief.stopAtCallback = true
	cb := thief.get(link)
	if loc := cb.location(); loc == nil || !strings.Contains(loc.Path, "/callback/github") {
		t.Fatalf("the sign-in did not go through the upstream: %d %v", cb.status, cb.location())
	}
	victim := e.browser(t)
	e.expectPage(t, victim.get(cb.location().String()), http.StatusBadRequest, "different browser")
	e.expectPage(t, victim.get("/apps"), http.StatusOK, "You are not signed in")

	back := b.get(link)
	if back.url.Path != "/apps" {
		t.Fatalf("the sign-in ended at %s, not /apps", back.url)
	}
	e.expectPage(t, back, http.StatusOK, "You have not approved any application.")
	if !strings.Contains(back.body, "Signed in as <strong>alice</strong>") {
		t.Fatalf("/apps after its sign-in:\n%s", excerpt(back.body))
	}

	// The session is an ordinary one: an authorization skips the sign-in.
	a := newAuthz(client.ID, appURI)
	if consent := b.get(a.url(e)); !isConsentPage(consent) {
		t.Fatalf("after signing in on /apps, /authorize asked to sign in again:\n%s", excerpt(consent.body))
	}
}
