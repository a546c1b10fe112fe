package backchannel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

type env struct {
	idp *upstreamtest.OIDC
	dsn string // st's database
	st  *store.Postgres
	srv *httptest.Server

	mu     sync.Mutex
	events []string // "event upstream" passed to OnEvent
}

// newEnv: a receiver on Postgres for upstream "sso" (the fake OpenID
// Provider, logout on, revoking grants) and "quiet" (the same provider,
// logout off).
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{idp: upstreamtest.NewOIDC(t), dsn: pgtest.DSN(t)}
	var err error
	if e.st, err = store.OpenPostgres(context.Background(), e.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.st.Close)
	var conns []upstream.Connector
	for id, mode := range map[string]string{"sso": upstream.BackChannelLogoutGrants, "quiet": ""} {
		cfg := e.idp.Config(id, upstream.TypeOIDC)
		cfg.OIDC.BackChannelLogout = mode
		cfg.RedirectURL = "https://auth.example.com/callback/" + id
		c, err := upstream.New(context.Background(), cfg, e.idp.Client(), nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	r := chi.NewRouter()
	(&Handler{Store: e.st, Connectors: conns, Log: slog.New(slog.DiscardHandler), OnEvent: func(event, upstream string) {
		e.mu.Lock()
		e.events = append(e.events, event+" "+upstream)
		e.mu.Unlock()
	}}).Routes(r)
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

// signedIn stores a user of upstream with a session and returns both.
func (e *env) signedIn(t *testing.T, upstreamID, sub string) (store.User, store.Session) {
	t.Helper()
	now := time.Now()
	u, err := e.st.UpsertUser(t.Context(), store.User{Provider: upstreamID, Subject: sub, Email: sub + "@corp.example",
		CreatedAt: now, UpdatedAt: now, LastLoginAt: now})
	if err != nil {
		t.Fatal(err)
	}
	s := store.Session{IDDigest: oauth.Digest(oauth.NewToken(oauth.PrefixSession)), UserID: u.ID, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.st.CreateSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return u, s
}

func (e *env) post(t *testing.T, path, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post(e.srv.URL+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header, m
}

func (e *env) send(t *testing.T, upstreamID, token string) (int, http.Header, map[string]any) {
	t.Helper()
	return e.post(t, "/upstream/"+upstreamID+"/backchannel-logout", "application/x-www-form-urlencoded",
		url.Values{"logout_token": {token}}.Encode())
}

// TestLogoutTokenRefusals: every logout token §2.6 says to reject, and
// every malformed request, gets 400 invalid_request with Cache-Control:
// no-store (404 for an upstream without back-channel logout), and the
// user's session survives each.
func TestLogoutTokenRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, sess := e.signedIn(t, "sso", "sub-erin")
	e.signedIn(t, "quiet", "sub-erin")
	good := upstreamtest.LogoutToken{Subject: "sub-erin", SID: "sid-1"}
	with := func(mod func(l *upstreamtest.LogoutToken)) string {
		l := good
		mod(&l)
		return e.idp.SignLogoutToken(t, l)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, upstream, contentType, body string
		status                            int
		want                              string
	}{
		{name: "bad signature", body: with(func(l *upstreamtest.LogoutToken) { l.BadSignature = true })},
		{name: "wrong audience", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"aud": "another-client"} })},
		{name: "wrong issuer", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"iss": "https://attacker.example"} })},
		{name: "expired", body: with(func(l *upstreamtest.LogoutToken) {
			l.Claims = map[string]any{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(-time.Minute).Unix()}
		})},
		{name: "no exp", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"exp": nil} })},
		{name: "lives too long", body: with(func(l *upstreamtest.LogoutToken) {
			l.Claims = map[string]any{"exp": now.Add(30 * 24 * time.Hour).Unix()}
		}), want: "expires more than"},
		{name: "issued in the future", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"iat": now.Add(time.Hour).Unix()} }), want: "future"},
		{name: "no iat", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"iat": nil} }), want: "iat"},
		{name: "no events", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"events": nil} }), want: "events"},
		{name: "other event", body: with(func(l *upstreamtest.LogoutToken) {
			l.Claims = map[string]any{"events": map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}}
		}), want: "events"},
		{name: "event not an object", body: with(func(l *upstreamtest.LogoutToken) {
			l.Claims = map[string]any{"events": map[string]any{upstream.LogoutEvent: "yes"}}
		}), want: "JSON object"},
		{name: "nonce present (an ID token)", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"nonce": "n-1"} }), want: "nonce"},
		{name: "no jti", body: with(func(l *upstreamtest.LogoutToken) { l.Claims = map[string]any{"jti": nil} }), want: "jti"},
		{name: "neither sub nor sid", body: with(func(l *upstreamtest.LogoutToken) { l.Subject, l.SID = "", "" }), want: "neither sub nor sid"},
		{name: "sid only", body: with(func(l *upstreamtest.LogoutToken) { l.Subject = "" }), want: "no sub"},
		{name: "typed as something else", body: with(func(l *upstreamtest.LogoutToken) { l.Type = "at+jwt" }), want: "typ"},
		{name: "not a JWT", body: "not-a-jwt"},
		{name: "upstream without logout", upstream: "quiet", body: e.idp.SignLogoutToken(t, good), status: http.StatusNotFound},
		{name: "unknown upstream", upstream: "nope", body: e.idp.SignLogoutToken(t, good), status: http.StatusNotFound},
		{name: "no logout_token", contentType: "application/x-www-form-urlencoded", body: "token=x"},
		{name: "two logout_tokens", contentType: "application/x-www-form-urlencoded", body: "logout_token=a&logout_token=b"},
		{name: "JSON body", contentType: "application/json", body: `{"logout_token":"x"}`},
		{name: "not UTF-8", contentType: "application/x-www-form-urlencoded", body: "logout_token=%FF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.upstream
			if up == "" {
				up = "sso"
			}
			var status int
			var hdr http.Header
			var body map[string]any
			if tc.contentType == "" {
				status, hdr, body = e.send(t, up, tc.body)
			} else {
				status, hdr, body = e.post(t, "/upstream/"+up+"/backchannel-logout", tc.contentType, tc.body)
			}
			want := tc.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			if status != want || body["error"] != "invalid_request" || hdr.Get("Cache-Control") != "no-store" {
				t.Fatalf("got %d %v (Cache-Control %q), want %d invalid_request, no-store", status, body, hdr.Get("Cache-Control"), want)
			}
			if d, _ := body["error_description"].(string); !strings.Contains(d, tc.want) {
				t.Fatalf("error_description %q does not say %q", d, tc.want)
			}
			if _, err := e.st.GetSession(t.Context(), sess.IDDigest, time.Now()); err != nil {
				t.Fatalf("the refused token ended the session: %v", err)
			}
		})
	}
}

// TestLogoutTokenReplayAndUnknownUser: a valid token ends the session and
// revokes the grant; the same jti again is refused, on the shared store
// (as another replica would see it); a valid token for a user authd does
// not know is a success with nothing to do.
func TestLogoutTokenReplayAndUnknownUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, sess := e.signedIn(t, "sso", "sub-finn")
	tok := e.idp.SignLogoutToken(t, upstreamtest.LogoutToken{Subject: "sub-finn"})
	if status, hdr, body := e.send(t, "sso", tok); status != http.StatusOK || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("valid logout token: %d %v", status, body)
	}
	if _, err := e.st.GetSession(t.Context(), sess.IDDigest, time.Now()); err == nil {
		t.Fatal("the session survived the logout")
	}
	_, sess = e.signedIn(t, "sso", "sub-finn") // signed in again
	if status, _, body := e.send(t, "sso", tok); status != http.StatusBadRequest || body["error"] != "invalid_request" ||
		!strings.Contains(body["error_description"].(string), "already used") {
		t.Fatalf("replayed logout token: %d %v", status, body)
	}
	if _, err := e.st.GetSession(t.Context(), sess.IDDigest, time.Now()); err != nil {
		t.Fatalf("a replayed logout token ended the new session: %v", err)
	}
	if status, _, body := e.send(t, "sso", e.idp.SignLogoutToken(t, upstreamtest.LogoutToken{Subject: "sub-nobody"})); status != http.StatusOK {
		t.Fatalf("logout of an unknown user: %d %v", status, body)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if want := []string{"upstream_logout sso", "upstream_logout_refused sso", "upstream_logout_unknown_user sso"}; !slices.Equal(e.events, want) {
		t.Fatalf("events %q, want %q", e.events, want)
	}
}

// TestLogoutRetriedAfterDatabaseFailure: the database fails while the
// user is being logged out (after the jti could have been recorded): 503,
// and nothing is recorded, so the provider's retry of the same token
// (§2.8) signs the user out, sessions and grant, instead of being refused
// as a replay. A replay after that success is refused.
func TestLogoutRetriedAfterDatabaseFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, sess := e.signedIn(t, "sso", "sub-gus")
	g, rt := e.grant(t, u)
	fired := pgtest.FailOnce(t, e.dsn, "sessions", "DELETE", fmt.Sprintf("OLD.user_id = '%s'", u.ID))
	tok := e.idp.SignLogoutToken(t, upstreamtest.LogoutToken{Subject: "sub-gus"})

	status, hdr, body := e.send(t, "sso", tok)
	if status != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" || hdr.Get("Cache-Control") != "no-store" || !fired() {
		t.Fatalf("logout with the database failing: %d %v (failure injected: %v), want 503 temporarily_unavailable", status, body, fired())
	}
	if _, err := e.st.GetSession(t.Context(), sess.IDDigest, time.Now()); err != nil {
		t.Fatalf("the failed logout ended the session anyway: %v", err)
	}

	if status, _, body := e.send(t, "sso", tok); status != http.StatusOK {
		t.Fatalf("the provider's retry of the same token: %d %v, want 200", status, body)
	}
	if _, err := e.st.GetSession(t.Context(), sess.IDDigest, time.Now()); err == nil {
		t.Fatal("the retried logout left the session")
	}
	if got, err := e.st.GetGrant(t.Context(), g.ID); err != nil || got.RevokedAt == nil {
		t.Fatalf("the retried logout left the grant live (err %v)", err)
	}
	if got, err := e.st.GetRefreshToken(t.Context(), rt); err != nil || got.UsedAt == nil {
		t.Fatalf("the retried logout left the refresh token usable (err %v)", err)
	}

	if status, _, body := e.send(t, "sso", tok); status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["error_description"]), "already used") {
		t.Fatalf("a replay after the logout: %d %v, want 400 already used", status, body)
	}
}

// grant gives u a grant with a refresh token (a redeemed code) and returns
// it with the refresh token's digest.
func (e *env) grant(t *testing.T, u store.User) (store.Grant, string) {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	c := store.Client{ID: "client-" + oauth.RandomString(8), Source: store.SourceConfig,
		Metadata:  store.ClientMetadata{RedirectURIs: []string{"https://app.example/cb"}, ClientName: "App"},
		CreatedAt: now, UpdatedAt: now, LastUsedAt: now}
	if err := e.st.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	code := store.AuthCode{Digest: oauth.Digest(oauth.NewToken("c_")), ClientID: c.ID, UserID: u.ID,
		RedirectURI: "https://app.example/cb", CodeChallenge: "x", CodeChallengeMethod: "S256",
		AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := e.st.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	g := store.Grant{ID: "g-" + oauth.RandomString(12), ClientID: c.ID, UserID: u.ID, AuthTime: now,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	rt := store.RefreshToken{Digest: oauth.Digest(oauth.NewToken("r_")), GrantID: g.ID, ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := e.st.RedeemAuthCode(ctx, code.Digest, now, g, &rt); err != nil {
		t.Fatal(err)
	}
	return g, rt.Digest
}
