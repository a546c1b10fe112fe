package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

// secEnv is the adversarial suite's target: authd on its own Postgres
// database with the fake GitHub upstream, a metrics listener, rate limits
// off (the attacks below send many requests from one address), and a pgx
// pool on the same database so tests can check what did (not) change.
type secEnv struct {
	*flowEnv
	inst       *instance
	db         *pgxpool.Pool
	metricsURL string
	// upstreamTokens collects the access and refresh tokens the fake
	// GitHub issued to authd, seen on the wire between them.
	upstreamTokens *tokenTap
}

// newSecEnv starts authd for one test. extra adds environment variables.
func newSecEnv(t *testing.T, extra map[string]string) *secEnv {
	t.Helper()
	return newSecEnvYAML(t, extra, "")
}

// newSecEnvOn is newSecEnv on the database dsn (which extra may route
// authd to through something else, AUTHD_DATABASE_URL).
func newSecEnvOn(t *testing.T, dsn string, extra map[string]string) *secEnv {
	t.Helper()
	return newSecEnvOnYAML(t, dsn, extra, "")
}

// newSecEnvYAML is newSecEnv with more YAML appended to the configuration
// file (e.g. configured clients, which have no environment variables).
func newSecEnvYAML(t *testing.T, extra map[string]string, yaml string) *secEnv {
	t.Helper()
	return newSecEnvOnYAML(t, pgtest.DSN(t), extra, yaml)
}

func newSecEnvOnYAML(t *testing.T, dsn string, extra map[string]string, yaml string) *secEnv {
	t.Helper()
	return newSecEnvFrom(t, newFlowEnv(t, dsn), dsn, extra, yaml)
}

// newSecEnvFrom is newSecEnvOnYAML for a flow environment the caller
// prepared (e.g. its configuration edited).
func newSecEnvFrom(t *testing.T, f *flowEnv, dsn string, extra map[string]string, yaml string) *secEnv {
	t.Helper()
	if yaml != "" {
		cfg, err := os.OpenFile(f.cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = cfg.WriteString("\n" + yaml)
			if cerr := cfg.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	metricsAddr := freeAddr(t)
	for k, v := range map[string]string{
		"AUTHD_METRICS_LISTEN":                            metricsAddr,
		"AUTHD_RATE_LIMITS_AUTHORIZE_PER_IP_PER_MINUTE":   "0",
		"AUTHD_RATE_LIMITS_TOKEN_PER_IP_PER_MINUTE":       "0",
		"AUTHD_RATE_LIMITS_REVOKE_PER_IP_PER_MINUTE":      "0",
		"AUTHD_REGISTRATION_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
		"AUTHD_REGISTRATION_RATE_LIMIT_GLOBAL_PER_MINUTE": "0",
		// Failed client authentications likewise (tests that need the
		// throttle turn it back on).
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_PER_MINUTE":     "0",
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE": "0",
	} {
		f.env[k] = v
	}
	for k, v := range extra {
		f.env[k] = v
	}
	tap := &tokenTap{next: f.github.Client().Transport}
	inst := startAuthdWith(t, freeAddr(t), f.env, &http.Client{Transport: tap, Timeout: 15 * time.Second}, "--config", f.cfg)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &secEnv{flowEnv: f, inst: inst, db: pool, metricsURL: "http://" + metricsAddr + "/metrics", upstreamTokens: tap}
}

// tokenTap records access_token values in upstream token responses.
type tokenTap struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (tt *tokenTap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tt.next.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/login/oauth/access_token") {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		if v, err := url.ParseQuery(string(body)); err == nil {
			m = map[string]any{"access_token": v.Get("access_token"), "refresh_token": v.Get("refresh_token")}
		}
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if tok, _ := m[k].(string); tok != "" {
			tt.mu.Lock()
			tt.seen = append(tt.seen, tok)
			tt.mu.Unlock()
		}
	}
	return resp, nil
}

func (tt *tokenTap) tokens() []string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return append([]string(nil), tt.seen...)
}

// count runs a COUNT query against authd's database.
func (s *secEnv) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// exec runs a statement against authd's database.
func (s *secEnv) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := s.db.Exec(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// rowCounts counts the rows of every table that attacks could make grow.
func (s *secEnv) rowCounts(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"clients", "users", "auth_requests", "sessions", "consents", "grants", "auth_codes", "refresh_tokens", "access_tokens", "revoked_jtis"} {
		out[tbl] = s.count(t, "SELECT count(*) FROM "+tbl)
	}
	return out
}

// assertUnchanged fails when any table's row count differs from before.
func (s *secEnv) assertUnchanged(t *testing.T, before map[string]int, what string) {
	t.Helper()
	after := s.rowCounts(t)
	for tbl, n := range before {
		if after[tbl] != n {
			t.Errorf("%s: table %s went from %d to %d rows", what, tbl, n, after[tbl])
		}
	}
}

var clientSeq atomic.Int64

// publicClient registers a public client with the given redirect URIs.
func (s *secEnv) publicClient(t *testing.T, redirects ...string) string {
	t.Helper()
	reg := registerClient(t, s.inst.URL, map[string]any{
		// Unique names: identical public registrations from one network
		// share a client_id by design (see package register).
		"client_name":                fmt.Sprintf("public %d", clientSeq.Add(1)),
		"redirect_uris":              redirects,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	return reg["client_id"].(string)
}

// confidentialClient registers a client_secret_basic client that may also
// use client_credentials; it returns the full registration response.
func (s *secEnv) confidentialClient(t *testing.T, redirect string) map[string]any {
	t.Helper()
	return registerClient(t, s.inst.URL, map[string]any{
		"client_name":                fmt.Sprintf("confidential %d", clientSeq.Add(1)),
		"redirect_uris":              []string{redirect},
		"grant_types":                []string{"authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
}

// oauthConfig is an x/oauth2 configuration for a client of s.
func (s *secEnv) oauthConfig(clientID, secret, redirect string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURL: redirect, Scopes: []string{"mcp:tools"},
		Endpoint: oauth2.Endpoint{AuthURL: s.inst.URL + "/authorize", TokenURL: s.inst.URL + "/token", AuthStyle: style},
	}
}

// code runs the browser part of a code flow for conf (new browser: GitHub
// login and consent) and returns the code and the PKCE verifier.
func (s *secEnv) code(t *testing.T, conf *oauth2.Config) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	b := newBrowser(t, s.github.Client().Transport, conf.RedirectURL)
	q := b.authorize(t, s.inst.URL, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpResource)))
	if q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
	return q.Get("code"), verifier
}

// tokens runs a whole code flow and exchange for conf.
func (s *secEnv) tokens(t *testing.T, conf *oauth2.Config) *oauth2.Token {
	t.Helper()
	code, verifier := s.code(t, conf)
	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// oauthResp is a decoded JSON answer of an OAuth endpoint.
type oauthResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r oauthResp) err() string { s, _ := r.body["error"].(string); return s }

// post sends a form to path; user/pass, when set, go in a Basic header.
func (s *secEnv) post(t *testing.T, path string, form url.Values, user, pass string) oauthResp {
	t.Helper()
	out, err := s.tryPost(path, form, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryPost is post for goroutines other than the test's, which must not
// call t.Fatal: it returns the error instead.
func (s *secEnv) tryPost(path string, form url.Values, user, pass string) (oauthResp, error) {
	return tryPostTo(s.inst.URL, path, form, user, pass)
}

// tryPostTo is tryPost to the server at base.
func tryPostTo(base, path string, form url.Values, user, pass string) (oauthResp, error) {
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return oauthResp{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return sendOAuth(req)
}

// sendOAuth sends req and decodes the (JSON, if any) answer.
func sendOAuth(req *http.Request) (oauthResp, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return oauthResp{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return oauthResp{}, fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL.Path, err)
	}
	out := oauthResp{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out, nil
}

// token posts to /token with client credentials in the body (public
// clients: client_id only).
func (s *secEnv) token(t *testing.T, form url.Values) oauthResp {
	t.Helper()
	return s.post(t, "/token", form, "", "")
}

// wantOAuthError checks an RFC 6749 §5.2 error answer.
func wantOAuthError(t *testing.T, what string, r oauthResp, status int, code string) {
	t.Helper()
	if r.status != status || r.err() != code {
		t.Fatalf("%s: got %d %q, want %d %q: %s", what, r.status, r.err(), status, code, r.raw)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: content type %q", what, ct)
	}
	if _, ok := r.body["access_token"]; ok {
		t.Errorf("%s: an error answer carries an access token", what)
	}
	checkDescription(t, what, r.body)
}

// checkDescription enforces RFC 6749 §5.2's error_description charset and
// that no internal detail leaks into it.
func checkDescription(t *testing.T, what string, body map[string]any) {
	t.Helper()
	d, _ := body["error_description"].(string)
	for _, c := range []byte(d) {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Errorf("%s: error_description has byte %#x: %q", what, c, d)
			break
		}
	}
	low := strings.ToLower(d)
	for _, leak := range []string{"sqlstate", "pgx", "postgres", "panic", "goroutine", ".go:", "runtime error", "dial tcp", "syntax error"} {
		if strings.Contains(low, leak) {
			t.Errorf("%s: error_description reveals internals (%q): %q", what, leak, d)
		}
	}
}

// introspect asks /introspect with the static bearer token.
func (s *secEnv) introspect(t *testing.T, tok string) map[string]any {
	t.Helper()
	return introspectAt(t, s.inst.URL, tok)
}

func (s *secEnv) active(t *testing.T, tok string) bool {
	t.Helper()
	a, _ := s.introspect(t, tok)["active"].(bool)
	return a
}

// noRedirectClient never follows redirects.
var noRedirectClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// get fetches target without following redirects.
func get(t *testing.T, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirectClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// upstreamtestUser is a second GitHub user allowed by the allowlist.
func upstreamtestUser(login string, id int64) upstreamtest.GitHubUser {
	return upstreamtest.GitHubUser{
		ID: id, Login: login, Name: login,
		Emails: []upstreamtest.GitHubEmail{{Email: login + "@example.com", Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
	}
}
