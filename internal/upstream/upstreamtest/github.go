// Package upstreamtest provides fake identity providers for tests: GitHub
// and an OpenID Connect provider (usable as Google or as any issuer), each
// on an httptest TLS server speaking the provider's real wire format.
// Point a connector at them with Config and give it Client(), which trusts
// the fake's certificate.
package upstreamtest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/upstream"
)

// GitHubEmail is one entry of GET /user/emails.
type GitHubEmail struct {
	Email    string
	Primary  bool
	Verified bool
}

// GitHubUser is an account at the fake GitHub.
type GitHubUser struct {
	ID     int64
	Login  string
	Name   string
	Emails []GitHubEmail
	// Orgs are organization logins as GitHub spells them (any case).
	Orgs []string
	// Teams maps an organization login to team slugs.
	Teams map[string][]string
}

// GitHub is a fake github.com (or GitHub Enterprise, whose API lives under
// /api/v3, as here): /login/oauth/authorize approves at once for the
// selected user, /login/oauth/access_token checks the client credentials,
// code, redirect_uri and PKCE verifier, and the REST API serves /user,
// /user/emails, /user/orgs and /user/teams with Link-header pagination.
type GitHub struct {
	// ClientID and ClientSecret are what the token endpoint accepts.
	ClientID, ClientSecret string

	srv *httptest.Server

	mu        sync.Mutex
	users     []*GitHubUser
	next      string
	decline   bool
	perPage   int
	apiStatus map[string]int
	codes     map[string]ghGrant
	spent     map[string]int // times each code was presented (Exchanges)
	tokens    map[string]ghToken
	authReqs  []url.Values
	// GitHub App user tokens that expire, refresh, revocation and
	// membership changes: github_tokens.go.
	exp ghExpiring
}

type ghGrant struct {
	userID      int64
	redirectURI string
	challenge   string
	scopes      []string
}

type ghToken struct {
	userID  int64
	scopes  []string
	expires time.Time // zero: never (OAuth app tokens)
}

// NewGitHub starts a fake GitHub, closed when the test ends.
func NewGitHub(t testing.TB) *GitHub {
	t.Helper()
	g := &GitHub{
		ClientID:     "gh-client-id",
		ClientSecret: "gh-client-secret",
		perPage:      100,
		apiStatus:    map[string]int{},
		codes:        map[string]ghGrant{},
		tokens:       map[string]ghToken{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", g.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", g.accessToken)
	mux.HandleFunc("GET /api/v3/user", g.api(g.user))
	mux.HandleFunc("GET /api/v3/user/emails", g.api(g.emails))
	mux.HandleFunc("GET /api/v3/user/orgs", g.api(g.orgs))
	mux.HandleFunc("GET /api/v3/user/teams", g.api(g.teams))
	g.srv = httptest.NewTLSServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// BaseURL is the web root (GitHubConfig.BaseURL).
func (g *GitHub) BaseURL() string { return g.srv.URL }

// APIURL is the REST API root (GitHubConfig.APIURL).
func (g *GitHub) APIURL() string { return g.srv.URL + "/api/v3" }

// Client trusts the fake's TLS certificate.
func (g *GitHub) Client() *http.Client { return g.srv.Client() }

// Certificate is the fake's TLS certificate, for a process that must trust
// it (e.g. through SSL_CERT_FILE).
func (g *GitHub) Certificate() *x509.Certificate { return g.srv.Certificate() }

// Config is a connector configuration pointing at the fake; the caller
// sets RedirectURL.
func (g *GitHub) Config(id string) upstream.Config {
	return upstream.Config{
		ID: id, Type: upstream.TypeGitHub,
		ClientID: g.ClientID, ClientSecret: g.ClientSecret,
		GitHub: upstream.GitHubConfig{BaseURL: g.BaseURL(), APIURL: g.APIURL()},
	}
}

// AddUser adds (or replaces, by id) an account.
func (g *GitHub) AddUser(u GitHubUser) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users = slices.DeleteFunc(g.users, func(x *GitHubUser) bool { return x.ID == u.ID })
	g.users = append(g.users, &u)
}

// RenameUser changes an account's login; its id stays.
func (g *GitHub) RenameUser(login, newLogin string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u := g.byLogin(login); u != nil {
		u.Login = newLogin
	}
}

// DeleteUser removes an account, freeing its login for someone else.
func (g *GitHub) DeleteUser(login string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users = slices.DeleteFunc(g.users, func(x *GitHubUser) bool { return strings.EqualFold(x.Login, login) })
}

// SetNextUser selects who authorize signs in when the request has no
// matching login parameter. With one user only, that user is the default.
func (g *GitHub) SetNextUser(login string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next = login
}

// SetDecline makes authorize answer error=access_denied, as when the user
// clicks Cancel.
func (g *GitHub) SetDecline(decline bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decline = decline
}

// SetPerPage caps the page size of list endpoints (GitHub's cap is 100),
// to exercise pagination.
func (g *GitHub) SetPerPage(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.perPage = n
}

// FailAPI makes the API path (e.g. "/user/emails") answer status; 0
// restores it.
func (g *GitHub) FailAPI(path string, status int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.apiStatus[path] = status
}

// AuthorizeRequests returns the query of every authorize request so far.
func (g *GitHub) AuthorizeRequests() []url.Values {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.authReqs)
}

func (g *GitHub) byLogin(login string) *GitHubUser {
	for _, u := range g.users {
		if strings.EqualFold(u.Login, login) {
			return u
		}
	}
	return nil
}

func (g *GitHub) byID(id int64) *GitHubUser {
	for _, u := range g.users {
		if u.ID == id {
			return u
		}
	}
	return nil
}

func (g *GitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.authReqs = append(g.authReqs, q)

	// Until client_id and redirect_uri check out, GitHub shows a page.
	if q.Get("client_id") != g.ClientID {
		http.Error(w, "fake github: unknown client_id", http.StatusNotFound)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme == "" || redirect.Host == "" {
		http.Error(w, "fake github: redirect_uri is not an absolute URL", http.StatusBadRequest)
		return
	}
	// GitHub accepts requests without PKCE; the fake insists, so that a
	// connector that forgot it fails its tests.
	if q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "fake github: PKCE S256 challenge required", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	if g.decline {
		back.Set("error", "access_denied")
		back.Set("error_description", "The user has denied your application access.")
		back.Set("error_uri", "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied")
	} else {
		u := g.byLogin(q.Get("login"))
		if u == nil {
			u = g.byLogin(g.next)
		}
		if u == nil && len(g.users) == 1 {
			u = g.users[0]
		}
		if u == nil {
			http.Error(w, "fake github: no user selected (AddUser, SetNextUser or login=)", http.StatusBadRequest)
			return
		}
		code := randomHex(10)
		g.codes[code] = ghGrant{userID: u.ID, redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), scopes: splitScopes(q.Get("scope"))}
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// accessToken answers like GitHub: errors come with status 200 and an
// "error" member; JSON only when the client asks for it.
func (g *GitHub) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = unescape(u), unescape(p)
	}
	reply := func(v url.Values) {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			m := map[string]string{}
			for k := range v {
				m[k] = v.Get(k)
			}
			writeJSON(w, http.StatusOK, m)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(v.Encode()))
	}
	fail := func(code, desc string) {
		reply(url.Values{"error": {code}, "error_description": {desc}, "error_uri": {"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}})
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if id != g.ClientID || secret != g.ClientSecret {
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	if f.Get("grant_type") == "refresh_token" {
		g.refreshGrant(f.Get("refresh_token"), reply, fail)
		return
	}
	grant, ok := g.codes[f.Get("code")]
	delete(g.codes, f.Get("code")) // single use, whatever happens next
	if g.spent == nil {
		g.spent = map[string]int{}
	}
	g.spent[f.Get("code")]++
	if !ok {
		fail("bad_verification_code", "The code passed is incorrect or expired.")
		return
	}
	if ru := f.Get("redirect_uri"); ru != "" && ru != grant.redirectURI {
		fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
		return
	}
	if !pkceOK(f.Get("code_verifier"), grant.challenge) {
		fail("bad_verification_code", "The code_verifier does not match the code_challenge.")
		return
	}
	reply(g.issue(grant.userID, grant.scopes))
}

type apiFunc func(w http.ResponseWriter, r *http.Request, u *GitHubUser, scopes []string)

// api authenticates the bearer token and applies FailAPI.
func (g *GitHub) api(f apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if st := g.apiStatus[strings.TrimPrefix(r.URL.Path, "/api/v3")]; st != 0 {
			writeJSON(w, st, map[string]string{"message": http.StatusText(st)})
			return
		}
		auth := r.Header.Get("Authorization")
		scheme, tok, _ := strings.Cut(auth, " ")
		t, ok := g.tokens[tok]
		u := g.byID(t.userID)
		if ok && !t.expires.IsZero() && !g.now().Before(t.expires) {
			ok = false // GitHub answers an expired token like an unknown one
		}
		if !ok || u == nil || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token")) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})
			return
		}
		w.Header().Set("X-OAuth-Scopes", strings.Join(t.scopes, ", "))
		f(w, r, u, t.scopes)
	}
}

func (g *GitHub) user(w http.ResponseWriter, _ *http.Request, u *GitHubUser, _ []string) {
	writeJSON(w, http.StatusOK, map[string]any{
		"login":      u.Login,
		"id":         u.ID,
		"node_id":    "U_" + strconv.FormatInt(u.ID, 36),
		"avatar_url": fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", u.ID),
		"type":       "User",
		"site_admin": false,
		"name":       nilIfEmpty(u.Name),
		"email":      nil,
	})
}

func (g *GitHub) emails(w http.ResponseWriter, _ *http.Request, u *GitHubUser, scopes []string) {
	if !slices.Contains(scopes, "user:email") && !slices.Contains(scopes, "user") {
		// GitHub hides what the token may not see behind a 404.
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	out := []map[string]any{}
	for _, e := range u.Emails {
		out = append(out, map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": "private"})
	}
	writeJSON(w, http.StatusOK, out)
}

func hasReadOrg(scopes []string) bool {
	return slices.Contains(scopes, "read:org") || slices.Contains(scopes, "write:org") || slices.Contains(scopes, "admin:org")
}

func (g *GitHub) orgs(w http.ResponseWriter, r *http.Request, u *GitHubUser, scopes []string) {
	var items []any
	if hasReadOrg(scopes) { // otherwise only public memberships, which the fake does not model
		for i, o := range u.Orgs {
			items = append(items, map[string]any{"login": o, "id": 1000 + i, "description": nil})
		}
	}
	g.page(w, r, items)
}

func (g *GitHub) teams(w http.ResponseWriter, r *http.Request, u *GitHubUser, scopes []string) {
	if !hasReadOrg(scopes) {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "Resource not accessible by integration"})
		return
	}
	var items []any
	orgs := make([]string, 0, len(u.Teams))
	for o := range u.Teams {
		orgs = append(orgs, o)
	}
	slices.Sort(orgs)
	for _, o := range orgs {
		for _, slug := range u.Teams[o] {
			items = append(items, map[string]any{
				"id": len(items) + 1, "name": slug, "slug": slug, "privacy": "closed",
				"organization": map[string]any{"login": o, "id": 1},
			})
		}
	}
	g.page(w, r, items)
}

// page serves one page of items with GitHub's Link header.
func (g *GitHub) page(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	per = min(per, 100, g.perPage)
	p, _ := strconv.Atoi(q.Get("page"))
	p = max(p, 1)
	last := max((len(items)+per-1)/per, 1)
	link := func(n int, rel string) string {
		v := url.Values{"per_page": {strconv.Itoa(per)}, "page": {strconv.Itoa(n)}}
		return fmt.Sprintf(`<%s%s?%s>; rel="%s"`, g.srv.URL, r.URL.Path, v.Encode(), rel)
	}
	var links []string
	if p < last {
		links = append(links, link(p+1, "next"), link(last, "last"))
	}
	if p > 1 {
		links = append(links, link(1, "first"), link(p-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	lo, hi := min((p-1)*per, len(items)), min(p*per, len(items))
	out := items[lo:hi]
	if out == nil {
		out = []any{}
	}
	writeJSON(w, http.StatusOK, out)
}

func splitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}

func pkceOK(verifier, challenge string) bool {
	if verifier == "" || challenge == "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:]) == challenge
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Exchanges returns how often code was presented at the token endpoint,
// whether it was valid then or not: a client presents each authorization
// code once, since a provider may revoke every token a reused code issued
// (RFC 6749 §4.1.2).
func (g *GitHub) Exchanges(code string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.spent[code]
}
