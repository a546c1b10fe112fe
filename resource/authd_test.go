package resource_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authd/authd/internal/authdtest"
	"github.com/authd/authd/resource"
)

func TestMain(m *testing.M) { os.Exit(authdtest.Main(m)) }

// The resources of the shared authd: notes is configured for every
// identity claim, other for none.
const (
	notesResource = "https://notes.example.com/mcp"
	otherResource = "https://other.example.com/mcp"
	notesMetadata = "https://notes.example.com/.well-known/oauth-protected-resource/mcp"

	appID           = "notes-app"
	appSecret       = "notes-app-secret-0123456789abcdef"
	appRedirect     = "http://127.0.0.1:47001/callback"
	serverID        = "notes-server"
	serverSecret    = "notes-server-secret-0123456789abcdef"
	machineID       = "notes-machine"
	machineSecret   = "notes-machine-secret-0123456789abcdef"
	readScope       = "notes:read"
	writeScope      = "notes:write"
	keysRefreshTime = "200ms"
)

var authdConfig = `
scopes:
  - {name: notes:read, description: Read your notes}
  - {name: notes:write, description: Change your notes}
resources:
  - uri: ` + notesResource + `
    name: Notes
    claims: [email, name, login, groups, upstream]
  - uri: ` + otherResource + `
    name: Other
clients:
  - id: ` + appID + `
    secret_hash: ` + secretHash(appSecret) + `
    redirect_uris: [` + appRedirect + `]
    grant_types: [authorization_code, refresh_token]
    skip_consent: true
  - id: ` + serverID + `
    secret_hash: ` + secretHash(serverSecret) + `
    grant_types: [client_credentials]
    introspect: true
  - id: ` + machineID + `
    secret_hash: ` + secretHash(machineSecret) + `
    grant_types: [client_credentials]
`

// secretHash is authd's sha256$ form of a client secret: the configured
// clients' secrets are verified fast (a secret given in clear is bcrypt'd,
// slow under the race detector).
func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256$" + hex.EncodeToString(sum[:])
}

// startAuthd runs an authd of the test's own, configured with
// authdConfig.
func startAuthd(t *testing.T, env map[string]string) *authdtest.Server {
	t.Helper()
	return authdtest.Start(t, authdtest.Options{Config: authdConfig, Env: env})
}

// userToken runs the code flow for alice at authd and returns the access
// token for resource with scopes.
func userToken(t *testing.T, s *authdtest.Server, resourceURI string, scopes ...string) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{
		ClientID: appID, ClientSecret: appSecret, RedirectURL: appRedirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: s.URL + "/authorize", TokenURL: s.URL + "/token", AuthStyle: oauth2.AuthStyleInHeader},
	}
	verifier := oauth2.GenerateVerifier()
	q, err := s.Browser(appRedirect).Authorize(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resourceURI)))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resourceURI))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// machineToken gets a client_credentials token for resource.
func machineToken(t *testing.T, s *authdtest.Server, resourceURI string, scopes ...string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: machineID, ClientSecret: machineSecret, TokenURL: s.URL + "/token", Scopes: scopes,
		EndpointParams: url.Values{"resource": {resourceURI}}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// protected serves a handler behind p: "/" needs Config.Scopes, "/write"
// also notes:write. It answers with the identity it saw.
func protected(t *testing.T, p *resource.Protector) *httptest.Server {
	t.Helper()
	show := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resource.IdentityFrom(r.Context())
		if !ok {
			t.Error("no identity in the request context")
		}
		json.NewEncoder(w).Encode(id)
	})
	mux := http.NewServeMux()
	mux.Handle("/", show)
	mux.Handle("/write", p.RequireScopes(writeScope)(show))
	srv := httptest.NewServer(p.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv
}

// call sends a request with the given Authorization values and returns the
// status, the challenge and the identity the handler saw.
func call(t *testing.T, url string, authorization ...string) (int, string, *resource.Identity) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	for _, a := range authorization {
		req.Header.Add("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var id *resource.Identity
	if resp.StatusCode == http.StatusOK {
		id = new(resource.Identity)
		if err := json.Unmarshal(body, id); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	} else if resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(string(body), `"error_description"`) ||
		strings.Contains(resp.Header.Get("WWW-Authenticate"), "error=") != strings.Contains(string(body), `"error"`) {
		t.Errorf("error answer %d without no-store or JSON error: %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), id
}

// TestMiddlewareAgainstAuthd: every answer of Middleware and
// RequireScopes, with the exact challenge, for tokens authd issued.
func TestMiddlewareAgainstAuthd(t *testing.T) {
	t.Parallel()
	s := startAuthd(t, nil)

	readOnly := userToken(t, s, notesResource, readScope)
	both := userToken(t, s, notesResource, readScope, writeScope)
	otherAud := userToken(t, s, otherResource, readScope)
	writeOnly := machineToken(t, s, notesResource, writeScope)

	for _, mode := range []string{"jwt", "introspection", "jwt and introspection"} {
		config := func(issuer string, now func() time.Time) resource.Config {
			c := resource.Config{Issuer: issuer, Resource: notesResource, Scopes: []string{readScope}, Now: now}
			if mode != "jwt" {
				c.Introspection = &resource.Introspection{ClientID: serverID, ClientSecret: serverSecret, VerifyJWTs: mode != "introspection"}
			}
			return c
		}
		p, err := resource.New(config(s.URL, nil))
		if err != nil {
			t.Fatal(err)
		}
		srv := protected(t, p)
		middlewareAnswers(t, mode, srv.URL, s.URL, config, readOnly, both.AccessToken, otherAud.AccessToken, writeOnly)
	}
}

// middlewareAnswers runs TestMiddlewareAgainstAuthd's cases against srv.
func middlewareAnswers(t *testing.T, mode, srv, issuer string, config func(string, func() time.Time) resource.Config,
	readOnly *oauth2.Token, both, otherAud, writeOnly string) {
	t.Helper()
	noToken := `Bearer scope="notes:read", resource_metadata="` + notesMetadata + `"`
	invalid := `Bearer error="invalid_token", scope="notes:read", resource_metadata="` + notesMetadata + `"`
	lacksRead := `Bearer error="insufficient_scope", scope="notes:read", resource_metadata="` + notesMetadata + `"`
	lacksWrite := `Bearer error="insufficient_scope", scope="notes:read notes:write", resource_metadata="` + notesMetadata + `"`
	parts := strings.Split(readOnly.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", readOnly.AccessToken)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "."
	hsAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"x"}`)) + "." + parts[1] + "." + parts[2]

	for _, c := range []struct {
		name          string
		path          string
		authorization []string
		status        int
		challenge     string
	}{
		{"no token", "/", nil, 401, noToken},
		{"another scheme", "/", []string{"Basic YTpi"}, 401, noToken},
		{"two Authorization headers", "/", []string{"Bearer " + readOnly.AccessToken, "Bearer " + readOnly.AccessToken}, 401, invalid},
		{"not a token68", "/", []string{"Bearer a b"}, 401, invalid},
		{"garbage", "/", []string{"Bearer garbage"}, 401, invalid},
		{"forged signature", "/", []string{"Bearer " + forged}, 401, invalid},
		{"alg none", "/", []string{"Bearer " + noneAlg}, 401, invalid},
		{"alg HS256", "/", []string{"Bearer " + hsAlg}, 401, invalid},
		{"token for another resource", "/", []string{"Bearer " + otherAud}, 401, invalid},
		{"refresh token", "/", []string{"Bearer " + readOnly.RefreshToken}, 401, invalid},
		{"lacks the base scope", "/", []string{"Bearer " + writeOnly}, 403, lacksRead},
		{"lacks the handler's scope", "/write", []string{"Bearer " + readOnly.AccessToken}, 403, lacksWrite},
		{"read", "/", []string{"Bearer " + readOnly.AccessToken}, 200, ""},
		{"write", "/write", []string{"Bearer " + both}, 200, ""},
	} {
		status, challenge, _ := call(t, srv+c.path, c.authorization...)
		if status != c.status || challenge != c.challenge {
			t.Errorf("%s, %s: %d %s\nwant %d %s", mode, c.name, status, challenge, c.status, c.challenge)
		}
	}

	// An expired token: the same token, judged by a clock past its exp
	// and the leeway.
	late, _ := resource.New(config(issuer, func() time.Time { return readOnly.Expiry.Add(resource.DefaultLeeway + time.Minute) }))
	if status, challenge, _ := call(t, protected(t, late).URL, "Bearer "+readOnly.AccessToken); status != 401 || challenge != invalid {
		t.Errorf("%s, expired: %d %s", mode, status, challenge)
	}
	// Another issuer configured: authd's tokens are not its tokens (the
	// metadata at the other issuer's URL would not name it, here it
	// cannot be fetched at all: 503, not 401, and no challenge).
	down, _ := resource.New(config("http://127.0.0.1:1", nil))
	req, _ := http.NewRequest(http.MethodGet, protected(t, down).URL, nil)
	req.Header.Set("Authorization", "Bearer "+readOnly.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("%s, authorization server down: %d %q", mode, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// TestIdentityClaimsPerResource: a token for a resource configured for
// identity claims carries them, through JWT verification and through
// introspection alike; one for a resource configured for none carries
// none of them.
func TestIdentityClaimsPerResource(t *testing.T) {
	t.Parallel()
	s := startAuthd(t, nil)
	want := resource.Identity{
		ClientID: appID, Scopes: []string{readScope}, Audience: []string{notesResource},
		Email: authdtest.AliceEmail, Name: authdtest.AliceName, Login: authdtest.AliceLogin,
		Groups:   []string{"acme", "acme/writers"},
		Upstream: resource.Upstream{Provider: "github", ID: authdtest.AliceID, Login: authdtest.AliceLogin},
	}
	for _, mode := range []string{"jwt", "introspection"} {
		cfg := func(res string) resource.Config {
			c := resource.Config{Issuer: s.URL, Resource: res, Scopes: []string{readScope}}
			if mode == "introspection" {
				c.Introspection = &resource.Introspection{ClientID: serverID, ClientSecret: serverSecret}
			}
			return c
		}
		p, err := resource.New(cfg(notesResource))
		if err != nil {
			t.Fatal(err)
		}
		tok := userToken(t, s, notesResource, readScope)
		status, _, id := call(t, protected(t, p).URL, "Bearer "+tok.AccessToken)
		if status != 200 {
			t.Fatalf("%s: %d", mode, status)
		}
		if id.Subject == "" || id.ExpiresAt.IsZero() || (mode == "jwt" && id.TokenID == "") {
			t.Errorf("%s: identity lacks sub, exp or jti: %+v", mode, id)
		}
		got := *id
		got.Subject, got.ExpiresAt, got.TokenID = "", time.Time{}, ""
		slices.Sort(got.Groups)
		if !equalIdentity(got, want) {
			t.Errorf("%s: identity\n%+v\nwant\n%+v", mode, got, want)
		}

		other, _ := resource.New(cfg(otherResource))
		tok = userToken(t, s, otherResource, readScope)
		if status, _, id = call(t, protected(t, other).URL, "Bearer "+tok.AccessToken); status != 200 {
			t.Fatalf("%s, other resource: %d", mode, status)
		}
		if id.Email != "" || id.Name != "" || id.Login != "" || len(id.Groups) != 0 || id.Upstream != (resource.Upstream{}) {
			t.Errorf("%s: a resource configured for no identity claims got %+v", mode, id)
		}
	}
}

func equalIdentity(a, b resource.Identity) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestIntrospectionSeesRevocationAtOnce: with introspection on every call,
// a revoked token is refused on the very next request; with a cache, it is
// still accepted until the cache entry ends.
func TestIntrospectionSeesRevocationAtOnce(t *testing.T) {
	t.Parallel()
	s := startAuthd(t, nil)
	now := time.Now()
	clock := func() time.Time { return now }
	every, _ := resource.New(resource.Config{Issuer: s.URL, Resource: notesResource, Scopes: []string{readScope},
		Introspection: &resource.Introspection{ClientID: serverID, ClientSecret: serverSecret}})
	cached, _ := resource.New(resource.Config{Issuer: s.URL, Resource: notesResource, Scopes: []string{readScope}, Now: clock,
		Introspection: &resource.Introspection{ClientID: serverID, ClientSecret: serverSecret, CacheTTL: time.Minute}})
	verifyFirst, _ := resource.New(resource.Config{Issuer: s.URL, Resource: notesResource, Scopes: []string{readScope},
		Introspection: &resource.Introspection{ClientID: serverID, ClientSecret: serverSecret, VerifyJWTs: true}})
	everySrv, cachedSrv, verifyFirstSrv := protected(t, every), protected(t, cached), protected(t, verifyFirst)

	tok := userToken(t, s, notesResource, readScope)
	for _, u := range []string{everySrv.URL, cachedSrv.URL, verifyFirstSrv.URL} {
		if status, _, _ := call(t, u, "Bearer "+tok.AccessToken); status != 200 {
			t.Fatalf("before revocation: %d", status)
		}
	}
	// A refresh token is active at introspection, but no access token.
	if status, _, _ := call(t, everySrv.URL, "Bearer "+tok.RefreshToken); status != 401 {
		t.Errorf("refresh token through introspection: %d", status)
	}

	form := url.Values{"token": {tok.AccessToken}}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(appID, appSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}

	for _, u := range []string{everySrv.URL, verifyFirstSrv.URL} {
		if status, challenge, _ := call(t, u, "Bearer "+tok.AccessToken); status != 401 ||
			challenge != `Bearer error="invalid_token", scope="notes:read", resource_metadata="`+notesMetadata+`"` {
			t.Errorf("introspecting every call, after revocation: %d %s", status, challenge)
		}
	}
	if status, _, _ := call(t, cachedSrv.URL, "Bearer "+tok.AccessToken); status != 200 {
		t.Errorf("cached introspection, within the cache lifetime: %d, want the cached 200", status)
	}
	now = now.Add(time.Minute)
	if status, _, _ := call(t, cachedSrv.URL, "Bearer "+tok.AccessToken); status != 401 {
		t.Errorf("cached introspection, after the cache lifetime: %d", status)
	}
}

// TestJWKSRotationWithoutRestart: after `authd keys rotate`, once authd
// signs with the new key, its tokens are accepted by a running Protector
// as soon as its rate limit on refetching allows, and tokens signed by the
// old key still are while authd publishes it.
func TestJWKSRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	s := startAuthd(t, map[string]string{"AUTHD_KEYS_REFRESH_INTERVAL": keysRefreshTime, "AUTHD_KEYS_PREPUBLISH": "1s"})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p, _ := resource.New(resource.Config{Issuer: s.URL, Resource: notesResource, Scopes: []string{readScope}, Now: clock})
	srv := protected(t, p)

	before := machineToken(t, s, notesResource, readScope)
	if status, _, _ := call(t, srv.URL, "Bearer "+before); status != 200 {
		t.Fatalf("before rotation: %d", status)
	}
	s.Command(t, "keys", "rotate")
	var after string
	deadline := time.Now().Add(20 * time.Second)
	for after == "" || kid(t, after) == kid(t, before) {
		if time.Now().After(deadline) {
			t.Fatal("authd did not sign with the new key within 20s")
		}
		time.Sleep(50 * time.Millisecond)
		after = machineToken(t, s, notesResource, readScope)
	}

	// Within MinRefetchInterval of the last fetch the unknown key id does
	// not make the Protector fetch again: refused.
	if status, _, _ := call(t, srv.URL, "Bearer "+after); status != 401 {
		t.Errorf("new key within the refetch interval: %d, want 401", status)
	}
	mu.Lock()
	now = now.Add(resource.DefaultMinRefetchInterval)
	mu.Unlock()
	if status, _, _ := call(t, srv.URL, "Bearer "+after); status != 200 {
		t.Errorf("new key after the refetch interval: %d, want 200", status)
	}
	if status, _, _ := call(t, srv.URL, "Bearer "+before); status != 200 {
		t.Errorf("old key, still published: %d, want 200", status)
	}
}

func kid(t *testing.T, jwt string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	json.Unmarshal(h, &hdr)
	return hdr.Kid
}

// TestMetadataHandler: the RFC 9728 document at the path-inserted URL,
// which is where the challenges point.
func TestMetadataHandler(t *testing.T) {
	t.Parallel()
	p, err := resource.New(resource.Config{Issuer: "https://auth.example.com", Resource: notesResource,
		Scopes: []string{readScope}, ScopesSupported: []string{readScope, writeScope}, ResourceName: "Notes"})
	if err != nil {
		t.Fatal(err)
	}
	if p.MetadataPath() != "/.well-known/oauth-protected-resource/mcp" || p.ResourceMetadataURL() != notesMetadata {
		t.Fatalf("metadata at %s (%s)", p.MetadataPath(), p.ResourceMetadataURL())
	}
	mux := http.NewServeMux()
	mux.Handle(p.MetadataPath(), p.MetadataHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + p.MetadataPath())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `{"resource":"https://notes.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["notes:read","notes:write"],"bearer_methods_supported":["header"],"resource_name":"Notes"}`
	if resp.StatusCode != 200 || string(body) != want || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("metadata: %d %s", resp.StatusCode, body)
	}
}
