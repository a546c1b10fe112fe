package authorize

import (
	"bytes"
	"context"
	"errors"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// TestDecide: the one choice between an error page and an error redirect.
// A redirect needs a client and a redirect URI verified for this request
// and still registered; it carries error, error_description, state and
// iss. Everything else is a page, and an internal cause is never shown.
func TestDecide(t *testing.T) {
	t.Parallel()
	const iss = "https://auth.example.com"
	const secret = "pq: password=hunter2"
	withQuery := "https://app.example.com/cb?tenant=a"
	client := store.Client{ID: "c1", Source: store.SourceDynamic,
		Metadata: store.ClientMetadata{RedirectURIs: []string{appURI, withQuery}}}
	withdrawn := client
	withdrawn.Metadata.RedirectURIs = []string{"https://app.example.com/new"}
	disabled := client
	disabled.Disabled = true

	// The errors the handlers really return before anything is verified.
	h := &Handler{Store: store.NewMemory(), Issuer: iss}
	_, unknownClient := h.authorizeClient(httptest.NewRequest(http.MethodGet, "/authorize", nil), url.Values{"client_id": {"nope"}}, time.Now())
	_, unregistered := authorizeRedirectURI(url.Values{"redirect_uri": {"https://evil.example/cb"}, "state": {"s1"}}, client)
	verified, err := authorizeRedirectURI(url.Values{"redirect_uri": {appURI}, "state": {"s1"}}, client)
	if err != nil {
		t.Fatal(err)
	}
	denied := oauth.AccessDenied("the user denied the request")

	type want struct {
		redirect string     // "" for a page
		params   url.Values // of the redirect: exactly these
		status   int        // of the page
		says     string     // the page's message contains
		header   http.Header
	}
	for _, tc := range []struct {
		name string
		err  error
		want want
	}{
		{"unknown client", unknownClient,
			want{status: http.StatusBadRequest, says: "not registered with this server"}},
		{"known client, redirect URI not registered", unregistered,
			want{status: http.StatusBadRequest, says: "not redirected"}},
		{"verified redirect URI withdrawn since", target{client: withdrawn, redirectURI: appURI, state: "s1"}.fail(denied),
			want{status: http.StatusBadRequest, says: "no longer lists"}},
		{"client disabled since", target{client: disabled, redirectURI: appURI, state: "s1"}.fail(denied),
			want{status: http.StatusBadRequest, says: "no longer lists"}},
		{"client gone", target{redirectURI: appURI, state: "s1"}.fail(denied),
			want{status: http.StatusBadRequest, says: "no longer lists"}},
		{"verified", verified.fail(denied),
			want{redirect: appURI, params: url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}, "state": {"s1"}, "iss": {iss}}}},
		{"verified, registered query kept, no state", target{client: client, redirectURI: withQuery}.fail(oauth.LoginRequired("the user is not signed in")),
			want{redirect: withQuery + "&", params: url.Values{"tenant": {"a"}, "error": {"login_required"}, "error_description": {"the user is not signed in"}, "iss": {iss}}}},
		{"internal error", internalError(errors.New(secret)),
			want{status: http.StatusInternalServerError, says: "could not complete your request"}},
		{"database unavailable", internalError(store.Unavailable(errors.New(secret))),
			want{status: http.StatusServiceUnavailable, says: "try again in a moment", header: http.Header{"Retry-After": {"1"}}}},
		// RFC 6749 §4.1.2.1 server_error: once the redirect URI is
		// verified the client is told, without the cause (as before).
		{"internal error at a verified redirect URI", verified.fail(errors.New(secret)),
			want{redirect: appURI, params: url.Values{"error": {"server_error"}, "error_description": {"internal server error"}, "state": {"s1"}, "iss": {iss}}}},
		{"database unavailable at a verified redirect URI", verified.fail(store.Unavailable(errors.New(secret))),
			want{redirect: appURI, params: url.Values{"error": {"temporarily_unavailable"}, "error_description": {"the service is temporarily unavailable, retry later"}, "state": {"s1"}, "iss": {iss}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fe *flowError
			if !errors.As(tc.err, &fe) {
				t.Fatalf("%T is not a *flowError", tc.err)
			}
			a := decide(fe, iss)
			if strings.Contains(a.location+a.title+a.msg+a.hint, "hunter2") {
				t.Fatalf("the internal cause is shown: %+v", a)
			}
			if tc.want.redirect == "" {
				if a.location != "" {
					t.Fatalf("redirected to %s, want a page", a.location)
				}
				if a.status != tc.want.status || a.title == "" || !strings.Contains(a.msg, tc.want.says) {
					t.Fatalf("page %d %q %q, want %d saying %q", a.status, a.title, a.msg, tc.want.status, tc.want.says)
				}
				for k := range tc.want.header {
					if a.header.Get(k) != tc.want.header.Get(k) {
						t.Fatalf("header %s = %q, want %q", k, a.header.Get(k), tc.want.header.Get(k))
					}
				}
				return
			}
			if !strings.HasPrefix(a.location, tc.want.redirect) {
				t.Fatalf("redirected to %q, want %s…", a.location, tc.want.redirect)
			}
			u, err := url.Parse(a.location)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Query(); got.Encode() != tc.want.params.Encode() {
				t.Fatalf("redirect parameters %v, want %v", got, tc.want.params)
			}
		})
	}
}

// TestInternalErrorAnswer: a store failure a handler returns as it is
// becomes a 500 page that says nothing of the cause, which is logged.
func TestInternalErrorAnswer(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	h := &Handler{Issuer: "https://auth.example.com", Log: slog.New(slog.NewTextHandler(&logs, nil))}
	rec := httptest.NewRecorder()
	h.serve(func(http.ResponseWriter, *http.Request) error {
		return errors.New("pq: password=hunter2 connection reset")
	})(rec, httptest.NewRequest(http.MethodGet, "/consent?req=x", nil))
	r := resp{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if r.status != http.StatusInternalServerError || r.location() != nil || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %v", r.status, r.header)
	}
	expectSecurityHeaders(t, r)
	if strings.Contains(r.body, "hunter2") || strings.Contains(r.body, "pq:") {
		t.Fatalf("the page shows the cause:\n%s", r.body)
	}
	if !strings.Contains(html.UnescapeString(r.body), "could not complete your request") {
		t.Fatalf("page:\n%s", r.body)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "connection reset") {
		t.Fatalf("the cause is not logged at error level:\n%s", logs.String())
	}
}

// TestStoreUnavailablePages: with the database budget spent, store.Bounded
// refuses, and every page of the flow answers 503 with Retry-After, as an
// HTML page, redirecting nowhere.
func TestStoreUnavailablePages(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	now := time.Now()
	if err := mem.CreateClient(context.Background(), store.Client{ID: "c1", Source: store.SourceDynamic,
		Metadata: store.ClientMetadata{RedirectURIs: []string{appURI}}, CreatedAt: now, UpdatedAt: now, LastUsedAt: now}); err != nil {
		t.Fatal(err)
	}
	h := &Handler{
		Store: store.NewBounded(mem, time.Second, 0), Issuer: "http://127.0.0.1:1", Connectors: []upstream.Connector{&stubConnector{}},
		Policy: &policy.Policy{Resources: []policy.Resource{{URI: resMCP}}},
	}
	router := chi.NewRouter()
	h.Routes(router)
	rid := oauth.NewToken(oauth.PrefixRequest) // a request this browser holds
	handle := requestHandle(oauth.Digest(rid))
	for _, tc := range []struct{ path, cookie string }{
		{"/authorize?" + validQuery("c1", appURI).Encode(), ""},
		{"/login?req=" + handle, requestCookiePrefix + handle + "=" + rid},
		{"/consent?req=" + handle, requestCookiePrefix + handle + "=" + rid},
		{"/callback/stub?state=s&code=c", ""},
		{"/apps", sessionCookie + "=" + oauth.PrefixSession + "x"},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1"+tc.path, nil)
		if tc.cookie != "" {
			req.Header.Set("Cookie", tc.cookie)
		}
		req = req.WithContext(store.WithBudget(req.Context(), 0)) // spent
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Location") != "" ||
			rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: %d, Retry-After %q, Location %q, %s; want a 503 page with Retry-After", tc.path, rec.Code,
				rec.Header().Get("Retry-After"), rec.Header().Get("Location"), rec.Header().Get("Content-Type"))
		}
	}
}

// TestClientChangedMidFlow: a client deleted, disabled or stripped of its
// redirect URI while the user signs in or decides gets a page, never a
// redirect, whatever the user does next, and no code is made.
func TestClientChangedMidFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	ctx := context.Background()
	withdraw := func(t *testing.T, c store.Client) {
		c.Metadata.RedirectURIs = []string{"https://app.example.com/new"}
		if err := e.st.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	disable := func(t *testing.T, c store.Client) {
		c.Disabled = true
		if err := e.st.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	expire := func(t *testing.T, c store.Client) {
		at := e.clock.Now()
		c.ExpiresAt = &at
		if err := e.st.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(t *testing.T, c store.Client) {
		if err := e.st.DeleteClient(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	expectPageNoCode := func(t *testing.T, r resp, says string) {
		t.Helper()
		e.expectPage(t, r, http.StatusBadRequest, says)
		if w := e.st.Writes(); w["CreateAuthCode"] != 0 {
			t.Fatalf("writes %v", w)
		}
	}

	// At the upstream: the callback comes back after the change.
	atUpstream := func(t *testing.T, decline bool, change func(*testing.T, store.Client), says string) {
		e.gh.SetDecline(decline)
		t.Cleanup(func() { e.gh.SetDecline(false) })
		client := e.addClient(store.Client{SkipConsent: true})
		b := e.browser(t)
		loc, req := capture(t, e, b, newAuthz(client.ID, appURI))
		change(t, client)
		e.st.Writes()
		expectPageNoCode(t, b.get(loc.String()), says)
		expectEnded(t, e, req)
	}
	t.Run("upstream declines, redirect URI withdrawn meanwhile", func(t *testing.T) {
		atUpstream(t, true, withdraw, "no longer lists")
	})
	t.Run("upstream declines, client disabled meanwhile", func(t *testing.T) {
		atUpstream(t, true, disable, "no longer lists")
	})
	t.Run("upstream signs in, client disabled meanwhile", func(t *testing.T) {
		atUpstream(t, false, disable, "no longer registered")
	})
	t.Run("upstream signs in, redirect URI withdrawn meanwhile", func(t *testing.T) {
		atUpstream(t, false, withdraw, "no longer lists")
	})
	t.Run("upstream signs in, client expired meanwhile", func(t *testing.T) {
		// The client's row stays (unlike a deletion), so the callback's
		// failed client lookup must end the request itself.
		atUpstream(t, false, expire, "no longer registered")
	})
	t.Run("upstream signs in, client deleted meanwhile", func(t *testing.T) {
		// Deleting the client deletes its pending requests too.
		atUpstream(t, false, remove, "expired or was already completed")
	})

	// On the consent page: the user denies after the change.
	onConsent := func(t *testing.T, change func(*testing.T, store.Client), says string) {
		client := e.addClient(store.Client{})
		b := e.browser(t)
		page := b.get(newAuthz(client.ID, appURI).url(e))
		if !isConsentPage(page) {
			t.Fatalf("want the consent page, got %d\n%s", page.status, excerpt(page.body))
		}
		change(t, client)
		e.st.Writes()
		expectPageNoCode(t, b.decide(page, "deny"), says)
	}
	t.Run("user denies, client disabled meanwhile", func(t *testing.T) {
		onConsent(t, disable, "no longer registered")
	})
	t.Run("user denies, redirect URI withdrawn meanwhile", func(t *testing.T) {
		onConsent(t, withdraw, "no longer lists")
	})
	t.Run("user denies, client deleted meanwhile", func(t *testing.T) {
		onConsent(t, remove, "expired")
	})
}
