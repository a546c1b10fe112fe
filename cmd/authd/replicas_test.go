package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
)

// router is a test load balancer: it sends each path to the replica the
// test chose, so every step of one flow can land on a different replica.
type router struct {
	mu       sync.Mutex
	backends map[string]*httputil.ReverseProxy
	routes   map[string]string // path prefix → backend name
	hits     map[string][]string
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.mu.Lock()
	name := ""
	best := -1
	for prefix, b := range rt.routes {
		if strings.HasPrefix(r.URL.Path, prefix) && len(prefix) > best {
			name, best = b, len(prefix)
		}
	}
	rt.hits[name] = append(rt.hits[name], r.URL.Path)
	p := rt.backends[name]
	rt.mu.Unlock()
	p.ServeHTTP(w, r)
}

func (rt *router) route(prefix, backend string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.routes[prefix] = backend
}

func (rt *router) served(backend, path string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, p := range rt.hits[backend] {
		if strings.HasPrefix(p, path) {
			return true
		}
	}
	return false
}

// TestThreeReplicasOneFlow runs one MCP flow with each step on a different
// replica sharing one Postgres — nothing may depend on in-process state —
// and rotates the signing key through the CLI while they run: every
// replica picks the new key up without a restart. An access token revoked
// on one replica is refused by the others at once.
func TestThreeReplicasOneFlow(t *testing.T) {
	t.Parallel()
	threeReplicasOneFlow(t, pgtest.DSN(t), nil)
}

// TestThreeReplicasOneFlowThroughPgBouncer is the same flow with the three
// replicas (and the `keys rotate` command) connected through PgBouncer in
// transaction-pooling mode, sharing two server connections, with
// database_query_exec_mode cache_describe (README, docs/database.md).
func TestThreeReplicasOneFlowThroughPgBouncer(t *testing.T) {
	t.Parallel()
	direct := pgtest.DSN(t)
	bouncer := pgtest.NewPgBouncer(t, direct, 2)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	// The change listener needs a session: it goes to PostgreSQL directly
	// (database_listen_url), as docs/database.md says.
	threeReplicasOneFlow(t, bouncer.DSN(strings.TrimPrefix(u.Path, "/")), map[string]string{
		"AUTHD_DATABASE_QUERY_EXEC_MODE": "cache_describe", "AUTHD_DATABASE_LISTEN_URL": direct})
}

func threeReplicasOneFlow(t *testing.T, dsn string, extraEnv map[string]string) {
	f := newFlowEnv(t, dsn)
	rt := &router{backends: map[string]*httputil.ReverseProxy{}, routes: map[string]string{"/": "A"}, hits: map[string][]string{}}
	lb := httptest.NewServer(rt)
	defer lb.Close()

	environ := map[string]string{
		"AUTHD_DATABASE_URL":          dsn,
		"AUTHD_ISSUER":                lb.URL,
		"AUTHD_KEYS_PREPUBLISH":       "2s",
		"AUTHD_KEYS_REFRESH_INTERVAL": "200ms",
	}
	for k, v := range extraEnv {
		environ[k] = v
	}
	replicas := map[string]*instance{}
	for _, name := range []string{"A", "B", "C"} {
		addr := freeAddr(t)
		replicas[name] = startAuthdWith(t, addr, environ, f.github.Client(), "--config", f.cfg)
		target, _ := url.Parse("http://" + addr)
		rt.mu.Lock()
		rt.backends[name] = httputil.NewSingleHostReverseProxy(target)
		rt.mu.Unlock()
	}
	ctx := context.Background()

	// Register on A.
	rt.route("/register", "A")
	reg := registerClient(t, lb.URL, map[string]any{
		"client_name":                "replicated client",
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	conf := &oauth2.Config{
		ClientID: reg["client_id"].(string), RedirectURL: "http://127.0.0.1:45124/callback", Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: lb.URL + "/authorize", TokenURL: lb.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}

	// Authorize on B, upstream callback on C, consent on A.
	rt.route("/authorize", "B")
	rt.route("/callback/", "C")
	rt.route("/consent", "A")
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, f.github.Client().Transport, "http://127.0.0.1:45124/callback")
	q := b.authorize(t, lb.URL, conf.AuthCodeURL("replicated", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))

	// Token on A.
	rt.route("/token", "A")
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	rt.route("/.well-known/jwks.json", "C")
	claims := verifyWithJWKS(t, lb.URL, tok.AccessToken)
	firstKid := kidOf(t, tok.AccessToken)

	// Rotate the signing key through the CLI (another process in real
	// life), then wait out the prepublish period.
	var out, logs bytes.Buffer
	if err := run(ctx, []string{"keys", "rotate", "--config", f.cfg}, envOf(environ), &out, &logs); err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, logs.String())
	}
	time.Sleep(2500 * time.Millisecond)

	// Refresh on B: signed with the new key, which C's JWKS publishes.
	rt.route("/token", "B")
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil {
		t.Fatal(err)
	}
	newKid := kidOf(t, refreshed.AccessToken)
	if newKid == firstKid {
		t.Fatalf("replica B still signs with the old key %s after rotation", firstKid)
	}
	verifyWithJWKS(t, lb.URL, refreshed.AccessToken)
	// The old token still verifies: the retired key stays published.
	verifyWithJWKS(t, lb.URL, tok.AccessToken)
	// A and C sign with the new key too.
	for _, name := range []string{"A", "C"} {
		rt.route("/token", name)
		cur := *refreshed
		cur.Expiry = time.Now().Add(-time.Minute)
		next, err := conf.TokenSource(ctx, &cur).Token()
		if err != nil {
			t.Fatalf("refresh on %s: %v", name, err)
		}
		if k := kidOf(t, next.AccessToken); k != newKid {
			t.Fatalf("replica %s signs with %s, want %s", name, k, newKid)
		}
		refreshed = next
	}

	// The refreshed token is active on C and lets a request through on B
	// and C (which also warms whatever they remember of it); revoked on
	// A, every replica turns it away at once: revocation lives in the
	// shared database, not in one replica's memory.
	rt.route("/introspect", "C")
	if !introspectActive(t, lb.URL, refreshed.AccessToken) {
		t.Fatal("introspection on C: the refreshed access token is not active")
	}
	for _, name := range []string{"B", "C"} {
		rt.route("/verify", name)
		if resp := verify(t, lb.URL, "Bearer "+refreshed.AccessToken); resp.StatusCode != http.StatusOK {
			t.Fatalf("/verify on %s before revocation: %d", name, resp.StatusCode)
		}
	}
	rt.route("/revoke", "A")
	if r, body := postForm(t, http.DefaultClient, lb.URL+"/revoke", url.Values{"token": {refreshed.AccessToken}, "client_id": {conf.ClientID}}, "", ""); r.StatusCode != http.StatusOK {
		t.Fatalf("revoke on A: %d %s", r.StatusCode, body)
	}
	for _, name := range []string{"B", "C"} {
		rt.route("/introspect", name)
		if introspectActive(t, lb.URL, refreshed.AccessToken) {
			t.Errorf("introspection on %s: the access token revoked on A is still active", name)
		}
		rt.route("/verify", name)
		if resp := verify(t, lb.URL, "Bearer "+refreshed.AccessToken); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/verify on %s: the access token revoked on A got %d, want 401", name, resp.StatusCode)
		}
	}

	for _, step := range []struct{ backend, path string }{
		{"A", "/register"}, {"B", "/authorize"}, {"C", "/callback/github"}, {"A", "/consent"}, {"A", "/token"}, {"B", "/token"}, {"C", "/.well-known/jwks.json"},
		{"C", "/introspect"}, {"B", "/introspect"}, {"B", "/verify"}, {"C", "/verify"}, {"A", "/revoke"},
	} {
		if !rt.served(step.backend, step.path) {
			t.Errorf("replica %s never served %s", step.backend, step.path)
		}
	}
	if claims["aud"] != mcpResource {
		t.Fatalf("aud %v", claims["aud"])
	}
}

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}
