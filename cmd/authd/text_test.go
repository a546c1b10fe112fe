package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestInputThatIsNotText is issue 16 part 6: invalid UTF-8 or NUL in any
// parameter or JSON string, lone surrogates, repeated JSON members and
// non-UTF-8 charsets get 400 invalid_request naming the parameter (415 for
// the charset), by the route's usual means (an error page until the client
// and redirect URI are confirmed, an error redirect after), and nothing is
// stored. Before the fix, %FF in state made /authorize redirect
// server_error (PostgreSQL refused the bytes, SQLSTATE 22021) and JSON
// strings were stored with U+FFFD.
func TestInputThatIsNotText(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	const redirect = "https://app.example.com/cb"
	client := s.publicClient(t, redirect)
	conf := s.confidentialClient(t, redirect)
	confID, rat := conf["client_id"].(string), conf["registration_access_token"].(string)
	before := s.rowCounts(t)
	bad := map[string]string{"invalid UTF-8": "\xff\xfe", "NUL": "a\x00b", "UTF-8 surrogate": "\xed\xa0\x80"}

	authorize := func() url.Values {
		return url.Values{
			"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "scope": {"mcp:tools"}, "state": {"st"},
			"code_challenge": {validChallenge}, "code_challenge_method": {"S256"}, "resource": {mcpResource},
			"nonce": {"n"}, "login_hint": {"alice"}, "prompt": {"login"}, "max_age": {"60"}, "idp_hint": {"github"},
		}
	}
	for what, v := range bad {
		for k := range authorize() {
			q := authorize()
			q.Set(k, v)
			resp, body := get(t, s.inst.URL+"/authorize?"+q.Encode(), nil)
			if k == "client_id" || k == "redirect_uri" {
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, k+" is not valid text") {
					t.Errorf("%s %s: want the 400 error page naming it, got %d %s", what, k, resp.StatusCode, resp.Header.Get("Location"))
				}
				continue
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), redirect+"?") {
				t.Errorf("%s %s: want an error redirect, got %d %s", what, k, resp.StatusCode, resp.Header.Get("Location"))
				continue
			}
			e := loc.Query()
			wantState := "st"
			if k == "state" {
				wantState = "" // not text: not echoed
			}
			if e.Get("error") != "invalid_request" || !strings.HasPrefix(e.Get("error_description"), k+" is not valid text") || e.Get("state") != wantState {
				t.Errorf("%s %s: redirected %v, want invalid_request naming %s, state %q", what, k, e, k, wantState)
			}
		}
	}
	// A POSTed authorization request in another charset is refused.
	req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/authorize", strings.NewReader(authorize().Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-16")
	if resp, err := noRedirectClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Location") != "" {
		t.Errorf("POST /authorize in UTF-16: %v %v", resp, err)
	}

	// Token, revocation and introspection endpoints.
	tokenForm := url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {"authd_ac_x"},
		"code_verifier": {strings.Repeat("a", 43)}, "redirect_uri": {redirect}, "resource": {mcpResource}}
	for what, v := range bad {
		for k := range tokenForm {
			f := url.Values{}
			for kk, vv := range tokenForm {
				f[kk] = vv
			}
			f.Set(k, v)
			r := s.token(t, f)
			wantOAuthError(t, what+" in /token "+k, r, http.StatusBadRequest, "invalid_request")
			if d, _ := r.body["error_description"].(string); !strings.HasPrefix(d, k+" is not valid text") {
				t.Errorf("%s in /token %s: description %q does not name it", what, k, d)
			}
		}
		r := s.token(t, url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {"authd_rt_x"}, "scope": {"mcp:tools " + v}})
		wantOAuthError(t, what+" in a refresh's scope", r, http.StatusBadRequest, "invalid_request")
		r = s.post(t, "/revoke", url.Values{"token": {v}, "client_id": {client}}, "", "")
		wantOAuthError(t, what+" in /revoke token", r, http.StatusBadRequest, "invalid_request")
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/introspect", strings.NewReader(url.Values{"token": {v}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+introspectionToken)
		r, err := sendOAuth(req)
		if err != nil {
			t.Fatal(err)
		}
		wantOAuthError(t, what+" in /introspect token", r, http.StatusBadRequest, "invalid_request")
	}
	for _, path := range []string{"/token", "/revoke", "/introspect"} {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+path, strings.NewReader(tokenForm.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=ISO-8859-1")
		r, err := sendOAuth(req)
		if err != nil {
			t.Fatal(err)
		}
		wantOAuthError(t, path+" in ISO-8859-1", r, http.StatusUnsupportedMediaType, "invalid_request")
	}

	// Registration (RFC 7591) and its management (RFC 7592): raw bytes, as
	// a client would send them.
	const base = `"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"`
	for _, tc := range []struct{ name, body, says string }{
		{"invalid UTF-8 in client_name", `{"client_name":"` + "\xff" + `",` + base + `}`, "client_name is not valid text"},
		{"lone surrogate in client_name", `{"client_name":"\ud800",` + base + `}`, "client_name is not valid text"},
		{"lone surrogate in software_id", `{"client_name":"n","software_id":"x\udfff",` + base + `}`, "software_id is not valid text"},
		{"NUL in contacts", `{"client_name":"n","contacts":["a\u0000@example.com"],` + base + `}`, "contacts is not valid text"},
		{"invalid UTF-8 in an unknown member", `{"client_name":"n","x_extra":"` + "\xc3" + `",` + base + `}`, "x_extra is not valid text"},
		{"repeated client_name", `{"client_name":"a","client_name":"b",` + base + `}`, "client_name appears more than once"},
		{"repeated redirect_uris", `{"client_name":"n","redirect_uris":["https://evil.example.com/cb"],` + base + `}`, "redirect_uris appears more than once"},
	} {
		for _, method := range []string{http.MethodPost, http.MethodPut} {
			target, body := s.inst.URL+"/register", tc.body
			if method == http.MethodPut {
				target += "/" + confID
				body = strings.Replace(body, `"token_endpoint_auth_method":"none"`, `"token_endpoint_auth_method":"client_secret_basic","client_id":"`+confID+`"`, 1)
			}
			req, _ := http.NewRequest(method, target, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if method == http.MethodPut {
				req.Header.Set("Authorization", "Bearer "+rat)
			}
			r, err := sendOAuth(req)
			if err != nil {
				t.Fatal(err)
			}
			wantOAuthError(t, method+" "+tc.name, r, http.StatusBadRequest, "invalid_request")
			if d, _ := r.body["error_description"].(string); !strings.Contains(d, tc.says) {
				t.Errorf("%s %s: description %q, want %q", method, tc.name, d, tc.says)
			}
		}
	}
	for _, ct := range []string{"application/json; charset=utf-16", "application/json; charset=UTF-32BE"} {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/register", strings.NewReader(`{"client_name":"n",`+base+`}`))
		req.Header.Set("Content-Type", ct)
		r, err := sendOAuth(req)
		if err != nil {
			t.Fatal(err)
		}
		wantOAuthError(t, "register as "+ct, r, http.StatusUnsupportedMediaType, "invalid_request")
	}

	s.assertUnchanged(t, before, "requests that are not text")
	if n := s.count(t, "SELECT count(*) FROM clients WHERE id = $1 AND metadata->>'client_name' LIKE 'confidential %'", confID); n != 1 {
		t.Error("a refused RFC 7592 update changed the client")
	}
	if logs := s.inst.Logs.String(); strings.Contains(logs, "22021") || strings.Contains(logs, "level=ERROR") || strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("an error was logged:\n%s", logs)
	}
}
