package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/oauth2"
)

// registerRaw posts metadata to /register and decodes the answer.
func (s *secEnv) registerRaw(t *testing.T, metadata map[string]any) oauthResp {
	t.Helper()
	body, _ := json.Marshal(metadata)
	return s.jsonRequest(t, http.MethodPost, "/register", "", body)
}

// jsonRequest sends body (JSON) with an optional Bearer token.
func (s *secEnv) jsonRequest(t *testing.T, method, path, bearer string, body []byte) oauthResp {
	t.Helper()
	out, err := s.tryJSONRequest(method, path, bearer, body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryJSONRequest is jsonRequest for goroutines other than the test's,
// which must not call t.Fatal: it returns the error instead.
func (s *secEnv) tryJSONRequest(method, path, bearer string, body []byte) (oauthResp, error) {
	req, err := http.NewRequest(method, s.inst.URL+path, bytes.NewReader(body))
	if err != nil {
		return oauthResp{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return sendOAuth(req)
}

// TestSecurityRegisterRejectsDangerousMetadata: an attacker registers a
// client whose redirect URIs would turn authd into an XSS or open-redirect
// vector, or that would bypass exact matching later (SECURITY.md items 2,
// 3 and 8: script schemes in any letter case, wildcards, fragments,
// userinfo, http on a public host), or tries to choose its own client_id or
// secret (RFC 9700 §4.15, confusable ids). Every attempt is refused with
// RFC 7591's error code and creates no client.
func TestSecurityRegisterRejectsDangerousMetadata(t *testing.T) {
	s := newSecEnv(t, nil)
	before := s.rowCounts(t)
	for _, uri := range []string{
		"javascript:alert(1)",
		"JavaScript:alert(1)",
		"JAVASCRIPT://app.example.com/%0aalert(1)",
		"  javascript:alert(1)",
		"java\tscript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"vbscript:msgbox(1)",
		"file:///etc/passwd",
		"http://app.example.com/cb",
		"https://app.example.com/cb#frag",
		"https://app.example.com/cb#",
		"https://user:pw@app.example.com/cb",
		"https://app.example.com@attacker.example/cb",
		"/cb",
		"//attacker.example/cb",
		"https://app.example.com/cb\r\nSet-Cookie: x=1",
		"",
	} {
		r := s.registerRaw(t, map[string]any{"client_name": "x", "redirect_uris": []string{uri}, "token_endpoint_auth_method": "none"})
		wantOAuthError(t, "redirect_uri "+uri, r, http.StatusBadRequest, "invalid_redirect_uri")
	}
	// A NUL is no text at all: refused while parsing, naming the member.
	r := s.registerRaw(t, map[string]any{"client_name": "x", "redirect_uris": []string{"https://app.example.com/cb\x00"}, "token_endpoint_auth_method": "none"})
	wantOAuthError(t, "redirect_uri with NUL", r, http.StatusBadRequest, "invalid_request")
	for name, md := range map[string]map[string]any{
		"unsupported auth method": {"redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "private_key_jwt"},
		"implicit grant":          {"redirect_uris": []string{"https://app.example.com/cb"}, "grant_types": []string{"implicit"}},
		"password grant":          {"redirect_uris": []string{"https://app.example.com/cb"}, "grant_types": []string{"password"}},
		"token response type":     {"redirect_uris": []string{"https://app.example.com/cb"}, "response_types": []string{"token"}},
		"redirect_uris not list":  {"redirect_uris": "https://app.example.com/cb"},
		"client_uri script":       {"redirect_uris": []string{"https://app.example.com/cb"}, "client_uri": "javascript:alert(1)"},
		"logo_uri script":         {"redirect_uris": []string{"https://app.example.com/cb"}, "logo_uri": "javascript:alert(1)"},
	} {
		r := s.registerRaw(t, md)
		if r.status != http.StatusBadRequest || (r.err() != "invalid_client_metadata" && r.err() != "invalid_redirect_uri") {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
		checkDescription(t, name, r.body)
	}
	s.assertUnchanged(t, before, "rejected registrations")

	// A wildcard-looking URI is at most a literal string: it never
	// matches a concrete host or path.
	for reg, attack := range map[string]string{
		"https://*.example.com/cb":  "https://evil.example.com/cb",
		"https://app.example.com/*": "https://app.example.com/anything",
	} {
		r := s.registerRaw(t, map[string]any{"client_name": "wild " + reg, "redirect_uris": []string{reg}, "token_endpoint_auth_method": "none"})
		if r.status == http.StatusBadRequest {
			continue
		}
		q := url.Values{"response_type": {"code"}, "client_id": {r.body["client_id"].(string)}, "redirect_uri": {attack},
			"code_challenge": {validChallenge}, "code_challenge_method": {"S256"}}
		if resp, _ := get(t, s.inst.URL+"/authorize?"+q.Encode(), nil); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("registered %s matched %s: %d %q", reg, attack, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	// A chosen client_id (here an existing client's) is ignored: the
	// server issues its own, unpredictable one. A chosen secret is never
	// used.
	victim := s.publicClient(t, "https://app.example.com/cb")
	for _, chosen := range []string{victim, "admin", "authd"} {
		r := s.registerRaw(t, map[string]any{
			"client_id": chosen, "client_secret": "attacker-chosen-secret", "client_name": "evil " + chosen,
			"redirect_uris": []string{"https://attacker.example/cb"}, "token_endpoint_auth_method": "client_secret_basic",
		})
		if r.status == http.StatusCreated {
			if r.body["client_id"] == chosen || r.body["client_secret"] == "attacker-chosen-secret" {
				t.Fatalf("registration let the client choose its id or secret: %s", r.raw)
			}
		} else if r.status != http.StatusBadRequest {
			t.Fatalf("chosen client_id: %d %s", r.status, r.raw)
		}
	}
	var uris string
	if err := s.db.QueryRow(context.Background(), `SELECT metadata->>'redirect_uris' FROM clients WHERE id = $1`, victim).Scan(&uris); err != nil {
		t.Fatal(err)
	}
	if uris != `["https://app.example.com/cb"]` {
		t.Fatalf("the victim's registration changed: %s", uris)
	}
}

// TestSecurityRegistrationManagement: RFC 7592 with a stolen, wrong or
// foreign registration access token. Client B's token cannot read, change
// or delete client A; A's token cannot rewrite B through the body; a
// malicious update is refused; unknown ids and a wrong token look the
// same (401 invalid_token, no enumeration). None of this changes a row.
// Deleting A ends everything issued to it (nothing outlives its client),
// and its registration token dies with it.
func TestSecurityRegistrationManagement(t *testing.T) {
	s := newSecEnv(t, nil)
	regA := registerClient(t, s.inst.URL, map[string]any{
		"client_name": "A", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "client_secret_basic",
		"grant_types": []string{"authorization_code", "refresh_token", "client_credentials"},
	})
	regB := registerClient(t, s.inst.URL, map[string]any{
		"client_name": "B", "redirect_uris": []string{"https://b.example.com/cb"}, "token_endpoint_auth_method": "client_secret_basic",
	})
	idA, ratA, secretA := regA["client_id"].(string), regA["registration_access_token"].(string), regA["client_secret"].(string)
	idB, ratB := regB["client_id"].(string), regB["registration_access_token"].(string)
	if ratA == "" || ratB == "" {
		t.Fatal("no registration access tokens")
	}
	snapshot := func() string {
		var out string
		if err := s.db.QueryRow(context.Background(), `SELECT string_agg(id || secret_hash || registration_token_hash || metadata::text || updated_at::text, '|' ORDER BY id) FROM clients`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	update := func(id string, redirect string) []byte {
		b, _ := json.Marshal(map[string]any{"client_id": id, "client_name": "pwned", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "client_secret_basic"})
		return b
	}
	before := snapshot()
	for _, a := range []struct {
		name, method, path, bearer string
		body                       []byte
		status                     int
		code                       string
	}{
		{"read A with B's token", http.MethodGet, "/register/" + idA, ratB, nil, 401, "invalid_token"},
		{"read A without token", http.MethodGet, "/register/" + idA, "", nil, 401, "invalid_token"},
		{"read A with a prefix of its token", http.MethodGet, "/register/" + idA, ratA[:len(ratA)-1], nil, 401, "invalid_token"},
		{"read unknown", http.MethodGet, "/register/00000000-0000-0000-0000-000000000000", ratA, nil, 401, "invalid_token"},
		{"read sql id", http.MethodGet, "/register/" + url.PathEscape("' OR 1=1 --"), ratA, nil, 401, "invalid_token"},
		{"update A with B's token", http.MethodPut, "/register/" + idA, ratB, update(idA, "https://attacker.example/cb"), 401, "invalid_token"},
		{"update B through A's token", http.MethodPut, "/register/" + idA, ratA, update(idB, "https://attacker.example/cb"), 400, "invalid_request"},
		{"update A to a script URI", http.MethodPut, "/register/" + idA, ratA, update(idA, "javascript:alert(1)"), 400, "invalid_redirect_uri"},
		{"update A choosing a secret", http.MethodPut, "/register/" + idA, ratA, func() []byte {
			b, _ := json.Marshal(map[string]any{"client_id": idA, "client_secret": "chosen", "redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "client_secret_basic"})
			return b
		}(), 400, "invalid_request"},
		{"delete A with B's token", http.MethodDelete, "/register/" + idA, ratB, nil, 401, "invalid_token"},
		{"delete A with the client secret", http.MethodDelete, "/register/" + idA, secretA, nil, 401, "invalid_token"},
	} {
		r := s.jsonRequest(t, a.method, a.path, a.bearer, a.body)
		wantOAuthError(t, a.name, r, a.status, a.code)
		if a.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without a challenge", a.name)
		}
	}
	if after := snapshot(); after != before {
		t.Fatal("a refused management request changed a client row")
	}

	// A has tokens; deleting A ends all of them.
	conf := s.oauthConfig(idA, secretA, "http://127.0.0.1:7201/cb")
	tok := s.tokens(t, conf)
	// A client_credentials call puts A in the client cache.
	cc := url.Values{"grant_type": {"client_credentials"}, "resource": {mcpResource}}
	if r := s.post(t, "/token", cc, idA, secretA); r.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %s", r.status, r.raw)
	}
	if r := s.jsonRequest(t, http.MethodDelete, "/register/"+idA, ratA, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete A: %d %s", r.status, r.raw)
	}
	// The sign-in flow (which caches clients) forgets A at once: an error
	// page, no redirect anywhere.
	resp, err := noRedirectClient.Get(conf.AuthCodeURL("after-delete", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("/authorize for a deleted client: %d Location=%q, want a 400 error page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if s.active(t, tok.AccessToken) {
		t.Error("access token of a deleted client still active")
	}
	r := s.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, idA, secretA)
	wantOAuthError(t, "client_credentials of a deleted client", s.post(t, "/token", cc, idA, secretA), 401, "invalid_client")
	wantOAuthError(t, "refresh of a deleted client", r, 401, "invalid_client")
	for _, tbl := range []string{"grants", "refresh_tokens", "access_tokens", "auth_codes", "consents", "auth_requests"} {
		if n := s.count(t, "SELECT count(*) FROM "+tbl+" WHERE client_id = $1", idA); n != 0 {
			t.Errorf("%d %s rows outlive their client", n, tbl)
		}
	}
	wantOAuthError(t, "token of a deleted client", s.jsonRequest(t, http.MethodGet, "/register/"+idA, ratA, nil), 401, "invalid_token")
	if r := s.jsonRequest(t, http.MethodGet, "/register/"+idB, ratB, nil); r.status != http.StatusOK {
		t.Fatalf("B after A's deletion: %d", r.status)
	}
}

// TestSecurityDynamicClientCredentialsOff: with open registration (the
// default), an attacker registers a confidential client with the
// client_credentials grant to get tokens for the MCP server without ever
// signing in (no upstream login, no allowlist). By default that is
// refused at registration with invalid_client_metadata, nothing is
// stored, and a client registered without the grant cannot use it at
// /token either.
func TestSecurityDynamicClientCredentialsOff(t *testing.T) {
	s := newSecEnv(t, map[string]string{"AUTHD_REGISTRATION_ALLOW_CLIENT_CREDENTIALS": ""}) // the default
	before := s.rowCounts(t)
	for _, grants := range [][]string{{"client_credentials"}, {"authorization_code", "refresh_token", "client_credentials"}} {
		r := s.registerRaw(t, map[string]any{
			"client_name": "machine", "redirect_uris": []string{"http://127.0.0.1:7301/cb"},
			"grant_types": grants, "token_endpoint_auth_method": "client_secret_basic",
		})
		wantOAuthError(t, fmt.Sprintf("register with grant_types %v", grants), r, http.StatusBadRequest, "invalid_client_metadata")
		if _, ok := r.body["client_secret"]; ok {
			t.Errorf("refused registration returned a secret: %s", r.raw)
		}
	}
	s.assertUnchanged(t, before, "refused client_credentials registrations")
	r := s.registerRaw(t, map[string]any{
		"client_name": "app", "redirect_uris": []string{"http://127.0.0.1:7301/cb"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	if r.status != http.StatusCreated {
		t.Fatalf("register an ordinary confidential client: %d %s", r.status, r.raw)
	}
	id, secret := r.body["client_id"].(string), r.body["client_secret"].(string)
	tr := s.post(t, "/token", url.Values{"grant_type": {"client_credentials"}, "resource": {mcpResource}}, id, secret)
	wantOAuthError(t, "client_credentials by a client registered without it", tr, http.StatusBadRequest, "unauthorized_client")
	if _, ok := tr.body["access_token"]; ok {
		t.Fatal("an access token was issued")
	}
}
