package register_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

// claudeMetadata is what claude.ai sends when it connects to an MCP server.
func claudeMetadata() map[string]any {
	return map[string]any{
		"client_name":                "Claude",
		"redirect_uris":              []string{"https://claude.ai/api/mcp/auth_callback", "http://localhost:33418/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
		"scope":                      "mcp:tools  mcp:tools profile",
		"software_id":                "claude-ai",
		"unknown_extension":          map[string]any{"ignored": true},
	}
}

func TestPublicClientLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	now := e.clock.Now()

	resp := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated)
	if cc := resp.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	reg := resp.registration(t)
	if _, err := uuid.Parse(reg.ClientID); err != nil {
		t.Errorf("client_id %q is not a uuid", reg.ClientID)
	}
	raw := resp.json(t)
	for _, absent := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := raw[absent]; ok {
			t.Errorf("public client response contains %s", absent)
		}
	}
	if reg.ClientIDIssuedAt != now.Unix() {
		t.Errorf("client_id_issued_at = %d, want %d", reg.ClientIDIssuedAt, now.Unix())
	}
	if !strings.HasPrefix(reg.RegistrationAccessToken, oauth.PrefixRegistrationToken) {
		t.Errorf("registration_access_token %q lacks the authd prefix", reg.RegistrationAccessToken)
	}
	if want := e.srv.URL + "/register/" + reg.ClientID; reg.RegistrationClientURI != want {
		t.Errorf("registration_client_uri = %q, want %q", reg.RegistrationClientURI, want)
	}
	if reg.TokenEndpointAuthMethod != "none" || reg.ClientName != "Claude" ||
		!slices.Equal(reg.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
		!slices.Equal(reg.ResponseTypes, []string{"code"}) ||
		!slices.Equal(reg.RedirectURIs, []string{"https://claude.ai/api/mcp/auth_callback", "http://localhost:33418/callback"}) {
		t.Errorf("registered metadata not echoed: %s", resp.body)
	}
	if reg.Scope != "mcp:tools profile" {
		t.Errorf("scope = %q, want normalised %q", reg.Scope, "mcp:tools profile")
	}
	if _, ok := raw["unknown_extension"]; ok {
		t.Error("unknown field echoed back")
	}

	row := e.client(reg.ClientID)
	if row.Source != store.SourceDynamic || row.SecretHash != "" || row.SecretExpiresAt != nil {
		t.Errorf("stored row: source %q, secret hash %q, secret expiry %v", row.Source, row.SecretHash, row.SecretExpiresAt)
	}
	if row.RegistrationTokenHash != oauth.Digest(reg.RegistrationAccessToken) {
		t.Error("registration access token not stored as its digest")
	}
	assertNoClearSecrets(t, row, reg.RegistrationAccessToken)
	if row.ExpiresAt == nil || !row.ExpiresAt.Equal(now.Add(30*24*time.Hour)) {
		t.Errorf("ExpiresAt = %v, want now + idle lifetime", row.ExpiresAt)
	}
	if row.Fingerprint == "" {
		t.Error("public client stored without a fingerprint")
	}

	// RFC 7592 read.
	path := "/register/" + reg.ClientID
	got := e.do(req{method: http.MethodGet, path: path, token: reg.RegistrationAccessToken}).mustStatus(t, http.StatusOK)
	if cc := got.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET Cache-Control = %q", cc)
	}
	read := got.registration(t)
	if read.ClientID != reg.ClientID || read.RegistrationAccessToken != reg.RegistrationAccessToken ||
		read.RegistrationClientURI != reg.RegistrationClientURI || read.ClientName != "Claude" ||
		!slices.Equal(read.RedirectURIs, reg.RedirectURIs) || read.ClientIDIssuedAt != reg.ClientIDIssuedAt {
		t.Errorf("GET returned %s", got.body)
	}

	// RFC 7592 update: replaces the metadata; omitted fields go.
	e.clock.Advance(time.Hour)
	upd := e.do(req{method: http.MethodPut, path: path, token: reg.RegistrationAccessToken, body: map[string]any{
		"client_id":                  reg.ClientID,
		"client_name":                "Claude (renamed)",
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
		"application_type":           "native",
		// RFC 7592 says these must not be sent; clients echoing them are tolerated.
		"registration_access_token": reg.RegistrationAccessToken,
		"client_id_issued_at":       reg.ClientIDIssuedAt,
	}}).mustStatus(t, http.StatusOK).registration(t)
	if upd.ClientName != "Claude (renamed)" || !slices.Equal(upd.RedirectURIs, []string{"http://127.0.0.1/callback"}) ||
		upd.Scope != "" || upd.ApplicationType != "native" || upd.ClientSecret != "" {
		t.Errorf("PUT response: %+v", upd)
	}
	if upd.RegistrationAccessToken != reg.RegistrationAccessToken {
		t.Error("registration access token changed although rotation is off")
	}
	row = e.client(reg.ClientID)
	if row.Metadata.ClientName != "Claude (renamed)" || row.Metadata.Scope != "" || row.Fingerprint != "" {
		t.Errorf("stored after PUT: %+v (fingerprint %q)", row.Metadata, row.Fingerprint)
	}
	if row.ExpiresAt == nil || !row.ExpiresAt.Equal(e.clock.Now().Add(30*24*time.Hour)) {
		t.Errorf("ExpiresAt after PUT = %v, want slid forward", row.ExpiresAt)
	}
	if !row.CreatedAt.Equal(now) {
		t.Errorf("CreatedAt changed by PUT: %v", row.CreatedAt)
	}

	// RFC 7592 delete.
	del := e.do(req{method: http.MethodDelete, path: path, token: reg.RegistrationAccessToken})
	del.mustStatus(t, http.StatusNoContent)
	if _, err := e.st.GetClient(context.Background(), reg.ClientID, e.clock.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("client still present after DELETE: %v", err)
	}
	gone := e.do(req{method: http.MethodGet, path: path, token: reg.RegistrationAccessToken}).mustStatus(t, http.StatusUnauthorized)
	if code := gone.oauthError(t); code != oauth.CodeInvalidToken {
		t.Errorf("GET after DELETE: error %q", code)
	}
}

func TestConfidentialClientLifecycle(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.SecretLifetime = 7 * 24 * time.Hour
	p.RotateRegistrationToken = true
	e := newEnv(t, p, nil)
	now := e.clock.Now()

	// No token_endpoint_auth_method: RFC 7591's default client_secret_basic.
	resp := e.register(map[string]any{
		"client_name":   "Acme agent",
		"redirect_uris": []string{"https://agent.example.com/oauth/callback"},
		"grant_types":   []string{"authorization_code", "refresh_token", "client_credentials"},
		"contacts":      []string{"ops@example.com"},
		"client_uri":    "https://agent.example.com",
		"logo_uri":      "https://agent.example.com/logo.png",
	}).mustStatus(t, http.StatusCreated)
	reg := resp.registration(t)
	if reg.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Errorf("token_endpoint_auth_method = %q, want the default client_secret_basic", reg.TokenEndpointAuthMethod)
	}
	if !strings.HasPrefix(reg.ClientSecret, oauth.PrefixClientSecret) {
		t.Fatalf("client_secret %q missing or without prefix", reg.ClientSecret)
	}
	if reg.ClientSecretExpiresAt == nil || *reg.ClientSecretExpiresAt != now.Add(7*24*time.Hour).Unix() {
		t.Errorf("client_secret_expires_at = %v, want now + 7 days", reg.ClientSecretExpiresAt)
	}
	row := e.client(reg.ClientID)
	if !oauth.VerifySecret(row.SecretHash, reg.ClientSecret) {
		t.Error("stored secret hash does not verify the issued secret")
	}
	if row.Fingerprint != "" {
		t.Error("confidential client stored with a fingerprint: it must never be shared")
	}
	assertNoClearSecrets(t, row, reg.ClientSecret, reg.RegistrationAccessToken)

	path := "/register/" + reg.ClientID
	read := e.do(req{method: http.MethodGet, path: path, token: reg.RegistrationAccessToken}).mustStatus(t, http.StatusOK)
	if m := read.json(t); m["client_secret"] != nil || m["client_secret_expires_at"] == nil {
		t.Errorf("GET must not return the secret (only its expiry): %s", read.body)
	}

	update := map[string]any{
		"client_id":                  reg.ClientID,
		"client_secret":              reg.ClientSecret,
		"client_name":                "Acme agent v2",
		"redirect_uris":              []string{"https://agent.example.com/oauth/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "client_secret_post",
	}
	// A wrong echoed secret is refused and changes nothing.
	wrong := map[string]any{}
	for k, v := range update {
		wrong[k] = v
	}
	wrong["client_secret"] = "authd_cs_not-the-secret"
	bad := e.do(req{method: http.MethodPut, path: path, token: reg.RegistrationAccessToken, body: wrong}).mustStatus(t, http.StatusBadRequest)
	if code := bad.oauthError(t); code != oauth.CodeInvalidRequest {
		t.Errorf("wrong client_secret: error %q, want invalid_request", code)
	}
	if e.client(reg.ClientID).Metadata.ClientName != "Acme agent" {
		t.Fatal("rejected PUT changed the client")
	}

	// A valid update keeps the unexpired secret and rotates the token.
	upd := e.do(req{method: http.MethodPut, path: path, token: reg.RegistrationAccessToken, body: update}).
		mustStatus(t, http.StatusOK).registration(t)
	if upd.ClientSecret != "" {
		t.Error("new secret issued although the current one is valid")
	}
	if upd.RegistrationAccessToken == "" || upd.RegistrationAccessToken == reg.RegistrationAccessToken {
		t.Fatal("registration access token not rotated")
	}
	if !oauth.VerifySecret(e.client(reg.ClientID).SecretHash, reg.ClientSecret) {
		t.Error("secret changed by an update that did not issue one")
	}
	e.do(req{method: http.MethodGet, path: path, token: reg.RegistrationAccessToken}).mustStatus(t, http.StatusUnauthorized)
	rat := upd.RegistrationAccessToken

	// Once the secret has expired, an update issues a new one.
	e.clock.Advance(8 * 24 * time.Hour)
	update["client_secret"] = nil
	renewed := e.do(req{method: http.MethodPut, path: path, token: rat, body: update}).mustStatus(t, http.StatusOK).registration(t)
	if !strings.HasPrefix(renewed.ClientSecret, oauth.PrefixClientSecret) || renewed.ClientSecret == reg.ClientSecret {
		t.Fatalf("no new secret after expiry: %+v", renewed)
	}
	if renewed.ClientSecretExpiresAt == nil || *renewed.ClientSecretExpiresAt != e.clock.Now().Add(7*24*time.Hour).Unix() {
		t.Errorf("renewed client_secret_expires_at = %v", renewed.ClientSecretExpiresAt)
	}
	row = e.client(reg.ClientID)
	if oauth.VerifySecret(row.SecretHash, reg.ClientSecret) || !oauth.VerifySecret(row.SecretHash, renewed.ClientSecret) {
		t.Error("stored hash does not match the renewed secret only")
	}
	assertNoClearSecrets(t, row, renewed.ClientSecret, renewed.RegistrationAccessToken)

	// Becoming public drops the secret.
	update["token_endpoint_auth_method"] = "none"
	pub := e.do(req{method: http.MethodPut, path: path, token: renewed.RegistrationAccessToken, body: update}).mustStatus(t, http.StatusOK)
	if m := pub.json(t); m["client_secret_expires_at"] != nil || m["client_secret"] != nil {
		t.Errorf("public client response carries secret fields: %s", pub.body)
	}
	if row := e.client(reg.ClientID); row.SecretHash != "" || row.SecretExpiresAt != nil {
		t.Error("secret kept after switching to token_endpoint_auth_method none")
	}

	e.do(req{method: http.MethodDelete, path: path, token: pub.registration(t).RegistrationAccessToken}).mustStatus(t, http.StatusNoContent)
	if n := e.count(); n != 0 {
		t.Fatalf("%d clients left after DELETE", n)
	}
}

func TestSecretsDoNotExpireByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	reg := e.register(map[string]any{
		"redirect_uris":              []string{"https://app.example.com/cb"},
		"token_endpoint_auth_method": "client_secret_post",
	}).mustStatus(t, http.StatusCreated).registration(t)
	if reg.ClientSecret == "" || reg.ClientSecretExpiresAt == nil || *reg.ClientSecretExpiresAt != 0 {
		t.Fatalf("want a secret with client_secret_expires_at 0, got %+v", reg)
	}
	if row := e.client(reg.ClientID); row.SecretExpiresAt != nil {
		t.Errorf("SecretExpiresAt = %v, want nil", row.SecretExpiresAt)
	}
}

func TestRegisterRejectsInvalidMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	web := "https://app.example.com/cb"
	base := func(kv ...any) map[string]any {
		m := map[string]any{"redirect_uris": []string{web}, "token_endpoint_auth_method": "none"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	redirect := func(uri string, kv ...any) map[string]any {
		return base(append([]any{"redirect_uris", []string{uri}}, kv...)...)
	}
	cases := []struct {
		name        string
		body        any
		contentType string
		status      int
		code        string
		inDesc      string // the description must name this (the offending URI)
	}{
		{name: "implicit grant", body: base("grant_types", []string{"implicit"}), code: "invalid_client_metadata"},
		{name: "password grant", body: base("grant_types", []string{"authorization_code", "password"}), code: "invalid_client_metadata"},
		{name: "device code grant", body: base("grant_types", []string{"urn:ietf:params:oauth:grant-type:device_code"}), code: "invalid_client_metadata"},
		{name: "refresh_token alone", body: base("grant_types", []string{"refresh_token"}), code: "invalid_client_metadata"},
		{name: "response type token", body: base("response_types", []string{"token"}), code: "invalid_client_metadata"},
		{name: "response type code id_token", body: base("response_types", []string{"code id_token"}), code: "invalid_client_metadata"},
		{name: "code without authorization_code", body: base("token_endpoint_auth_method", "client_secret_basic",
			"grant_types", []string{"client_credentials"}, "response_types", []string{"code"}), code: "invalid_client_metadata"},
		{name: "unknown auth method", body: base("token_endpoint_auth_method", "private_key_jwt"), code: "invalid_client_metadata"},
		{name: "client_credentials for public client", body: base("grant_types", []string{"client_credentials"}), code: "invalid_client_metadata"},
		{name: "unknown application type", body: base("application_type", "desktop"), code: "invalid_client_metadata"},
		{name: "missing redirect_uris", body: base("redirect_uris", nil), code: "invalid_redirect_uri"},
		{name: "empty redirect_uris", body: base("redirect_uris", []string{}), code: "invalid_redirect_uri"},
		{name: "http non-loopback", body: redirect("http://app.example.com/cb"), code: "invalid_redirect_uri", inDesc: "http://app.example.com/cb"},
		{name: "javascript scheme", body: redirect("javascript:alert(1)//"), code: "invalid_redirect_uri", inDesc: "javascript:alert(1)//"},
		{name: "javascript scheme upper case", body: redirect("JavaScript:alert(1)//"), code: "invalid_redirect_uri", inDesc: "JavaScript:alert(1)//"},
		{name: "data scheme", body: redirect("data:text/html,<script>x</script>"), code: "invalid_redirect_uri", inDesc: "data:text/html"},
		{name: "file scheme", body: redirect("file:///etc/passwd"), code: "invalid_redirect_uri", inDesc: "file:///etc/passwd"},
		{name: "userinfo", body: redirect("https://app.example.com@evil.example/cb"), code: "invalid_redirect_uri", inDesc: "evil.example"},
		{name: "fragment", body: redirect("https://app.example.com/cb#frag"), code: "invalid_redirect_uri", inDesc: "https://app.example.com/cb#frag"},
		{name: "upper-case scheme", body: redirect("HTTPS://app.example.com/cb"), code: "invalid_redirect_uri", inDesc: "HTTPS://app.example.com/cb"},
		{name: "relative", body: redirect("/cb"), code: "invalid_redirect_uri", inDesc: "/cb"},
		{name: "web app with private-use scheme", body: redirect("com.example.app:/oauth", "application_type", "web"), code: "invalid_redirect_uri", inDesc: "com.example.app:/oauth"},
		{name: "one bad among good", body: base("redirect_uris", []string{web, "http://evil.example/cb"}), code: "invalid_redirect_uri", inDesc: "http://evil.example/cb"},
		{name: "redirect_uris as string", body: base("redirect_uris", web), code: "invalid_client_metadata", inDesc: "redirect_uris"},
		{name: "redirect_uris with number", body: base("redirect_uris", []any{web, 7}), code: "invalid_client_metadata", inDesc: "redirect_uris"},
		{name: "redirect_uris with null", body: base("redirect_uris", []any{web, nil}), code: "invalid_client_metadata", inDesc: "redirect_uris"},
		{name: "grant_types as string", body: base("grant_types", "authorization_code"), code: "invalid_client_metadata", inDesc: "grant_types"},
		{name: "client_name as number", body: base("client_name", 42), code: "invalid_client_metadata", inDesc: "client_name"},
		{name: "scope as array", body: base("scope", []string{"a", "b"}), code: "invalid_client_metadata", inDesc: "scope"},
		{name: "contacts as object", body: base("contacts", map[string]string{"a": "b"}), code: "invalid_client_metadata", inDesc: "contacts"},
		{name: "too many redirect URIs", body: base("redirect_uris", []string{web + "1", web + "2", web + "3", web + "4"}), code: "invalid_client_metadata"},
		{name: "too many contacts", body: base("contacts", []string{"a@example.com", "b@example.com", "c@example.com"}), code: "invalid_client_metadata"},
		{name: "empty contact", body: base("contacts", []string{""}), code: "invalid_client_metadata"},
		{name: "client_uri javascript", body: base("client_uri", "javascript:alert(1)"), code: "invalid_client_metadata", inDesc: "client_uri"},
		{name: "logo_uri http", body: base("logo_uri", "http://cdn.example.com/logo.png"), code: "invalid_client_metadata", inDesc: "logo_uri"},
		{name: "logo_uri data", body: base("logo_uri", "data:image/png;base64,AAAA"), code: "invalid_client_metadata", inDesc: "logo_uri"},
		{name: "tos_uri userinfo", body: base("tos_uri", "https://good.example@evil.example/tos"), code: "invalid_client_metadata", inDesc: "tos_uri"},
		{name: "policy_uri relative", body: base("policy_uri", "/privacy"), code: "invalid_client_metadata", inDesc: "policy_uri"},
		{name: "client_name control character", body: base("client_name", "Claude\nAdmin"), code: "invalid_client_metadata", inDesc: "client_name"},
		{name: "client_name right-to-left override", body: base("client_name", "Good\u202eliveD"), code: "invalid_client_metadata", inDesc: "client_name"},
		{name: "client_name too long", body: base("client_name", strings.Repeat("x", 201)), code: "invalid_client_metadata", inDesc: "client_name"},
		{name: "scope with quote", body: base("scope", `read "write"`), code: "invalid_client_metadata", inDesc: "scope"},
		{name: "malformed JSON", body: `{"redirect_uris": [`, code: "invalid_request"},
		{name: "JSON array", body: `[]`, code: "invalid_request"},
		{name: "JSON null", body: `null`, code: "invalid_request"},
		{name: "trailing data", body: `{} {}`, code: "invalid_request"},
		{name: "form encoded", body: "redirect_uris=https://app.example.com/cb", contentType: "application/x-www-form-urlencoded", code: "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.count()
			resp := e.do(req{method: http.MethodPost, path: "/register", body: tc.body, contentType: tc.contentType})
			want := tc.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			resp.mustStatus(t, want)
			if code := resp.oauthError(t); code != tc.code {
				t.Errorf("error = %q, want %q (%s)", code, tc.code, resp.body)
			}
			desc, _ := resp.json(t)["error_description"].(string)
			if desc == "" || !strings.Contains(desc, tc.inDesc) {
				t.Errorf("error_description %q does not mention %q", desc, tc.inDesc)
			}
			if after := e.count(); after != before {
				t.Errorf("rejected registration wrote a client (%d -> %d)", before, after)
			}
		})
	}
}

func TestRegisterAcceptsMCPClientShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		// Cursor: a private-use scheme without application_type.
		{"private-use scheme, no application_type", map[string]any{
			"client_name": "Cursor", "redirect_uris": []string{"cursor://anysphere.cursor-retrieval/oauth/user-example/callback"},
			"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		}},
		{"native app with loopback and private-use", map[string]any{
			"application_type": "native", "redirect_uris": []string{"http://127.0.0.1/cb", "http://[::1]/cb", "com.example.app:/oauth"},
			"token_endpoint_auth_method": "none",
		}},
		{"web app with https and loopback", map[string]any{
			"application_type": "web", "redirect_uris": []string{"https://chatgpt.com/connector_platform_oauth_redirect", "http://localhost:6274/oauth/callback"},
			"token_endpoint_auth_method": "none", "contacts": nil, "logo_uri": "http://localhost:6274/logo.svg",
		}},
		{"confidential client_credentials only", map[string]any{
			"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_post",
		}},
		{"charset parameter", map[string]any{"redirect_uris": []string{"https://x.example/cb"}, "token_endpoint_auth_method": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(req{method: http.MethodPost, path: "/register", body: tc.body, contentType: "application/json; charset=utf-8"})
			reg := resp.mustStatus(t, http.StatusCreated).registration(t)
			row := e.client(reg.ClientID)
			if got, want := row.Metadata.ApplicationType, fmt.Sprint(tc.body["application_type"]); tc.body["application_type"] != nil && got != want {
				t.Errorf("application_type stored %q, want %q", got, want)
			}
			if tc.body["application_type"] == nil && row.Metadata.ApplicationType != "" {
				t.Errorf("application_type %q stored although none was sent", row.Metadata.ApplicationType)
			}
			if slices.Equal(reg.GrantTypes, []string{"client_credentials"}) && len(reg.ResponseTypes) != 0 {
				t.Errorf("client_credentials client got response_types %v", reg.ResponseTypes)
			}
		})
	}
}

func TestRedirectURIAllowlist(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.AllowedRedirectURIs = []string{"loopback", "https://claude.ai/api/mcp/*", "https://chatgpt.com/connector_platform_oauth_redirect", "cursor:*"}
	e := newEnv(t, p, nil)
	for _, uri := range []string{
		"http://127.0.0.1:1234/cb", "http://localhost/cb", "https://claude.ai/api/mcp/auth_callback",
		"https://chatgpt.com/connector_platform_oauth_redirect", "cursor://anysphere.cursor-retrieval/oauth/cb",
	} {
		e.register(map[string]any{"redirect_uris": []string{uri}, "token_endpoint_auth_method": "none"}).mustStatus(t, http.StatusCreated)
	}
	for _, uri := range []string{
		"https://claude.ai.evil.example/api/mcp/auth_callback", "https://claude.ai/api/other", "https://evil.example/cb",
		"https://chatgpt.com/connector_platform_oauth_redirect2", "com.evil.app:/cb",
	} {
		before := e.count()
		resp := e.register(map[string]any{"redirect_uris": []string{uri}, "token_endpoint_auth_method": "none"}).mustStatus(t, http.StatusBadRequest)
		if code := resp.oauthError(t); code != oauth.CodeInvalidRedirectURI {
			t.Errorf("%s: error %q", uri, code)
		}
		if !strings.Contains(string(resp.body), uri) {
			t.Errorf("%s: description does not name the URI: %s", uri, resp.body)
		}
		if e.count() != before {
			t.Errorf("%s: a client was written", uri)
		}
	}
}

func TestInitialAccessToken(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.InitialAccessToken = "iat-0123456789abcdef"
	e := newEnv(t, p, nil)
	body := claudeMetadata()
	for _, tc := range []struct{ name, token string }{{"missing", ""}, {"wrong", "iat-0123456789abcdeX"}, {"prefix", "iat-0123456789"}} {
		resp := e.do(req{method: http.MethodPost, path: "/register", body: body, token: tc.token}).mustStatus(t, http.StatusUnauthorized)
		if code := resp.oauthError(t); code != oauth.CodeInvalidToken {
			t.Errorf("%s token: error %q", tc.name, code)
		}
		if h := resp.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
			t.Errorf("%s token: WWW-Authenticate = %q", tc.name, h)
		}
		if n := e.count(); n != 0 {
			t.Fatalf("%s token: %d clients written", tc.name, n)
		}
	}
	e.do(req{method: http.MethodPost, path: "/register", body: body, token: p.InitialAccessToken}).mustStatus(t, http.StatusCreated)
}

// TestManagementAuthIsUniform: a wrong, missing or foreign registration
// access token and an unknown or unmanageable client all get the same 401,
// so the endpoint does not reveal which client ids exist.
func TestManagementAuthIsUniform(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	a := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated).registration(t)
	other := claudeMetadata()
	other["client_name"] = "Other"
	b := e.register(other).mustStatus(t, http.StatusCreated).registration(t)
	if err := register.SyncStaticClients(context.Background(), e.st, []register.StaticClient{{
		ID: "first-party", Name: "First party", RedirectURIs: []string{"https://app.example.com/cb"},
	}}, e.clock.Now()); err != nil {
		t.Fatal(err)
	}

	cases := []struct{ name, id, token string }{
		{"wrong token", a.ClientID, oauth.NewToken(oauth.PrefixRegistrationToken)},
		{"missing token", a.ClientID, ""},
		{"another client's token", a.ClientID, b.RegistrationAccessToken},
		{"unknown client", uuid.NewString(), a.RegistrationAccessToken},
		{"unknown non-uuid id", "no-such-client", a.RegistrationAccessToken},
		{"overlong id", strings.Repeat("a", 300), a.RegistrationAccessToken},
		{"config client", "first-party", a.RegistrationAccessToken},
	}
	var first *response
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		for _, tc := range cases {
			var body any
			if method == http.MethodPut {
				body = map[string]any{"client_id": tc.id, "redirect_uris": []string{"https://evil.example/cb"}, "token_endpoint_auth_method": "none"}
			}
			resp := e.do(req{method: method, path: "/register/" + tc.id, token: tc.token, body: body})
			resp.mustStatus(t, http.StatusUnauthorized)
			if code := resp.oauthError(t); code != oauth.CodeInvalidToken {
				t.Errorf("%s %s: error %q", method, tc.name, code)
			}
			if h := resp.header.Get("WWW-Authenticate"); h != `Bearer error="invalid_token"` {
				t.Errorf("%s %s: WWW-Authenticate = %q", method, tc.name, h)
			}
			if first == nil {
				first = &resp
			} else if string(resp.body) != string(first.body) {
				t.Errorf("%s %s: body %s differs from %s", method, tc.name, resp.body, first.body)
			}
		}
	}
	// Nothing was changed or deleted.
	if n := e.count(); n != 3 {
		t.Fatalf("%d clients, want 3", n)
	}
	if got := e.client(a.ClientID).Metadata.RedirectURIs; !slices.Equal(got, a.RedirectURIs) {
		t.Errorf("client a changed: %v", got)
	}
	// And a's own token still works.
	e.do(req{method: http.MethodGet, path: "/register/" + a.ClientID, token: a.RegistrationAccessToken}).mustStatus(t, http.StatusOK)
}

func TestUpdateRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	reg := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated).registration(t)
	path := "/register/" + reg.ClientID
	valid := func(kv ...any) map[string]any {
		m := map[string]any{"client_id": reg.ClientID, "redirect_uris": []string{"https://claude.ai/api/mcp/auth_callback"}, "token_endpoint_auth_method": "none"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"different client_id", valid("client_id", uuid.NewString()), 400, "invalid_request"},
		{"missing client_id", valid("client_id", nil), 400, "invalid_request"},
		{"secret for a public client", valid("client_secret", "authd_cs_guess"), 400, "invalid_request"},
		{"javascript redirect", valid("redirect_uris", []string{"javascript:alert(1)"}), 400, "invalid_redirect_uri"},
		{"implicit grant", valid("grant_types", []string{"implicit"}), 400, "invalid_client_metadata"},
		{"wrong type", valid("redirect_uris", "https://claude.ai/api/mcp/auth_callback"), 400, "invalid_client_metadata"},
		{"too large", valid("padding", strings.Repeat("x", register.DefaultMaxBodyBytes)), 413, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(req{method: http.MethodPut, path: path, token: reg.RegistrationAccessToken, body: tc.body}).mustStatus(t, tc.status)
			if code := resp.oauthError(t); code != tc.code {
				t.Errorf("error %q, want %q", code, tc.code)
			}
			row := e.client(reg.ClientID)
			if !slices.Equal(row.Metadata.RedirectURIs, reg.RedirectURIs) || row.Metadata.ClientName != "Claude" {
				t.Errorf("rejected PUT changed the client: %+v", row.Metadata)
			}
		})
	}
}

func TestPublicReRegistrationIsShared(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	const egress = "160.79.104.10:40000"
	first := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: egress}).
		mustStatus(t, http.StatusCreated).registration(t)

	// claude.ai connects again, from a neighbouring egress address and with
	// its lists in another order: the same client, no new row.
	e.clock.Advance(24 * time.Hour)
	again := claudeMetadata()
	again["redirect_uris"] = []string{"http://localhost:33418/callback", "https://claude.ai/api/mcp/auth_callback"}
	again["scope"] = "mcp:tools profile"
	for range 3 {
		resp := e.do(req{method: http.MethodPost, path: "/register", body: again, remote: "160.79.104.99:1"}).mustStatus(t, http.StatusCreated)
		reg := resp.registration(t)
		if reg.ClientID != first.ClientID {
			t.Fatalf("re-registration got a new client %s, want %s", reg.ClientID, first.ClientID)
		}
		if m := resp.json(t); m["registration_access_token"] != nil || m["registration_client_uri"] != nil || m["client_secret"] != nil {
			t.Errorf("shared registration handed out credentials: %s", resp.body)
		}
	}
	if n := e.count(); n != 1 {
		t.Fatalf("%d clients after identical re-registrations, want 1", n)
	}
	// Sharing takes nothing from the first registrant: its registration
	// access token still manages the client (issue 17).
	e.do(req{method: http.MethodGet, path: "/register/" + first.ClientID, token: first.RegistrationAccessToken}).mustStatus(t, http.StatusOK)
	row := e.client(first.ClientID)
	if row.RegistrationTokenHash != oauth.Digest(first.RegistrationAccessToken) {
		t.Error("sharing changed the first registrant's registration access token")
	}
	if row.ExpiresAt == nil || !row.ExpiresAt.Equal(e.clock.Now().Add(30*24*time.Hour)) {
		t.Errorf("re-registration did not slide the idle expiry: %v", row.ExpiresAt)
	}

	// Different metadata, another network, or a confidential client: new rows.
	other := claudeMetadata()
	other["client_name"] = "Claude Desktop"
	e.do(req{method: http.MethodPost, path: "/register", body: other, remote: egress}).mustStatus(t, http.StatusCreated)
	elsewhere := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: "[2001:db8::1]:443"}).
		mustStatus(t, http.StatusCreated).registration(t)
	if elsewhere.ClientID == first.ClientID || elsewhere.RegistrationAccessToken == "" {
		t.Error("registration from another network shared the client")
	}
	conf := map[string]any{"redirect_uris": []string{"https://agent.example.com/cb"}}
	c1 := e.do(req{method: http.MethodPost, path: "/register", body: conf, remote: egress}).mustStatus(t, http.StatusCreated).registration(t)
	c2 := e.do(req{method: http.MethodPost, path: "/register", body: conf, remote: egress}).mustStatus(t, http.StatusCreated).registration(t)
	if c1.ClientID == c2.ClientID || c1.ClientSecret == "" || c2.ClientSecret == "" {
		t.Error("identical confidential registrations must get distinct clients and secrets")
	}
	if n := e.count(); n != 5 {
		t.Fatalf("%d clients, want 5", n)
	}

	// After the idle lifetime the shared client is gone; registering creates a new one.
	e.clock.Advance(31 * 24 * time.Hour)
	fresh := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: egress}).
		mustStatus(t, http.StatusCreated).registration(t)
	if fresh.ClientID == first.ClientID || fresh.RegistrationAccessToken == "" {
		t.Error("expired client was handed out again")
	}
}

// TestSharingKeepsManagementAndForgetsConsentsOnChange: a third party on
// the victim's network re-registering its public metadata no longer takes
// away the victim's RFC 7592 management (it used to: the registration
// access token was cleared); a PUT by the manager ends the sharing and,
// since users of the other sharers approved the old metadata, forgets
// every user's consent for the client.
func TestSharingKeepsManagementAndForgetsConsentsOnChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	const victim, neighbour = "160.79.104.10:40000", "160.79.104.77:1"
	first := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: victim}).
		mustStatus(t, http.StatusCreated).registration(t)
	shared := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: neighbour}).
		mustStatus(t, http.StatusCreated).registration(t)
	if shared.ClientID != first.ClientID || shared.RegistrationAccessToken != "" {
		t.Fatalf("not shared as expected: %+v", shared)
	}
	path := "/register/" + first.ClientID
	e.do(req{method: http.MethodGet, path: path, token: first.RegistrationAccessToken}).mustStatus(t, http.StatusOK)

	u, err := e.st.UpsertUser(context.Background(), store.User{Provider: "github", Subject: "1", Login: "u", CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now(), LastLoginAt: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	consent := store.Consent{UserID: u.ID, ClientID: first.ClientID, Scopes: []string{"mcp:tools"}, CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
	if err := e.st.AddConsent(context.Background(), consent); err != nil {
		t.Fatal(err)
	}
	// A PUT that changes nothing keeps consents; one that changes the
	// redirect URIs forgets them, and the client is no longer shared.
	same := claudeMetadata()
	same["client_id"] = first.ClientID
	e.do(req{method: http.MethodPut, path: path, token: first.RegistrationAccessToken, body: same}).mustStatus(t, http.StatusOK)
	if _, err := e.st.GetConsent(context.Background(), u.ID, first.ClientID); err != nil {
		t.Fatalf("an unchanged PUT forgot consents: %v", err)
	}
	changed := claudeMetadata()
	changed["client_id"] = first.ClientID
	changed["redirect_uris"] = []string{"https://claude.ai/api/mcp/auth_callback"}
	e.do(req{method: http.MethodPut, path: path, token: first.RegistrationAccessToken, body: changed}).mustStatus(t, http.StatusOK)
	if _, err := e.st.GetConsent(context.Background(), u.ID, first.ClientID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("consent survived a change of redirect URIs: %v", err)
	}
	again := e.do(req{method: http.MethodPost, path: "/register", body: changed, remote: neighbour}).
		mustStatus(t, http.StatusCreated).registration(t)
	if again.ClientID == first.ClientID {
		t.Fatal("a managed registration was shared")
	}
}

// TestNoSharingAcrossIndistinguishableNetworks: with no trusted proxy
// configured, registrations from a private or loopback peer (most likely
// a reverse proxy, standing for the whole internet) are never shared; nor
// are those whose address is a trusted proxy itself.
func TestNoSharingAcrossIndistinguishableNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	for _, remote := range []string{"127.0.0.1:1", "10.0.0.7:1", "[::1]:1", "192.168.1.2:1", "100.64.1.1:1", "[fd00::1]:1"} {
		a := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: remote}).mustStatus(t, http.StatusCreated).registration(t)
		b := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: remote}).mustStatus(t, http.StatusCreated).registration(t)
		if a.ClientID == b.ClientID || b.RegistrationAccessToken == "" {
			t.Errorf("from %s: identical registrations shared a client", remote)
		}
	}
	// A configured proxy: the address it reports for its clients is
	// trusted (private ones too), the proxy's own is not.
	e.h.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	for remote, share := range map[string]bool{"10.0.0.7:1": false, "192.168.1.2:1": true} {
		a := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: remote}).mustStatus(t, http.StatusCreated).registration(t)
		b := e.do(req{method: http.MethodPost, path: "/register", body: claudeMetadata(), remote: remote}).mustStatus(t, http.StatusCreated).registration(t)
		if (a.ClientID == b.ClientID) != share {
			t.Errorf("with trusted proxies, from %s: shared=%v, want %v", remote, a.ClientID == b.ClientID, share)
		}
	}
}

func TestReRegistrationOfDisabledClientIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	reg := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated).registration(t)
	c := e.client(reg.ClientID)
	c.Disabled = true
	if err := e.st.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	resp := e.register(claudeMetadata()).mustStatus(t, http.StatusBadRequest)
	if code := resp.oauthError(t); code != oauth.CodeInvalidClientMetadata {
		t.Errorf("error %q", code)
	}
	if n := e.count(); n != 1 {
		t.Fatalf("%d clients: the operator's block was bypassed with a new row", n)
	}
}

func TestRegistrationRateLimit(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	lim := ratelimit.New(ratelimit.Config{PerKeyPerMinute: 2, PerKeyBurst: 2, GlobalPerMinute: 60, GlobalBurst: 3}, clk.Now)
	e := newEnv(t, testPolicy(), lim)
	conf := map[string]any{"redirect_uris": []string{"https://agent.example.com/cb"}}
	for range 2 {
		e.register(conf).mustStatus(t, http.StatusCreated)
	}
	resp := e.register(conf).mustStatus(t, http.StatusTooManyRequests)
	if code := resp.oauthError(t); code != "too_many_requests" {
		t.Errorf("error %q", code)
	}
	if ra, err := strconv.Atoi(resp.header.Get("Retry-After")); err != nil || ra != 30 {
		t.Errorf("Retry-After = %q, want 30", resp.header.Get("Retry-After"))
	}
	if n := e.count(); n != 2 {
		t.Fatalf("%d clients, want 2", n)
	}
	// Another network has its own budget, until the global one runs out.
	e.do(req{method: http.MethodPost, path: "/register", body: conf, remote: "198.51.100.1:1"}).mustStatus(t, http.StatusCreated)
	resp = e.do(req{method: http.MethodPost, path: "/register", body: conf, remote: "198.51.100.2:1"}).mustStatus(t, http.StatusTooManyRequests)
	if ra := resp.header.Get("Retry-After"); ra != "1" {
		t.Errorf("global Retry-After = %q, want 1", ra)
	}
	clk.Advance(30 * time.Second)
	e.register(conf).mustStatus(t, http.StatusCreated)
	if n := e.count(); n != 4 {
		t.Fatalf("%d clients, want 4", n)
	}
}

func TestRegistrationBodyLimit(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.MaxBodyBytes = 1024
	e := newEnv(t, p, nil)
	body := claudeMetadata()
	body["padding"] = strings.Repeat("x", 1024)
	resp := e.register(body).mustStatus(t, http.StatusRequestEntityTooLarge)
	if code := resp.oauthError(t); code != oauth.CodeInvalidRequest {
		t.Errorf("error %q", code)
	}
	if n := e.count(); n != 0 {
		t.Fatalf("%d clients written", n)
	}
	delete(body, "padding")
	e.register(body).mustStatus(t, http.StatusCreated)
}

func TestRegistrationDisabled(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.Enabled = false
	e := newEnv(t, p, nil)
	if resp := e.register(claudeMetadata()); resp.status != http.StatusNotFound {
		t.Fatalf("status %d, want 404 when registration is disabled", resp.status)
	}
	if n := e.count(); n != 0 {
		t.Fatalf("%d clients written", n)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	pre := e.do(req{method: http.MethodOptions, path: "/register"}).mustStatus(t, http.StatusNoContent)
	if pre.header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight headers: %v", pre.header)
	}
	resp := e.register(claudeMetadata()).mustStatus(t, http.StatusCreated)
	if resp.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("registration response lacks Access-Control-Allow-Origin")
	}
}

// assertNoClearSecrets fails if any credential appears anywhere in the row.
func assertNoClearSecrets(t *testing.T, row store.Client, secrets ...string) {
	t.Helper()
	dump := fmt.Sprintf("%+v", row)
	for _, s := range secrets {
		if s != "" && strings.Contains(dump, s) {
			t.Errorf("credential stored in clear: %s", dump)
		}
	}
}

// By default a dynamically registered client may not use client_credentials:
// with open registration that would hand tokens for the configured
// resources to anyone, without a sign-in. The refusal writes nothing.
func TestClientCredentialsRefusedByDefault(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	p.AllowClientCredentials = register.DefaultPolicy().AllowClientCredentials
	e := newEnv(t, p, nil)
	for _, grants := range [][]string{{"client_credentials"}, {"authorization_code", "refresh_token", "client_credentials"}} {
		resp := e.register(map[string]any{
			"client_name": "machine", "redirect_uris": []string{"https://agent.example.com/cb"},
			"grant_types": grants, "token_endpoint_auth_method": "client_secret_basic",
		}).mustStatus(t, http.StatusBadRequest)
		if resp.oauthError(t) != "invalid_client_metadata" || !strings.Contains(resp.json(t)["error_description"].(string), "client_credentials") {
			t.Errorf("grant_types %v: %s", grants, resp.body)
		}
	}
	if n := e.count(); n != 0 {
		t.Fatalf("%d clients stored after refused registrations", n)
	}
	// Other grants register as usual under the same policy.
	e.register(map[string]any{"client_name": "app", "redirect_uris": []string{"https://agent.example.com/cb"}}).mustStatus(t, http.StatusCreated)
	if n := e.count(); n != 1 {
		t.Fatalf("%d clients stored, want 1", n)
	}
}

// TestRegistrationScopeWithoutDeclaredScopes (issue 15 §2): with no scopes
// declared every well-formed scope is known, but openid is still dropped,
// as /authorize and /token drop it and the metadata never lists it (authd
// issues no ID tokens); offline_access stays. Registration and the scope
// rule of /authorize and /token agree (policy.RegisteredScope).
func TestRegistrationScopeWithoutDeclaredScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	md := claudeMetadata()
	md["scope"] = "openid mcp:tools offline_access claudeai"
	resp := e.register(md).mustStatus(t, http.StatusCreated)
	got, _ := resp.json(t)["scope"].(string)
	if stored := e.client(resp.registration(t).ClientID).Metadata.Scope; got != "mcp:tools offline_access claudeai" || stored != got {
		t.Errorf("scope answered %q, stored %q, want %q", got, stored, "mcp:tools offline_access claudeai")
	}
}

// TestRegistrationScopeKeepsOnlyKnownScopes: a registration's scope is
// stored and echoed with only the scopes the server knows (RFC 7591
// §3.2.1 lets the server replace it): "* admin" is not advertised back as
// if authd granted it (issue 17).
func TestRegistrationScopeKeepsOnlyKnownScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testPolicy(), nil)
	e.h.ScopePolicy = &policy.Policy{Scopes: []policy.Scope{{Name: "mcp:tools"}, {Name: "mcp:resources"}}}
	for _, tc := range []struct{ sent, want string }{
		{"* admin", ""},
		{"mcp:tools * admin mcp:resources", "mcp:tools mcp:resources"},
		{"openid offline_access admin mcp:tools", "offline_access mcp:tools"},
		{"", ""},
	} {
		md := claudeMetadata()
		md["client_name"] = "scopes " + tc.sent
		if tc.sent == "" {
			delete(md, "scope")
		} else {
			md["scope"] = tc.sent
		}
		resp := e.register(md).mustStatus(t, http.StatusCreated)
		got, _ := resp.json(t)["scope"].(string)
		reg := resp.registration(t)
		if got != tc.want || e.client(reg.ClientID).Metadata.Scope != tc.want {
			t.Errorf("scope %q: answered %q, stored %q, want %q", tc.sent, got, e.client(reg.ClientID).Metadata.Scope, tc.want)
		}
		// An RFC 7592 update is held to the same rule.
		md["client_id"] = reg.ClientID
		md["scope"] = "admin mcp:tools"
		upd := e.do(req{method: http.MethodPut, path: "/register/" + reg.ClientID, token: reg.RegistrationAccessToken, body: md}).mustStatus(t, http.StatusOK)
		if got, _ := upd.json(t)["scope"].(string); got != "mcp:tools" {
			t.Errorf("update: scope %q, want mcp:tools", got)
		}
	}
}
