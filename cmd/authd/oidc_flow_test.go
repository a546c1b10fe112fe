package main

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// TestOIDCAndGoogleUpstreamsThroughTheBinary: an OpenID Connect upstream
// and a Google one (both the fake OpenID Provider, reached by its
// configurable issuer, as for a self-hosted IdP), configured from the
// environment only (AUTHD_UPSTREAMS as JSON), sign a user in through the
// full code flow with PKCE. The user is stored under the upstream's id and
// its immutable sub; the allowlist is applied (verified email, or the
// Google Workspace domain); the token verifies against the JWKS.
func TestOIDCAndGoogleUpstreamsThroughTheBinary(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"oidc", "google"} {
		t.Run(typ, func(t *testing.T) {
			idp := upstreamtest.NewOIDC(t)
			idp.AddUser(upstreamtest.OIDCUser{
				Subject: "sub-" + typ + "-42", Email: "carol@corp.example", EmailVerified: true,
				Name: "Carol", PreferredUsername: "carol", HostedDomain: "corp.example",
			})
			allow := map[string]string{"AUTHD_ALLOWLIST_EMAILS": "carol@corp.example"}
			extra := ""
			if typ == "google" {
				allow = map[string]string{"AUTHD_ALLOWLIST_GOOGLE_DOMAINS": "corp.example"}
				extra = `,"hosted_domain":"corp.example"`
			}
			dsn, st := postgresStore(t)
			env := map[string]string{
				"AUTHD_DATABASE_URL":           dsn,
				"AUTHD_KEYS_ENCRYPTION_SECRET": "test-encryption-secret-0123456789abcdef",
				"AUTHD_RESOURCES":              fmt.Sprintf(`[{"uri":%q,"name":"MCP"}]`, mcpResource),
				"AUTHD_UPSTREAMS": fmt.Sprintf(`[{"id":"sso","type":%q,"client_id":%q,"client_secret":%q,"oidc":{"issuer":%q%s}}]`,
					typ, idp.ClientID, idp.ClientSecret, idp.Issuer(), extra),
			}
			for k, v := range allow {
				env[k] = v
			}
			inst := startAuthdWith(t, freeAddr(t), env, idp.Client())

			reg := registerClient(t, inst.URL, map[string]any{
				"client_name": "MCP client", "redirect_uris": []string{"http://127.0.0.1/cb"},
				"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
			})
			conf := &oauth2.Config{
				ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:47001/cb",
				Endpoint: oauth2.Endpoint{AuthURL: inst.URL + "/authorize", TokenURL: inst.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
			}
			verifier := oauth2.GenerateVerifier()
			b := newBrowser(t, idp.Client().Transport, "http://127.0.0.1:47001/cb")
			q := b.authorize(t, inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
			tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			claims := verifyWithJWKS(t, inst.URL, tok.AccessToken)
			if claims["aud"] != mcpResource {
				t.Fatalf("claims %v", claims)
			}
			// The upstream saw PKCE and the client's own redirect to authd.
			reqs := idp.AuthorizeRequests()
			if len(reqs) == 0 || reqs[0].Get("code_challenge_method") != "S256" || reqs[0].Get("redirect_uri") != inst.URL+"/callback/sso" {
				t.Fatalf("upstream authorization requests %v", reqs)
			}
			u, err := st.FindUser(context.Background(), "sso", "sub-"+typ+"-42")
			if err != nil || u.Email != "carol@corp.example" || !u.EmailVerified || u.ID != claims["sub"] {
				t.Fatalf("stored user %+v %v (token sub %v)", u, err, claims["sub"])
			}
		})
	}
}
