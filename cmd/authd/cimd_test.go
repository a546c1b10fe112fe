package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// Issue 8's end-to-end tests: client ID metadata documents served by a
// local https server whose test certificate authd is told to trust, authd
// wired by buildApp on real Postgres with an injected clock, and real
// golang.org/x/oauth2 clients.

// cimdDocs is the https server publishing client metadata documents. It
// counts requests per path.
type cimdDocs struct {
	*httptest.Server
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	hits     map[string]int
	release  chan struct{}
}

func newCIMDDocs(t *testing.T) *cimdDocs {
	t.Helper()
	d := &cimdDocs{handlers: map[string]http.HandlerFunc{}, hits: map[string]int{}, release: make(chan struct{})}
	d.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		h := d.handlers[r.URL.Path]
		d.hits[r.URL.Path]++
		d.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(func() { close(d.release); d.Close() })
	return d
}

func (d *cimdDocs) roots() *x509.CertPool {
	return d.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

func (d *cimdDocs) handle(path string, h http.HandlerFunc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handlers[path] = h
}

// serve publishes doc at path as JSON with the given Cache-Control.
func (d *cimdDocs) serve(t *testing.T, path string, doc map[string]any, cacheControl string) {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		_, _ = w.Write(b)
	})
}

func (d *cimdDocs) hitsOf(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hits[path]
}

// id is the client_id URL of a document at path.
func (d *cimdDocs) id(path string) string { return d.URL + path }

func cimdDocument(id string, redirectURIs ...string) map[string]any {
	return map[string]any{
		"client_id":                  id,
		"client_name":                "Example CIMD client",
		"redirect_uris":              redirectURIs,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
}

// testClock is the apps' clock: real time plus an offset the test moves.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// cimdApp is one authd replica built by buildApp and served by httptest.
type cimdApp struct {
	URL    string // the issuer
	Direct string // this replica's own address
	store  store.Store
	logs   *syncBuffer
}

// startCIMDApp loads the flow configuration (with environ on top, as an
// operator would set it) and serves a replica on the database dsn.
func startCIMDApp(t *testing.T, f *flowEnv, dsn string, docs *cimdDocs, clock *testClock, environ map[string]string) *cimdApp {
	t.Helper()
	ctx := context.Background()
	ts := httptest.NewUnstartedServer(nil)
	direct := "http://" + ts.Listener.Addr().String()
	vars := map[string]string{"AUTHD_DATABASE_URL": dsn, "AUTHD_ISSUER": direct}
	for k, v := range environ {
		vars[k] = v
	}
	cfg, err := loadConfig(flagsFor(t, "--config", f.cfg), envOf(vars))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := buildApp(ctx, deps{
		cfg: cfg, store: st, log: log, now: clock.Now, started: time.Now(),
		upstreamClient: f.github.Client(), cimdRoots: docs.roots(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = a.handler
	ts.Start()
	t.Cleanup(ts.Close)
	return &cimdApp{URL: cfg.Issuer, Direct: direct, store: st, logs: logs}
}

// loopbackOK lets the replica fetch from the local document server.
var loopbackOK = map[string]string{"AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOW_LOOPBACK": "true"}

// get fetches u with the browser, following redirects through the
// upstream login, and returns the final response and its body.
func (b *browser) get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// approve submits the consent form in page and returns the response.
func (b *browser) approve(t *testing.T, base, page string) (*http.Response, string) {
	t.Helper()
	form := url.Values{"decision": {"approve"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	resp, err := b.c.PostForm(base+"/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// codeFrom checks that resp redirects to the client and returns its query.
func codeFrom(t *testing.T, resp *http.Response, body, redirectPrefix string) url.Values {
	t.Helper()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, redirectPrefix) {
		t.Fatalf("no redirect to the client: %d %q\n%s", resp.StatusCode, loc, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// assertRefusedPage checks an /authorize answer for an unusable client:
// an HTML error page naming the problem, and no redirect anywhere.
func assertRefusedPage(t *testing.T, resp *http.Response, body, want string) {
	t.Helper()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, Location %q, Content-Type %q; want a 400 HTML page without redirect\n%s",
			resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Content-Type"), body)
	}
	if !strings.Contains(body, want) || !strings.Contains(body, "you were not redirected") && !strings.Contains(body, "You were not redirected") {
		t.Fatalf("page does not say %q:\n%s", want, body)
	}
}

// assertNothingStored checks that a refused client left no record and no
// cached document.
func assertNothingStored(t *testing.T, st store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.GetClient(ctx, id, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: a client record was stored (%v)", id, err)
	}
	if _, err := st.GetMetadataDocument(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: the document was cached (%v)", id, err)
	}
}

func cimdOAuthConfig(base, clientID, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: clientID, RedirectURL: redirect, Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams},
	}
}

func authURLFor(conf *oauth2.Config, verifier string) string {
	return conf.AuthCodeURL("st-"+verifier[:8], oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
}

// TestCIMDCodeFlowWithPKCE: a client whose client_id is the URL of its
// metadata document runs the whole code flow with PKCE (x/oauth2), from a
// loopback redirect URI with a port while the document lists it without
// one; the consent page shows who vouches for it; the document is cached
// (one fetch for the whole flow and a refresh), then refetched after
// max-age; the client is listed with its source.
func TestCIMDCodeFlowWithPKCE(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	docs := newCIMDDocs(t)
	clock := &testClock{}
	app := startCIMDApp(t, f, dsn, docs, clock, loopbackOK)
	ctx := context.Background()

	var meta map[string]any
	getJSON(t, app.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &meta)
	if meta["client_id_metadata_document_supported"] != true {
		t.Fatalf("discovery does not advertise CIMD: %v", meta)
	}
	methods, _ := meta["token_endpoint_auth_methods_supported"].([]any)
	if !slices.Contains(methods, any("none")) {
		t.Fatalf("token_endpoint_auth_methods_supported lacks none: %v", methods)
	}

	id := docs.id("/oauth/client.json")
	docs.serve(t, "/oauth/client.json", cimdDocument(id, "http://127.0.0.1/callback"), "public, max-age=600")
	const redirect = "http://127.0.0.1:45131/callback"
	conf := cimdOAuthConfig(app.URL, id, redirect)
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, f.github.Client().Transport, redirect)

	resp, page := b.get(t, authURLFor(conf, verifier))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `action="/consent"`) {
		t.Fatalf("expected the consent page: %d\n%s", resp.StatusCode, page)
	}
	docHost := strings.TrimPrefix(docs.URL, "https://")
	for _, want := range []string{"Example CIMD client", "Verified domain", "<strong>" + docHost + "</strong>", "127.0.0.1:45131"} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(page, "Unverified") {
		t.Error("a metadata-document client is shown as unverified")
	}
	resp, body := b.approve(t, app.URL, page)
	q := codeFrom(t, resp, body, redirect)
	if q.Get("iss") != app.URL || q.Get("code") == "" || q.Get("state") != "st-"+verifier[:8] {
		t.Fatalf("authorization response %v", q)
	}

	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource))
	if err != nil {
		t.Fatal(err)
	}
	claims := verifyWithJWKS(t, app.URL, tok.AccessToken)
	if claims["client_id"] != id || claims["aud"] != mcpResource {
		t.Fatalf("claims %v", claims)
	}
	// PKCE is enforced for this client like any other: a wrong verifier fails.
	verifier2 := oauth2.GenerateVerifier()
	resp, page = b.get(t, authURLFor(conf, verifier2)) // consent remembered: straight back
	q = codeFrom(t, resp, page, redirect)
	if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("wrong verifier: %v", err)
	}

	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil || refreshed.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v", err)
	}
	if n := docs.hitsOf("/oauth/client.json"); n != 1 {
		t.Fatalf("document fetched %d times during the flow, want 1 (max-age 600)", n)
	}

	// Stored: a stable record with its source, shown by `authd clients list`.
	cli := &clientsCLI{t: t, st: app.store, now: clock.Now()}
	out, _ := cli.mustRun("list")
	if !strings.Contains(out, id) || !strings.Contains(out, string(store.SourceMetadata)) {
		t.Fatalf("clients list:\n%s", out)
	}
	if out, _ := cli.mustRun("list", "--source", "metadata_document"); !strings.Contains(out, id) {
		t.Fatalf("clients list --source metadata_document:\n%s", out)
	}

	// The operator cannot edit it (its owner does, in the document); the
	// CLI says how to block it instead.
	cli.mustFail("client_metadata_documents.blocked_clients", "update", id, "--name", "renamed")

	// After max-age the document is fetched again, once.
	clock.Advance(11 * time.Minute)
	verifier3 := oauth2.GenerateVerifier()
	resp, page = b.get(t, authURLFor(conf, verifier3))
	codeFrom(t, resp, page, redirect)
	if n := docs.hitsOf("/oauth/client.json"); n != 2 {
		t.Fatalf("document fetched %d times after max-age, want 2", n)
	}

	// Deleting the record revokes what it held; the CLI warns that the
	// client comes back on next use unless blocked.
	out, _ = cli.mustRun("delete", id)
	if !strings.Contains(out, "comes back the next time it is used") || !strings.Contains(out, "denied_hosts") {
		t.Fatalf("clients delete:\n%s", out)
	}
	old := *refreshed
	old.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(ctx, &old).Token(); err == nil {
		t.Fatal("a refresh token outlived its deleted client")
	}
}

// TestCIMDRefusals: every way a document or its fetch can be unusable
// ends at /authorize in an HTML error page naming the problem, without
// redirecting (the redirect URI cannot be trusted), and stores nothing;
// /token answers invalid_client. With the loopback switch off, loopback
// and private addresses are refused before any connection.
func TestCIMDRefusals(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	docs := newCIMDDocs(t)
	clock := &testClock{}
	environ := map[string]string{
		"AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOW_LOOPBACK": "true",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_FETCH_TIMEOUT":  "2s",
		// Documents obey the registration redirect URI policy too.
		"AUTHD_REGISTRATION_ALLOWED_REDIRECT_URIS": "loopback,https://app.example.com/*",
	}
	app := startCIMDApp(t, f, dsn, docs, clock, environ)
	const redirect = "http://127.0.0.1:45132/callback"

	mismatch := cimdDocument(docs.id("/someone-else.json"), "http://127.0.0.1/callback")
	docs.serve(t, "/mismatch.json", mismatch, "")
	noName := cimdDocument(docs.id("/noname.json"), "http://127.0.0.1/callback")
	delete(noName, "client_name")
	docs.serve(t, "/noname.json", noName, "")
	docs.serve(t, "/noredirects.json", cimdDocument(docs.id("/noredirects.json")), "")
	secretAuth := cimdDocument(docs.id("/secret.json"), "http://127.0.0.1/callback")
	secretAuth["token_endpoint_auth_method"] = "client_secret_basic"
	docs.serve(t, "/secret.json", secretAuth, "")
	big := cimdDocument(docs.id("/big.json"), "http://127.0.0.1/callback")
	big["client_uri"] = "https://example.com/" + strings.Repeat("a", 6000)
	docs.serve(t, "/big.json", big, "")
	docs.handle("/slow.json", func(w http.ResponseWriter, r *http.Request) {
		select { // never answers before authd gives up
		case <-r.Context().Done():
		case <-docs.release:
		}
	})
	docs.handle("/moved.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/valid.json", http.StatusFound)
	})
	docs.serve(t, "/valid.json", cimdDocument(docs.id("/valid.json"), "http://127.0.0.1/callback"), "")
	docs.serve(t, "/offlist.json", cimdDocument(docs.id("/offlist.json"), "http://127.0.0.1/callback", "https://evil.example.com/callback"), "")
	docs.handle("/html.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<p>hi</p>"))
	})

	b := newBrowser(t, f.github.Client().Transport, redirect)
	for _, tc := range []struct {
		path, want string
	}{
		{"/mismatch.json", "client_id is not the URL it was fetched from"},
		{"/noname.json", "has no client_name"},
		{"/noredirects.json", "has no redirect_uris"},
		{"/secret.json", "needs a shared secret"},
		{"/missing.json", "HTTP 404"},
		{"/big.json", "larger than 5120 bytes"},
		{"/slow.json", "timed out"},
		{"/moved.json", "redirects are not followed"},
		{"/html.json", "not served as JSON"},
		{"/offlist.json", "is not allowed by this server"},
	} {
		id := docs.id(tc.path)
		conf := cimdOAuthConfig(app.URL, id, redirect)
		resp, page := b.get(t, authURLFor(conf, oauth2.GenerateVerifier()))
		assertRefusedPage(t, resp, page, tc.want)
		assertNothingStored(t, app.store, id)

		// At /token the same client is unknown: 401 invalid_client.
		resp, body := postForm(t, http.DefaultClient, app.URL+"/token", url.Values{
			"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {id},
			"redirect_uri": {redirect}, "code_verifier": {oauth2.GenerateVerifier()},
		}, "", "")
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusUnauthorized || e.Error != "invalid_client" {
			t.Errorf("%s at /token: %d %s", tc.path, resp.StatusCode, body)
		}
	}
	if n := docs.hitsOf("/valid.json"); n != 0 {
		t.Errorf("the redirect was followed (%d fetches of its target)", n)
	}

	// A valid document that no /authorize has seen: /token does not fetch
	// it (no code or token can exist for it) and answers invalid_client.
	unseen := docs.id("/unseen.json")
	docs.serve(t, "/unseen.json", cimdDocument(unseen, "http://127.0.0.1/callback"), "")
	for _, path := range []string{"/token", "/revoke"} {
		resp, body := postForm(t, http.DefaultClient, app.URL+path, url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "token": {"x"}, "client_id": {unseen},
		}, "", "")
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusUnauthorized || e.Error != "invalid_client" {
			t.Errorf("%s with an unseen client: %d %s", path, resp.StatusCode, body)
		}
	}
	if n := docs.hitsOf("/unseen.json"); n != 0 {
		t.Errorf("/token fetched an unseen client's document %d times", n)
	}

	// A redirect URI the document does not list: error page, no redirect.
	valid := docs.id("/valid.json")
	conf := cimdOAuthConfig(app.URL, valid, "https://evil.example.com/callback")
	resp, page := b.get(t, authURLFor(conf, oauth2.GenerateVerifier()))
	assertRefusedPage(t, resp, page, "has not registered")
	// The same loopback path on another port matches; another path does not.
	conf = cimdOAuthConfig(app.URL, valid, "http://127.0.0.1:45132/other")
	resp, page = b.get(t, authURLFor(conf, oauth2.GenerateVerifier()))
	assertRefusedPage(t, resp, page, "has not registered")

	// A client_id that is an https URL but not a valid identifier URL.
	for id, want := range map[string]string{
		docs.URL + "/":               "must have a path",
		docs.URL + "/a/../b.json":    "must not contain . or .. path segments",
		"https://user@example.com/c": "must not contain user information",
	} {
		conf := cimdOAuthConfig(app.URL, id, redirect)
		resp, page := b.get(t, authURLFor(conf, oauth2.GenerateVerifier()))
		assertRefusedPage(t, resp, page, want)
	}

	// The loopback switch off (the default): a replica on the same
	// database refuses loopback, private and metadata addresses, in every
	// form, without connecting.
	strict := startCIMDApp(t, f, dsn, docs, clock, nil)
	port := docs.Listener.Addr().(*net.TCPAddr).Port
	before := docs.hitsOf("/strict.json")
	docs.serve(t, "/strict.json", cimdDocument("unused", "http://127.0.0.1/callback"), "")
	for _, host := range []string{
		"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost", "10.0.0.1", "10.255.0.7", "169.254.169.254",
		"192.168.0.1", "172.16.0.1", "[fe80::1]", "[fc00::1]", "0.0.0.0",
	} {
		id := "https://" + net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)) + "/strict.json"
		conf := cimdOAuthConfig(strict.URL, id, redirect)
		resp, page := b.get(t, authURLFor(conf, oauth2.GenerateVerifier()))
		assertRefusedPage(t, resp, page, "special-use address")
		assertNothingStored(t, strict.store, id)
	}
	if n := docs.hitsOf("/strict.json"); n != before {
		t.Fatalf("the document server was reached %d times with loopback refused", n-before)
	}
}

// TestCIMDReplicasShareTheDocument: two replicas on one database. The
// document fetched by the first serves the second, which never fetches it,
// across authorization (A), consent (B), token (B) and refresh (A).
func TestCIMDReplicasShareTheDocument(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	docs := newCIMDDocs(t)
	clock := &testClock{}
	rt := &router{backends: map[string]*httputil.ReverseProxy{}, routes: map[string]string{"/": "A"}, hits: map[string][]string{}}
	lb := httptest.NewServer(rt)
	defer lb.Close()
	environ := map[string]string{"AUTHD_ISSUER": lb.URL, "AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOW_LOOPBACK": "true"}
	a := startCIMDApp(t, f, dsn, docs, clock, environ)
	b := startCIMDApp(t, f, dsn, docs, clock, environ)
	for name, app := range map[string]*cimdApp{"A": a, "B": b} {
		target, _ := url.Parse(app.Direct)
		rt.mu.Lock()
		rt.backends[name] = httputil.NewSingleHostReverseProxy(target)
		rt.mu.Unlock()
	}
	ctx := context.Background()
	rt.route("/authorize", "A")
	rt.route("/callback/", "A")
	rt.route("/consent", "B")
	rt.route("/token", "B")

	id := docs.id("/replicated.json")
	docs.serve(t, "/replicated.json", cimdDocument(id, "http://127.0.0.1/callback"), "max-age=3600")
	const redirect = "http://127.0.0.1:45133/callback"
	conf := cimdOAuthConfig(lb.URL, id, redirect)
	verifier := oauth2.GenerateVerifier()
	br := newBrowser(t, f.github.Client().Transport, redirect)
	resp, page := br.get(t, authURLFor(conf, verifier))
	if !strings.Contains(page, `action="/consent"`) {
		t.Fatalf("no consent page: %d\n%s", resp.StatusCode, page)
	}
	if n := docs.hitsOf("/replicated.json"); n != 1 {
		t.Fatalf("%d fetches by A", n)
	}
	resp, body := br.approve(t, lb.URL, page) // on B
	q := codeFrom(t, resp, body, redirect)
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)) // on B
	if err != nil {
		t.Fatal(err)
	}
	rt.route("/token", "A")
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	if _, err := conf.TokenSource(ctx, &expired).Token(); err != nil {
		t.Fatalf("refresh on A: %v", err)
	}
	for _, step := range []struct{ backend, path string }{
		{"A", "/authorize"}, {"A", "/callback/github"}, {"B", "/consent"}, {"B", "/token"}, {"A", "/token"},
	} {
		if !rt.served(step.backend, step.path) {
			t.Errorf("replica %s never served %s", step.backend, step.path)
		}
	}
	if n := docs.hitsOf("/replicated.json"); n != 1 {
		t.Fatalf("document fetched %d times by two replicas, want 1", n)
	}
	doc, err := b.store.GetMetadataDocument(ctx, id)
	if err != nil || !strings.Contains(string(doc.Document), "Example CIMD client") {
		t.Fatalf("stored document %+v %v", doc, err)
	}
	if strings.Contains(b.logs.String(), "client metadata document fetched") {
		t.Error("replica B logged a fetch")
	}
	if !strings.Contains(a.logs.String(), "client metadata document fetched") {
		t.Error("replica A did not log its fetch")
	}
}

// TestCIMDGrantsArePerUser: many users share one metadata-document
// client_id, but each consent and grant is theirs: revoking one user's
// grant leaves the other's working.
func TestCIMDGrantsArePerUser(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	f.github.AddUser(upstreamtest.GitHubUser{
		ID: 1002, Login: "bob", Name: "Bob",
		Emails: []upstreamtest.GitHubEmail{{Email: "bob@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
	})
	docs := newCIMDDocs(t)
	clock := &testClock{}
	app := startCIMDApp(t, f, dsn, docs, clock, loopbackOK)
	ctx := context.Background()
	id := docs.id("/shared.json")
	docs.serve(t, "/shared.json", cimdDocument(id, "http://127.0.0.1/callback"), "max-age=3600")
	const redirect = "http://127.0.0.1:45134/callback"
	conf := cimdOAuthConfig(app.URL, id, redirect)

	tokens := map[string]*oauth2.Token{}
	browsers := map[string]*browser{}
	for _, user := range []string{"alice", "bob"} {
		f.github.SetNextUser(user)
		br := newBrowser(t, f.github.Client().Transport, redirect) // a browser of their own
		browsers[user] = br
		verifier := oauth2.GenerateVerifier()
		resp, page := br.get(t, authURLFor(conf, verifier))
		if !strings.Contains(page, `action="/consent"`) || !strings.Contains(page, user) {
			t.Fatalf("%s: no consent page of their own: %d\n%s", user, resp.StatusCode, page)
		}
		resp, body := br.approve(t, app.URL, page)
		q := codeFrom(t, resp, body, redirect)
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		tokens[user] = tok
	}
	subs := map[string]bool{}
	for user, tok := range tokens {
		c := verifyWithJWKS(t, app.URL, tok.AccessToken)
		if c["client_id"] != id {
			t.Fatalf("%s: client_id %v", user, c["client_id"])
		}
		subs[c["sub"].(string)] = true
	}
	if len(subs) != 2 {
		t.Fatalf("both users got the same subject: %v", subs)
	}

	// Alice revokes her grant (RFC 7009, as the public client).
	resp, body := postForm(t, http.DefaultClient, app.URL+"/revoke",
		url.Values{"token": {tokens["alice"].RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {id}}, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	refresh := func(tok *oauth2.Token) error {
		old := *tok
		old.Expiry = time.Now().Add(-time.Minute)
		_, err := conf.TokenSource(ctx, &old).Token()
		return err
	}
	if err := refresh(tokens["alice"]); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("alice's revoked grant still refreshes: %v", err)
	}
	if err := refresh(tokens["bob"]); err != nil {
		t.Fatalf("bob's grant was affected by alice's revocation: %v", err)
	}

	// The publisher withdraws the document. Bob's connected-apps page
	// still lists the client, by its URL, so he can revoke it.
	docs.handle("/shared.json", http.NotFound)
	clock.Advance(2 * time.Hour)
	resp, page := browsers["bob"].get(t, app.URL+"/apps")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, id) || !strings.Contains(page, "/apps/revoke") {
		t.Fatalf("connected apps with the document gone: %d\n%s", resp.StatusCode, page)
	}
}

// TestCIMDDocumentChangeRecheckedAtCodeIssuance: a redirect URI removed
// from the document while the user is on the consent page stops the code
// from being issued once the cached copy is refreshed.
func TestCIMDDocumentChangeRecheckedAtCodeIssuance(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	docs := newCIMDDocs(t)
	clock := &testClock{}
	app := startCIMDApp(t, f, dsn, docs, clock, loopbackOK)
	id := docs.id("/changing.json")
	docs.serve(t, "/changing.json", cimdDocument(id, "http://127.0.0.1/callback", "https://app.example.com/cb"), "max-age=300")
	const redirect = "http://127.0.0.1:45135/callback"
	conf := cimdOAuthConfig(app.URL, id, redirect)
	br := newBrowser(t, f.github.Client().Transport, redirect)
	resp, page := br.get(t, authURLFor(conf, oauth2.GenerateVerifier()))
	if !strings.Contains(page, `action="/consent"`) {
		t.Fatalf("no consent page: %d\n%s", resp.StatusCode, page)
	}

	// The publisher drops the loopback redirect URI; the cached copy
	// expires (max-age 300) while the user reads the consent page.
	docs.serve(t, "/changing.json", cimdDocument(id, "https://app.example.com/cb"), "max-age=300")
	clock.Advance(6 * time.Minute)
	resp, body := br.approve(t, app.URL, page)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
		!strings.Contains(body, "no longer lists the address") {
		t.Fatalf("code issued for a redirect URI the document no longer lists: %d %q\n%s",
			resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if n := docs.hitsOf("/changing.json"); n != 2 {
		t.Fatalf("document fetched %d times, want 2", n)
	}
	c, err := app.store.GetClient(context.Background(), id, clock.Now())
	if err != nil || !slices.Equal(c.Metadata.RedirectURIs, []string{"https://app.example.com/cb"}) {
		t.Fatalf("stored record not refreshed: %v %v", c.Metadata.RedirectURIs, err)
	}
}

// TestCIMDConfig: the client_metadata_documents keys load from the
// environment, are validated with their names, and loopback fetching is
// off unless --dev or set explicitly.
func TestCIMDConfig(t *testing.T) {
	t.Parallel()
	f := newFlowEnv(t, "postgres://authd@localhost/authd")
	base := map[string]string{"AUTHD_DATABASE_URL": "postgres://authd@localhost/authd", "AUTHD_ISSUER": "https://auth.example.com"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cfg, err := loadConfig(flagsFor(t, "--config", f.cfg), envOf(base))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.ClientMetadataDocuments
	if !c.Enabled || c.AllowLoopback || c.MaxDocumentBytes != 5120 || c.FetchTimeout != 5*time.Second ||
		c.MinCache != 5*time.Minute || c.MaxCache != 24*time.Hour {
		t.Fatalf("defaults %+v", c)
	}

	cfg, err = loadConfig(flagsFor(t, "--config", f.cfg), envOf(with(map[string]string{
		"AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOWED_HOSTS":   "claude.ai,.example.com",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_BLOCKED_CLIENTS": "https://bad.example.com/c",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_MAX_CACHE":       "2h",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOW_LOOPBACK":  "true",
	})))
	if err != nil {
		t.Fatal(err)
	}
	c = cfg.ClientMetadataDocuments
	if !slices.Equal(c.AllowedHosts, []string{"claude.ai", ".example.com"}) || len(c.BlockedClients) != 1 ||
		c.MaxCache != 2*time.Hour || !c.AllowLoopback {
		t.Fatalf("from the environment: %+v", c)
	}

	_, err = loadConfig(flagsFor(t, "--config", f.cfg), envOf(with(map[string]string{
		"AUTHD_CLIENT_METADATA_DOCUMENTS_DENIED_HOSTS":       "https://evil.example.com",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_MAX_DOCUMENT_BYTES": "10",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_MIN_CACHE":          "1h",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_MAX_CACHE":          "1m",
	})))
	for _, want := range []string{
		"client_metadata_documents.denied_hosts", "client_metadata_documents.max_document_bytes", "client_metadata_documents.max_cache",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("invalid settings: %v, want a problem naming %s", err, want)
		}
	}

	// --dev serves clients under development on this machine.
	cfg, err = loadConfig(flagsFor(t, "--dev"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ClientMetadataDocuments.AllowLoopback || !cfg.ClientMetadataDocuments.Enabled {
		t.Fatalf("dev: %+v", cfg.ClientMetadataDocuments)
	}
}

// TestCIMDDisabled: with enabled false, discovery does not advertise it
// and a URL client_id is an unknown client; nothing is fetched.
func TestCIMDDisabled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	docs := newCIMDDocs(t)
	app := startCIMDApp(t, f, dsn, docs, &testClock{}, map[string]string{
		"AUTHD_CLIENT_METADATA_DOCUMENTS_ENABLED":        "false",
		"AUTHD_CLIENT_METADATA_DOCUMENTS_ALLOW_LOOPBACK": "true",
	})
	var meta map[string]any
	getJSON(t, app.URL+"/.well-known/oauth-authorization-server", http.StatusOK, &meta)
	if _, ok := meta["client_id_metadata_document_supported"]; ok {
		t.Fatalf("disabled CIMD is advertised: %v", meta["client_id_metadata_document_supported"])
	}
	id := docs.id("/off.json")
	docs.serve(t, "/off.json", cimdDocument(id, "http://127.0.0.1/callback"), "")
	const redirect = "http://127.0.0.1:45136/callback"
	b := newBrowser(t, f.github.Client().Transport, redirect)
	resp, page := b.get(t, authURLFor(cimdOAuthConfig(app.URL, id, redirect), oauth2.GenerateVerifier()))
	assertRefusedPage(t, resp, page, "not registered with this server")
	if n := docs.hitsOf("/off.json"); n != 0 {
		t.Fatalf("fetched %d times while disabled", n)
	}
	assertNothingStored(t, app.store, id)
}
