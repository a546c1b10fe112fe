package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// TestBackChannelLogoutThroughTheBinary: an OpenID Provider's logout token
// (OpenID Connect Back-Channel Logout 1.0) ends the user's sign-in at
// authd: the next authorization goes to the provider again instead of
// reusing authd's session. With oidc.backchannel_logout: grants the user's
// refresh token stops working too; with sessions it keeps working. The
// same token sent again is refused (400 invalid_request), on Postgres.
// In "grants-retried" the database fails during the first delivery (503):
// the provider's retry of the same token must still sign the user out.
func TestBackChannelLogoutThroughTheBinary(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"grants", "sessions", "grants-retried"} {
		mode, retried := strings.CutSuffix(name, "-retried")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			idp := upstreamtest.NewOIDC(t)
			idp.AddUser(upstreamtest.OIDCUser{Subject: "sub-dora", Email: "dora@corp.example", EmailVerified: true, Name: "Dora"})
			dsn, _ := postgresStore(t)
			inst := startAuthdWith(t, freeAddr(t), map[string]string{
				"AUTHD_DATABASE_URL":           dsn,
				"AUTHD_KEYS_ENCRYPTION_SECRET": "test-encryption-secret-0123456789abcdef",
				"AUTHD_RESOURCES":              fmt.Sprintf(`[{"uri":%q,"name":"MCP"}]`, mcpResource),
				"AUTHD_ALLOWLIST_EMAILS":       "dora@corp.example",
				"AUTHD_UPSTREAMS": fmt.Sprintf(`[{"id":"sso","type":"oidc","client_id":%q,"client_secret":%q,"oidc":{"issuer":%q,"backchannel_logout":%q}}]`,
					idp.ClientID, idp.ClientSecret, idp.Issuer(), mode),
			}, idp.Client())
			reg := registerClient(t, inst.URL, map[string]any{
				"client_name": "MCP client", "redirect_uris": []string{"http://127.0.0.1/cb"},
				"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
			})
			conf := &oauth2.Config{
				ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:47002/cb",
				Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
			}
			b := newBrowser(t, idp.Client().Transport, "http://127.0.0.1:47002/cb")
			authorize := func() url.Values {
				v := oauth2.GenerateVerifier()
				q := b.authorize(t, inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("resource", mcpResource)))
				q.Set("verifier", v)
				return q
			}
			q := authorize()
			tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(q.Get("verifier")))
			if err != nil || tok.RefreshToken == "" {
				t.Fatalf("exchange: %v (refresh token %q)", err, tok.RefreshToken)
			}
			// authd's session signs the user in without the provider.
			authorize()
			if n := len(idp.AuthorizeRequests()); n != 1 {
				t.Fatalf("before the logout, %d sign-ins at the provider; want 1 (authd's session)", n)
			}

			logout := idp.SignLogoutToken(t, upstreamtest.LogoutToken{Subject: "sub-dora", SID: "op-session-1"})
			endpoint := inst.URL + "/upstream/sso/backchannel-logout"
			if retried {
				// The database fails while the grant is being revoked.
				fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", "NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL")
				resp, body := postLogoutToken(t, endpoint, logout)
				if resp.StatusCode != http.StatusServiceUnavailable || !fired() {
					t.Fatalf("logout with the database failing: %d %s (failure injected: %v), want 503", resp.StatusCode, body, fired())
				}
			}
			resp, body := postLogoutToken(t, endpoint, logout)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("logout: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
			}
			if !strings.Contains(inst.Logs.String(), "upstream_logout") {
				t.Error("no audit record of the logout")
			}

			// The session is gone: the next authorization signs in upstream.
			authorize()
			if n := len(idp.AuthorizeRequests()); n != 2 {
				t.Fatalf("after the logout, %d sign-ins at the provider; want 2 (the session ended)", n)
			}
			_, err = conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			switch {
			case mode == "grants" && (err == nil || !strings.Contains(err.Error(), "invalid_grant")):
				t.Fatalf("refresh after a logout that revokes grants: %v, want invalid_grant", err)
			case mode == "sessions" && err != nil:
				t.Fatalf("refresh after a logout of sessions only: %v", err)
			}

			// A replay is refused and does nothing.
			resp, body = postLogoutToken(t, endpoint, logout)
			var e struct{ Error, ErrorDescription string }
			_ = json.Unmarshal(body, &e)
			if resp.StatusCode != http.StatusBadRequest || e.Error != "invalid_request" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("replayed logout token: %d %s", resp.StatusCode, body)
			}
			authorize()
			if n := len(idp.AuthorizeRequests()); n != 2 {
				t.Fatalf("a replayed logout token ended the new session (%d sign-ins upstream)", n)
			}
		})
	}
}

func postLogoutToken(t *testing.T, endpoint, token string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.PostForm(endpoint, url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}
