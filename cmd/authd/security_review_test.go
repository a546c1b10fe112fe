package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Tests for the findings of the outside security review (issue 17).

// TestSecurityInvalidClientAlwaysChallenges: every 401 invalid_client from
// /token and /revoke carries a Basic challenge (RFC 6749 §5.2, RFC 9110
// §15.5.2), also when the client sent a Bearer token or no credentials at
// all, not only when it tried Basic.
func TestSecurityInvalidClientAlwaysChallenges(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	for _, path := range []string{"/token", "/revoke"} {
		for _, c := range []struct {
			name, authz string
			form        url.Values
		}{
			{"nothing", "", url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}},
			{"bearer", "Bearer some-token", url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}},
			{"unknown client_id", "", url.Values{"grant_type": {"client_credentials"}, "token": {"x"}, "client_id": {"nobody"}}},
			{"basic, wrong", "Basic " + basicAuth("nobody", "wrong"), url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}},
		} {
			req, err := http.NewRequest(http.MethodPost, s.inst.URL+path, strings.NewReader(c.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if c.authz != "" {
				req.Header.Set("Authorization", c.authz)
			}
			r, err := sendOAuth(req)
			if err != nil {
				t.Fatal(err)
			}
			what := path + " with " + c.name
			wantOAuthError(t, what, r, http.StatusUnauthorized, "invalid_client")
			if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="authd"` {
				t.Errorf("%s: WWW-Authenticate %q, want a Basic challenge", what, got)
			}
		}
	}
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// timingClientYAML configures a resource server with an operator-chosen
// secret: stored as bcrypt, the kind of secret whose wrong guesses used to
// cost a bcrypt comparison each.
const timingClientYAML = `clients:
  - id: rs-timing
    name: Timing resource server
    secret: operator-chosen-secret-0123
    introspect: true
`

// authAttempt posts to /introspect with Basic credentials, as the network
// from (X-Forwarded-For through the trusted proxy 127.0.0.1; "" for none),
// and returns the status, the Retry-After header and how long it took.
func authAttempt(base, from, id, secret string) (int, string, time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/introspect", strings.NewReader(url.Values{"token": {"authd_at_x"}}.Encode()))
	if err != nil {
		return 0, "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	if from != "" {
		req.Header.Set("X-Forwarded-For", from)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestSecurityClientAuthenticationTimingIsUniform: a wrong secret costs
// the same whether the client id is unknown, a configured confidential
// client (operator-chosen secret, stored as bcrypt) or a dynamically
// registered one, and a right secret no more: the review measured 122 ms
// for a configured client against 4 ms for an unknown id, which told
// which ids are configured confidential clients.
//
// Statistical and deliberately generous, so it cannot flake on a loaded
// 2-core machine: medians of interleaved samples (load hits every kind
// alike), and it fails only when one kind's median exceeds three times
// another's plus 15 ms, which a bcrypt comparison (tens of ms at the
// default cost) always does and a digest comparison never does. (Every
// failure now takes at least the 10 ms failure floor; a success does not.)
// Not parallel, so that the package's other tests do not run meanwhile.
func TestSecurityClientAuthenticationTimingIsUniform(t *testing.T) {
	// Not parallel: a timing comparison needs the machine to itself.
	s := newSecEnvYAML(t, nil, timingClientYAML)
	dyn := s.confidentialClient(t, "https://app.example.com/cb")
	const wrong = "authd_cs_wrong-guess-0123456789abcdefghijklmnopqrstuv"
	kinds := []struct {
		name, id, secret string
		status           int
	}{
		{"unknown id, wrong secret", "9f1c2d3e-0000-4000-8000-000000000000", wrong, http.StatusUnauthorized},
		{"configured client, wrong secret", "rs-timing", wrong, http.StatusUnauthorized},
		{"dynamic client, wrong secret", dyn["client_id"].(string), wrong, http.StatusUnauthorized},
		{"configured client, right secret", "rs-timing", "operator-chosen-secret-0123", http.StatusOK},
	}
	samples := make([][]time.Duration, len(kinds))
	const warmup, rounds = 2, 25
	for round := range warmup + rounds {
		for j := range kinds {
			k := kinds[(round+j)%len(kinds)] // rotate the order: no kind always goes first
			status, _, d, err := authAttempt(s.inst.URL, "", k.id, k.secret)
			if err != nil {
				t.Fatal(err)
			}
			if status != k.status {
				t.Fatalf("%s: status %d, want %d", k.name, status, k.status)
			}
			if round >= warmup {
				i := (round + j) % len(kinds)
				samples[i] = append(samples[i], d)
			}
		}
	}
	meds := make([]time.Duration, len(kinds))
	for i, k := range kinds {
		meds[i] = median(samples[i])
		t.Logf("median over %d interleaved samples: %-34s %v", rounds, k.name, meds[i])
	}
	// The failures (the first three kinds) against each other; the right
	// secret, which is answered without the failure floor, must not cost
	// more than a failure either (no bcrypt on success).
	failures := meds[:3]
	lo, hi := slices.Min(failures), slices.Max(failures)
	if hi > 3*lo+15*time.Millisecond {
		t.Fatalf("a wrong secret's cost depends on the kind of client: medians %v (the slowest %v against the fastest %v)", failures, hi, lo)
	}
	if right := meds[3]; right > 3*hi+15*time.Millisecond {
		t.Fatalf("the right secret costs %v, a wrong one at most %v", right, hi)
	}
}

// TestSecurityFailedClientAuthenticationThrottled: failed client
// authentications are throttled per network before any secret is
// compared, with one budget for /introspect, /token, /revoke and RFC 7592
// (429 with Retry-After); a legitimate resource server on another network
// keeps introspecting, unthrottled and fast, while the flood goes on.
func TestSecurityFailedClientAuthenticationThrottled(t *testing.T) {
	t.Parallel()
	s := newSecEnvYAML(t, map[string]string{
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_PER_MINUTE":     "1", // refills too slowly to blur the budget on a slow machine
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_BURST":          "20",
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE": "30",
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_BURST":      "60",
	}, timingClientYAML)
	const rs, secret, legit, attacker = "rs-timing", "operator-chosen-secret-0123", "192.0.2.10", "198.51.100.7"
	introspectOK := func(n int) []time.Duration {
		var out []time.Duration
		for range n {
			status, _, d, err := authAttempt(s.inst.URL, legit, rs, secret)
			if err != nil {
				t.Error(err)
				return out
			}
			if status != http.StatusOK {
				t.Errorf("legitimate introspection: status %d", status)
			}
			out = append(out, d)
		}
		return out
	}
	before := median(introspectOK(30))

	// 8 threads of wrong secrets from one network, while the resource
	// server goes on.
	var unauthorized, limited, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, retry, _, err := authAttempt(s.inst.URL, attacker, rs, "wrong-guess")
				switch {
				case err != nil:
					other.Add(1)
				case status == http.StatusUnauthorized:
					unauthorized.Add(1)
				case status == http.StatusTooManyRequests && retry != "":
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	during := median(introspectOK(60))
	close(stop)
	wg.Wait()
	t.Logf("legitimate introspection, median: %v before the flood, %v during it; flood: %d answered 401, %d answered 429",
		before, during, unauthorized.Load(), limited.Load())
	// The budget is 20 failures: attempts in flight are reserved against
	// it from the first failure on; only the first wave (the 8 flooding
	// goroutines, before any failure is known) can run past it.
	if n := unauthorized.Load(); n > 20+8 {
		t.Errorf("%d wrong secrets were compared from one network, budget 20 (+8 in flight before the first failure)", n)
	}
	if limited.Load() == 0 || other.Load() != 0 {
		t.Errorf("flood: %d throttled, %d unexpected answers", limited.Load(), other.Load())
	}

	// The budget is shared: the other endpoints throttle that network too,
	// before looking at the credentials.
	for _, path := range []string{"/token", "/revoke"} {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+path, strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", attacker)
		req.SetBasicAuth(rs, secret)
		r, err := sendOAuth(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Errorf("%s from the throttled network: %d %s", path, r.status, r.raw)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/register/"+rs, nil)
	req.Header.Set("Authorization", "Bearer authd_rat_guess")
	req.Header.Set("X-Forwarded-For", attacker)
	if r, err := sendOAuth(req); err != nil || r.status != http.StatusTooManyRequests {
		t.Errorf("RFC 7592 from the throttled network: %v %d %s", err, r.status, r.raw)
	}
	// RFC 7592 guesses count too, from a fresh network.
	for i := range 21 {
		req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/register/00000000-0000-4000-8000-000000000000", nil)
		req.Header.Set("Authorization", "Bearer authd_rat_guess")
		req.Header.Set("X-Forwarded-For", "203.0.113.50")
		r, err := sendOAuth(req)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 401, false: 429}[i < 20]; r.status != want {
			t.Fatalf("RFC 7592 guess %d: %d, want %d", i+1, r.status, want)
		}
	}
}

// withdrawRedirectURI replaces a client's redirect URIs through RFC 7592.
func withdrawRedirectURI(t *testing.T, base string, reg map[string]any, keep string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_id": reg["client_id"], "client_name": reg["client_name"], "redirect_uris": []string{keep},
		"grant_types": reg["grant_types"], "token_endpoint_auth_method": "none",
	})
	req, _ := http.NewRequest(http.MethodPut, base+"/register/"+reg["client_id"].(string), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+reg["registration_access_token"].(string))
	r, err := sendOAuth(req)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("RFC 7592 PUT: %v %d %s", err, r.status, r.raw)
	}
}

// TestSecurityNoRedirectToWithdrawnURI: every redirect to a client, an
// error as much as a code, goes only to a redirect URI the client lists at
// that moment. The client withdraws the URI (RFC 7592 PUT) between
// /authorize and the user's Deny, or while the user is at the upstream
// and declines there: the user gets an error page, and nothing (not even
// error=access_denied with the client's state) is sent to the URI.
func TestSecurityNoRedirectToWithdrawnURI(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const kept, withdrawn = "https://app.example.com/kept", "https://app.example.com/withdrawn"
	register := func() map[string]any {
		return registerClient(t, s.inst.URL, map[string]any{
			"client_name":                fmt.Sprintf("withdrawing %d", clientSeq.Add(1)),
			"redirect_uris":              []string{kept, withdrawn},
			"grant_types":                []string{"authorization_code", "refresh_token"},
			"token_endpoint_auth_method": "none",
		})
	}
	authURL := func(id string) string {
		conf := s.oauthConfig(id, "", withdrawn)
		return conf.AuthCodeURL("client-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource))
	}
	deny := func(b *browser, page string) *http.Response {
		form := url.Values{"decision": {"deny"}}
		for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
			form.Set(m[1], htmlUnescape(m[2]))
		}
		resp, err := b.c.PostForm(s.inst.URL+"/consent", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Deny at the consent page: a redirect while the URI is registered ...
	reg := register()
	b := newBrowser(t, s.github.Client().Transport, "https://app.example.com/")
	_, page := b.get(t, authURL(reg["client_id"].(string)))
	if !strings.Contains(page, `action="/consent"`) {
		t.Fatalf("no consent page: %s", page)
	}
	if resp := deny(b, page); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), withdrawn+"?") {
		t.Fatalf("deny, URI registered: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// ... and a page once it has been withdrawn.
	reg = register()
	b = newBrowser(t, s.github.Client().Transport, "https://app.example.com/")
	_, page = b.get(t, authURL(reg["client_id"].(string)))
	withdrawRedirectURI(t, s.inst.URL, reg, kept)
	if resp := deny(b, page); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("deny after the redirect URI was withdrawn: %d %q, want an error page", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The user declines at the upstream after the URI was withdrawn.
	s.github.SetDecline(true)
	reg = register()
	b = newBrowser(t, s.github.Client().Transport, s.github.BaseURL()) // stop at the upstream
	resp, _ := b.get(t, authURL(reg["client_id"].(string)))
	atUpstream := resp.Header.Get("Location")
	if !strings.HasPrefix(atUpstream, s.github.BaseURL()) {
		t.Fatalf("not sent to the upstream: %d %q", resp.StatusCode, atUpstream)
	}
	withdrawRedirectURI(t, s.inst.URL, reg, kept)
	b.redirect = "https://app.example.com/"
	resp, body := b.get(t, atUpstream)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "no longer lists") {
		t.Fatalf("upstream access_denied after the redirect URI was withdrawn: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// postRegistration sends an RFC 7591 registration and returns the answer.
func postRegistration(t *testing.T, base string, md map[string]any) oauthResp {
	t.Helper()
	body, _ := json.Marshal(md)
	req, _ := http.NewRequest(http.MethodPost, base+"/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	r, err := sendOAuth(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSecurityRegistrationHygiene: wildcard or otherwise invalid redirect
// URI hosts and redirect URIs whose query already carries a parameter of
// the authorization response are refused, at registration and at RFC 7592
// update (client metadata documents share the check: TestParseDocument);
// a registration's scope keeps only scopes authd knows; a client name
// mixing scripts is flagged on the consent page.
func TestSecurityRegistrationHygiene(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	md := func(name string, redirects ...string) map[string]any {
		return map[string]any{
			"client_name": name, "redirect_uris": redirects, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"},
		}
	}
	for _, uri := range []string{
		"https://*.example.com/cb", "https://app.*.example.com/cb", "https://exa_mple.com/cb",
		"https://app.example.com/cb?code=x", "https://app.example.com/cb?a=1&state=s",
		"https://app.example.com/cb?iss=https://evil.example", "http://127.0.0.1/cb?error=x",
		"https://app.example.com/cb?error_description=x",
	} {
		r := postRegistration(t, s.inst.URL, md("hygiene", uri))
		wantOAuthError(t, "register "+uri, r, http.StatusBadRequest, "invalid_redirect_uri")
	}
	reg := registerClient(t, s.inst.URL, md("hygiene ok", "https://app.example.com/cb?tenant=a"))
	upd := md("hygiene ok", "https://app.example.com/cb?code=1")
	upd["client_id"] = reg["client_id"]
	body, _ := json.Marshal(upd)
	req, _ := http.NewRequest(http.MethodPut, s.inst.URL+"/register/"+reg["client_id"].(string), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+reg["registration_access_token"].(string))
	r, err := sendOAuth(req)
	if err != nil {
		t.Fatal(err)
	}
	wantOAuthError(t, "RFC 7592 update with ?code=", r, http.StatusBadRequest, "invalid_redirect_uri")

	scoped := md("hygiene scope", "https://app.example.com/cb")
	scoped["scope"] = "* admin mcp:tools"
	if got := registerClient(t, s.inst.URL, scoped)["scope"]; got != "mcp:tools" {
		t.Errorf("registered scope answered as %v, want only the known mcp:tools", got)
	}

	consentPage := func(name string) string {
		id := registerClient(t, s.inst.URL, md(name, "https://app.example.com/cb"))["client_id"].(string)
		b := newBrowser(t, s.github.Client().Transport, "https://app.example.com/")
		conf := s.oauthConfig(id, "", "https://app.example.com/cb")
		_, page := b.get(t, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)))
		if !strings.Contains(page, `action="/consent"`) {
			t.Fatalf("no consent page for %q: %s", name, page)
		}
		return page
	}
	if page := consentPage("\u0421laude"); !strings.Contains(page, "Suspicious name") || !strings.Contains(page, "app.example.com") {
		t.Error("a name mixing Cyrillic and Latin letters is not flagged on the consent page (or the redirect host is missing)")
	}
	if page := consentPage("Claude"); strings.Contains(page, "Suspicious name") {
		t.Error("an ordinary name is flagged")
	}
}

// TestSecurityStateLimit: state is bounded at 1,024 characters, as the
// README documents: one of exactly 1,024 comes back intact through the
// whole flow; a longer one is answered at the redirect URI with
// invalid_request naming the limit, without echoing the state (RFC 6749
// sets no limit; authd bounds what it stores and puts in Location).
func TestSecurityStateLimit(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const cb = "https://app.example.com/cb"
	conf := s.oauthConfig(s.publicClient(t, cb), "", cb)
	long := strings.Repeat("s", 1024)
	b := newBrowser(t, s.github.Client().Transport, cb)
	q := b.authorize(t, s.inst.URL, conf.AuthCodeURL(long, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)))
	if q.Get("state") != long || q.Get("code") == "" {
		t.Fatalf("state of 1024 characters: got %d characters back, code %q", len(q.Get("state")), q.Get("code"))
	}
	resp, _ := get(t, conf.AuthCodeURL(long+"s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)), nil)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), cb+"?") {
		t.Fatalf("state of 1025 characters: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if e := loc.Query(); e.Get("error") != "invalid_request" || e.Get("error_description") != "state is longer than 1024 characters" || e.Has("state") {
		t.Errorf("state of 1025 characters: %v", e)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil || !strings.Contains(string(readme), "`state` may be at most 1,024 characters") {
		t.Errorf("README does not document the state limit: %v", err)
	}
}
