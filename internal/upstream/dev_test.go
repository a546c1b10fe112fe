package upstream_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/upstream"
)

const devIssuer = "http://localhost:8080"

func newDev(t *testing.T) (upstream.Connector, *httptest.Server) {
	t.Helper()
	conn, err := upstream.New(t.Context(), upstream.Config{ID: "dev", Type: upstream.TypeDev, RedirectURL: devIssuer + "/callback/dev"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(upstream.DevLoginHandler([]upstream.Connector{conn}, nil, upstream.DevBrand{}))
	t.Cleanup(srv.Close)
	return conn, srv
}

// devURL maps a URL under the issuer onto the test server.
func devURL(t *testing.T, srv *httptest.Server, u string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(u, devIssuer)
	if !ok {
		t.Fatalf("%q is not under the issuer", u)
	}
	return srv.URL + rest
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// devSubmit fetches the form from the login URL and posts it back with
// the fields the browser would send.
func devSubmit(t *testing.T, srv *httptest.Server, loginURL string, fields url.Values) *http.Response {
	t.Helper()
	u, _ := url.Parse(loginURL)
	form := url.Values{}
	for _, k := range []string{"upstream", "state", "code_challenge"} {
		form.Set(k, u.Query().Get(k))
	}
	for k, v := range fields {
		form[k] = v
	}
	resp, err := noRedirect.PostForm(devURL(t, srv, loginURL), form)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestDevLogin(t *testing.T) {
	conn, srv := newDev(t)
	if conn.Type() != upstream.TypeDev || conn.DisplayName() != "Development login" {
		t.Errorf("Type/DisplayName = %q/%q", conn.Type(), conn.DisplayName())
	}
	f := newFlow()
	opts := f.options("")
	opts.ClientName = "Inspector <dev>"
	loginURL := conn.AuthCodeURL(f.state, opts)
	if !strings.HasPrefix(loginURL, devIssuer+upstream.DevLoginPath+"?") {
		t.Fatalf("AuthCodeURL = %q", loginURL)
	}

	resp, err := http.Get(devURL(t, srv, loginURL))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Says it is for development only, and names the application asking
	// (escaped like everything else on the page).
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Development login") ||
		!strings.Contains(string(body), "Never expose it to real users") || !strings.Contains(string(body), "<strong>Inspector &lt;dev&gt;</strong>") {
		t.Fatalf("GET form: %d\n%s", resp.StatusCode, body)
	}
	for k, v := range map[string]string{
		"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
	} {
		if resp.Header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), v)
		}
	}
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", resp.Header.Get("Content-Security-Policy"))
	}

	for _, tc := range []struct{ email, wantEmail string }{
		{"", "alice@dev.local"},
		{"alice@example.com", "alice@example.com"},
	} {
		f := newFlow()
		loginURL := conn.AuthCodeURL(f.state, f.options(""))
		resp := devSubmit(t, srv, loginURL, url.Values{"name": {"alice"}, "email": {tc.email}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST: %d, want 303", resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		back, _ := url.Parse(loc)
		if !strings.HasPrefix(loc, devIssuer+"/callback/dev?") || back.Query().Get("state") != f.state || back.Query().Get("code") == "" {
			t.Fatalf("redirect to %q", loc)
		}
		id, err := conn.HandleCallback(t.Context(), httptest.NewRequest(http.MethodGet, loc, nil), f.options(""))
		if err != nil {
			t.Fatal(err)
		}
		want := upstream.Identity{Provider: "dev", Subject: "dev:alice", Login: "alice", Name: "alice", Email: tc.wantEmail, EmailVerified: true}
		if !equalIdentity(id, want) {
			t.Errorf("identity = %+v, want %+v", id, want)
		}

		// The code is bound to this flow's PKCE challenge.
		id, err = conn.HandleCallback(t.Context(), httptest.NewRequest(http.MethodGet, loc, nil), upstream.LoginOptions{Verifier: oauth2.GenerateVerifier(), Nonce: f.nonce})
		wantError(t, id, err, upstream.CodeUpstreamError)
	}
}

func TestDevLoginRejects(t *testing.T) {
	conn, srv := newDev(t)
	f := newFlow()
	opts := f.options("")
	opts.ClientName = "Inspector <dev>"
	loginURL := conn.AuthCodeURL(f.state, opts)

	t.Run("invalid name re-renders the form", func(t *testing.T) {
		for _, name := range []string{"", "a b", "<script>", strings.Repeat("x", 65)} {
			resp := devSubmit(t, srv, loginURL, url.Values{"name": {name}})
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(string(body), "User name:") {
				t.Errorf("name %q: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
			}
			if strings.Contains(string(body), "<script>") {
				t.Errorf("name %q echoed unescaped", name)
			}
		}
	})
	t.Run("invalid email", func(t *testing.T) {
		resp := devSubmit(t, srv, loginURL, url.Values{"name": {"bob"}, "email": {"Bob <bob@example.com>"}})
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("cross-origin POST", func(t *testing.T) {
		form := url.Values{"upstream": {"dev"}, "state": {f.state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(f.verifier)}, "name": {"mallory"}}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+upstream.DevLoginPath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
			t.Errorf("%d %q, want 403", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("incomplete link", func(t *testing.T) {
		for _, q := range []url.Values{
			{"upstream": {"dev"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(f.verifier)}},
			{"upstream": {"other"}, "state": {"s"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(f.verifier)}},
			{"upstream": {"dev"}, "state": {"s"}, "code_challenge": {"short"}},
		} {
			resp, err := http.Get(srv.URL + upstream.DevLoginPath + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%v: %d, want 400", q, resp.StatusCode)
			}
		}
	})
	t.Run("state is escaped in the form", func(t *testing.T) {
		evil := `"><script>alert(1)</script>`
		resp, err := http.Get(devURL(t, srv, conn.AuthCodeURL(evil, upstream.LoginOptions{Verifier: f.verifier})))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "<script>") {
			t.Errorf("%d, state not escaped:\n%s", resp.StatusCode, body)
		}
	})
	t.Run("forged or foreign code", func(t *testing.T) {
		other, otherSrv := newDev(t) // another process's key
		of := newFlow()
		resp := devSubmit(t, otherSrv, other.AuthCodeURL(of.state, upstream.LoginOptions{Verifier: f.verifier}), url.Values{"name": {"alice"}})
		loc := resp.Header.Get("Location")
		if loc == "" {
			t.Fatalf("other dev login: %d", resp.StatusCode)
		}
		for _, r := range []*http.Request{
			httptest.NewRequest(http.MethodGet, loc, nil),
			callbackRequest(conn, url.Values{"state": {f.state}, "code": {"eyJuIjoiYWxpY2UifQ.AAAA"}}),
		} {
			id, err := conn.HandleCallback(t.Context(), r, upstream.LoginOptions{Verifier: f.verifier})
			wantError(t, id, err, upstream.CodeUpstreamError)
		}
	})
}

func TestDevLoginHandlerWithoutDevConnector(t *testing.T) {
	gh := upstream.Config{ID: "github", Type: upstream.TypeGitHub, ClientID: "x", ClientSecret: "y", RedirectURL: issuer + "/callback/github"}
	conn, err := upstream.New(t.Context(), gh, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	upstream.DevLoginHandler([]upstream.Connector{conn}, nil, upstream.DevBrand{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, upstream.DevLoginPath+"?upstream=github&state=s", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status %d, want 404", rec.Code)
	}
}

// With an issuer that has a path, the form is under that path, and its
// answer goes to the callback under it.
func TestDevLoginUnderIssuerPath(t *testing.T) {
	const issuer = "https://auth.example.com/tenant"
	conn, err := upstream.New(t.Context(), upstream.Config{ID: "dev", Type: upstream.TypeDev, RedirectURL: issuer + "/callback/dev"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFlow()
	opts := f.options("")
	opts.ClientName = "Inspector <dev>"
	loginURL := conn.AuthCodeURL(f.state, opts)
	if !strings.HasPrefix(loginURL, issuer+upstream.DevLoginPath+"?") {
		t.Fatalf("AuthCodeURL = %q, want it under %s", loginURL, issuer)
	}
	u, _ := url.Parse(loginURL)
	form := url.Values{"name": {"dave"}}
	for _, k := range []string{"upstream", "state", "code_challenge"} {
		form.Set(k, u.Query().Get(k))
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/tenant"+upstream.DevLoginPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	upstream.DevLoginHandler([]upstream.Connector{conn}, nil, upstream.DevBrand{}).ServeHTTP(rec, req)
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, issuer+"/callback/dev?") {
		t.Fatalf("POST: %d Location %q", rec.Code, loc)
	}
}

// The development login carries the other pages' branding: the product
// name, and the logo, which its CSP admits from the logo's origin only;
// unbranded, it loads no image.
func TestDevLoginBranded(t *testing.T) {
	conn, err := upstream.New(t.Context(), upstream.Config{ID: "dev", Type: upstream.TypeDev, RedirectURL: issuer + "/callback/dev"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFlow()
	u, _ := url.Parse(conn.AuthCodeURL(f.state, f.options("")))
	get := func(b upstream.DevBrand) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		upstream.DevLoginHandler([]upstream.Connector{conn}, nil, b).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, upstream.DevLoginPath+"?"+u.RawQuery, nil))
		return rec
	}
	rec := get(upstream.DevBrand{ProductName: "Acme <Sign-in>", LogoURL: "https://cdn.example.com/logo.svg", LogoOrigin: "https://cdn.example.com"})
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "<span>Acme &lt;Sign-in&gt;</span>") || !strings.Contains(body, `<img src="https://cdn.example.com/logo.svg"`) {
		t.Fatalf("branded dev login %d:\n%s", rec.Code, body)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; img-src https://cdn.example.com") {
		t.Fatalf("CSP %q", csp)
	}
	rec = get(upstream.DevBrand{})
	if csp := rec.Header().Get("Content-Security-Policy"); strings.Contains(csp, "img-src") || strings.Contains(rec.Body.String(), "<img") || !strings.Contains(rec.Body.String(), "<span>authd</span>") {
		t.Fatalf("unbranded dev login: CSP %q\n%s", csp, rec.Body.String())
	}
}
