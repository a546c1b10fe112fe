package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/discovery"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

const issuer = "https://auth.example.com"

// serverMetadata is what a client decodes, field by field as RFC 8414 names
// them.
type serverMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	ServiceDocumentation                       string   `json:"service_documentation"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
}

type protectedResource struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceDocumentation  string   `json:"resource_documentation"`
	ResourceName           string   `json:"resource_name"`
}

func serve(t *testing.T, h *discovery.Handler) *httptest.Server {
	t.Helper()
	if h.Log == nil {
		h.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r := chi.NewRouter()
	h.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends method to srv at path, with the Host header set to host if not
// empty (as the trusted-proxy middleware leaves it).
func do(t *testing.T, srv *httptest.Server, method, path, host string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func decode(t *testing.T, r response, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields() // every member served is one the test knows
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

func allFeatures() discovery.Features {
	return discovery.Features{
		Registration:         true,
		Introspection:        true,
		Revocation:           true,
		GrantTypes:           grants.Default().Types(),
		CIMD:                 true,
		Scopes:               []string{"mcp:read", "mcp:write"},
		ServiceDocumentation: "https://docs.example.com/authd",
	}
}

func TestMetadataDocument(t *testing.T) {
	srv := serve(t, &discovery.Handler{Metadata: discovery.NewMetadata(issuer, allFeatures())})
	want := serverMetadata{
		Issuer:                issuer,
		AuthorizationEndpoint: issuer + "/authorize",
		TokenEndpoint:         issuer + "/token",
		JWKSURI:               issuer + "/.well-known/jwks.json",
		RegistrationEndpoint:  issuer + "/register",
		// offline_access (MCP SEP-2207) comes with the refresh_token grant.
		ScopesSupported:                            []string{"mcp:read", "mcp:write", "offline_access"},
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token", "client_credentials"},
		TokenEndpointAuthMethodsSupported:          []string{"none", "client_secret_basic", "client_secret_post"},
		ServiceDocumentation:                       "https://docs.example.com/authd",
		RevocationEndpoint:                         issuer + "/revoke",
		RevocationEndpointAuthMethodsSupported:     []string{"none", "client_secret_basic", "client_secret_post"},
		IntrospectionEndpoint:                      issuer + "/introspect",
		IntrospectionEndpointAuthMethodsSupported:  []string{"client_secret_basic", "client_secret_post"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseISSParameterSupported: true,
		ClientIDMetadataDocumentSupported:          true,
	}
	var first []byte
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		t.Run(path, func(t *testing.T) {
			r := do(t, srv, http.MethodGet, path, "", nil)
			var got serverMetadata
			decode(t, r, &got)
			if !equalJSON(t, got, want) {
				t.Fatalf("metadata\n got %+v\nwant %+v", got, want)
			}
			if first == nil {
				first = r.body
			} else if string(first) != string(r.body) {
				t.Fatal("the two well-known names serve different documents")
			}
		})
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return string(x) == string(y)
}

// What is not enabled is not advertised.
func TestMetadataOmitsDisabledFeatures(t *testing.T) {
	srv := serve(t, &discovery.Handler{Metadata: discovery.NewMetadata(issuer, discovery.Features{})})
	r := do(t, srv, http.MethodGet, "/.well-known/oauth-authorization-server", "", nil)
	var got map[string]any
	decode(t, r, &got)
	for _, absent := range []string{
		"registration_endpoint", "introspection_endpoint", "introspection_endpoint_auth_methods_supported",
		"revocation_endpoint", "revocation_endpoint_auth_methods_supported", "client_id_metadata_document_supported",
		"scopes_supported", "service_documentation",
	} {
		if v, ok := got[absent]; ok {
			t.Errorf("%s advertised as %v while disabled", absent, v)
		}
	}
	if g := got["grant_types_supported"]; !equalJSON(t, g, []string{"authorization_code"}) {
		t.Errorf("grant_types_supported = %v", g)
	}
	for _, present := range []string{"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported", "code_challenge_methods_supported"} {
		if _, ok := got[present]; !ok {
			t.Errorf("%s missing", present)
		}
	}

	// Each feature adds exactly its own members.
	for _, tc := range []struct {
		f    discovery.Features
		want string
	}{
		{discovery.Features{Registration: true}, "registration_endpoint"},
		{discovery.Features{Introspection: true}, "introspection_endpoint"},
		{discovery.Features{Revocation: true}, "revocation_endpoint"},
		{discovery.Features{CIMD: true}, "client_id_metadata_document_supported"},
	} {
		m := discovery.NewMetadata(issuer, tc.f)
		b, _ := json.Marshal(m)
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		if _, ok := doc[tc.want]; !ok {
			t.Errorf("%+v: %s missing", tc.f, tc.want)
		}
		if len(doc) > len(got)+2 {
			t.Errorf("%+v advertises %d members, base %d: %s", tc.f, len(doc), len(got), b)
		}
	}
}

func TestIssuerWithPath(t *testing.T) {
	const tenant = "https://auth.example.com/tenant"
	km := newKeys(t, store.NewMemory())
	srv := serve(t, &discovery.Handler{Metadata: discovery.NewMetadata(tenant, discovery.Features{}), JWKS: km.JWKS})
	for _, path := range []string{
		"/.well-known/oauth-authorization-server/tenant", // RFC 8414 §3.1
		"/.well-known/openid-configuration/tenant",
		"/tenant/.well-known/openid-configuration",       // OpenID Connect Discovery §4
		"/tenant/.well-known/oauth-authorization-server", // clients that append
		"/.well-known/oauth-authorization-server",
		"/.well-known/openid-configuration",
	} {
		t.Run(path, func(t *testing.T) {
			var md serverMetadata
			decode(t, do(t, srv, http.MethodGet, path, "", nil), &md)
			if md.Issuer != tenant || md.TokenEndpoint != tenant+"/token" || md.JWKSURI != tenant+"/.well-known/jwks.json" {
				t.Fatalf("metadata %+v", md)
			}
		})
	}
	// jwks_uri is served where it points.
	var set jose.JSONWebKeySet
	decode(t, do(t, srv, http.MethodGet, "/tenant/.well-known/jwks.json", "", nil), &set)
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS %+v", set)
	}
	for _, path := range []string{"/.well-known/oauth-authorization-server/other", "/other/.well-known/openid-configuration", "/other/.well-known/oauth-authorization-server"} {
		if r := do(t, srv, http.MethodGet, path, "", nil); r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, r.status)
		}
	}
}

func TestHeadersAndCORS(t *testing.T) {
	km := newKeys(t, store.NewMemory())
	srv := serve(t, &discovery.Handler{
		Metadata:  discovery.NewMetadata(issuer, allFeatures()),
		JWKS:      km.JWKS,
		Resources: []discovery.ProtectedResource{{Resource: "https://mcp.example.com/mcp"}},
	})
	for _, tc := range []struct {
		path, host, cacheControl string
	}{
		{"/.well-known/oauth-authorization-server", "", "public, max-age=3600"},
		{"/.well-known/openid-configuration", "", "public, max-age=3600"},
		{"/.well-known/jwks.json", "", "public, max-age=600"},
		{"/.well-known/oauth-protected-resource/mcp", "mcp.example.com", "public, max-age=3600"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			origin := http.Header{"Origin": {"https://app.example.net"}}
			get := do(t, srv, http.MethodGet, tc.path, tc.host, origin)
			if get.status != http.StatusOK || len(get.body) == 0 {
				t.Fatalf("GET: %d %s", get.status, get.body)
			}
			h := get.header
			if h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatalf("CORS headers %v", h)
			}
			if h.Get("Cache-Control") != tc.cacheControl || h.Get("Content-Type") != "application/json" || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("headers %v", h)
			}

			head := do(t, srv, http.MethodHead, tc.path, tc.host, origin)
			if head.status != http.StatusOK || len(head.body) != 0 || head.header.Get("Content-Length") != strconv.Itoa(len(get.body)) ||
				head.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("HEAD: %d, %d body bytes, headers %v", head.status, len(head.body), head.header)
			}

			pre := do(t, srv, http.MethodOptions, tc.path, tc.host, http.Header{
				"Origin":                         {"https://app.example.net"},
				"Access-Control-Request-Method":  {"GET"},
				"Access-Control-Request-Headers": {"mcp-protocol-version"},
			})
			ph := pre.header
			if pre.status != http.StatusNoContent || ph.Get("Access-Control-Allow-Origin") != "*" ||
				!strings.Contains(ph.Get("Access-Control-Allow-Methods"), "GET") ||
				ph.Get("Access-Control-Allow-Headers") != "mcp-protocol-version" || ph.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatalf("preflight: %d %v", pre.status, ph)
			}

			if r := do(t, srv, http.MethodPost, tc.path, tc.host, nil); r.status != http.StatusMethodNotAllowed {
				t.Fatalf("POST: status %d, want 405", r.status)
			}
		})
	}

	// A preflight asking for something that is not a header-name list gets
	// no Allow-Headers echo.
	pre := do(t, srv, http.MethodOptions, "/.well-known/jwks.json", "", http.Header{
		"Origin":                         {"https://app.example.net"},
		"Access-Control-Request-Method":  {"GET"},
		"Access-Control-Request-Headers": {"x-a, <script>"},
	})
	if pre.status != http.StatusNoContent || pre.header.Get("Access-Control-Allow-Headers") != "" {
		t.Fatalf("preflight with a malformed header list: %d %v", pre.status, pre.header)
	}
}

func newKeys(t *testing.T, st keys.Store) *keys.Manager {
	t.Helper()
	km, err := keys.New(context.Background(), st, keys.Options{EncryptionKey: keys.DeriveKEK("discovery test secret, long enough to pass")})
	if err != nil {
		t.Fatal(err)
	}
	return km
}

// A token signed by keys.Manager verifies against the JWKS served over
// HTTP, with go-jose and golang-jwt as a resource server would.
func TestJWKSVerifiesSignedTokens(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			km, err := keys.New(context.Background(), pgtest.New(t), keys.Options{
				Algorithm: alg, EncryptionKey: keys.DeriveKEK("discovery test secret, long enough to pass"),
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := serve(t, &discovery.Handler{Metadata: discovery.NewMetadata(issuer, discovery.Features{}), JWKS: km.JWKS})

			now := time.Now()
			raw, err := km.Sign(context.Background(), "at+jwt", jwt.RegisteredClaims{
				Issuer: issuer, Subject: "u1", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
			})
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			decode(t, do(t, srv, http.MethodGet, "/.well-known/jwks.json", "", nil), &set)
			tok, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
				kid, _ := tok.Header["kid"].(string)
				ks := set.Key(kid)
				if len(ks) != 1 || ks[0].Algorithm != tok.Method.Alg() || ks[0].Use != "sig" || !ks[0].IsPublic() {
					return nil, errors.New("no matching public signing key")
				}
				return ks[0].Key, nil
			}, jwt.WithValidMethods([]string{alg}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
			if err != nil {
				t.Fatalf("token does not verify with the served JWKS: %v", err)
			}
			if tok.Header["typ"] != "at+jwt" {
				t.Fatalf("typ %v", tok.Header["typ"])
			}
		})
	}
}

func TestJWKSFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"database down", store.Unavailable(errors.New("connection refused")), http.StatusServiceUnavailable, "temporarily_unavailable"},
		{"other", errors.New("secret internal detail"), http.StatusInternalServerError, "server_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, &discovery.Handler{
				Metadata: discovery.NewMetadata(issuer, discovery.Features{}),
				JWKS:     func(context.Context) ([]byte, error) { return nil, tc.err },
			})
			r := do(t, srv, http.MethodGet, "/.well-known/jwks.json", "", nil)
			var body struct{ Error, ErrorDescription string }
			_ = json.Unmarshal(r.body, &body)
			if r.status != tc.status || body.Error != tc.code || strings.Contains(string(r.body), "secret internal detail") ||
				strings.Contains(string(r.body), "connection refused") {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("an error is cacheable: Cache-Control %q", cc)
			}
		})
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	resources := []discovery.ProtectedResource{
		{Resource: "https://mcp.example.com/mcp", ScopesSupported: []string{"mcp:read"}, ResourceName: "Tools", ResourceDocumentation: "https://mcp.example.com/docs"},
		{Resource: "https://other.example.com/mcp"},
		{Resource: "https://api.example.com", AuthorizationServers: []string{"https://elsewhere.example.com"}},
		{Resource: "https://files.example.com/v1/files/"},
		{Resource: "https://two.example.com/a"},
		{Resource: "https://two.example.com/b"},
	}
	srv := serve(t, &discovery.Handler{Metadata: discovery.NewMetadata(issuer, discovery.Features{}), Resources: resources})

	// fetch requests the document where ResourceMetadataURL says it is,
	// through the test server, with that URL's host.
	fetch := func(t *testing.T, resource, host string) response {
		t.Helper()
		md, err := discovery.ResourceMetadataURL(resource)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(md)
		if host == "" {
			host = u.Host
		}
		return do(t, srv, http.MethodGet, u.RequestURI(), host, nil)
	}

	for _, tc := range []struct {
		name, resource, host string
		want                 protectedResource
	}{
		{"path resource", "https://mcp.example.com/mcp", "", protectedResource{
			Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{issuer}, ScopesSupported: []string{"mcp:read"},
			BearerMethodsSupported: []string{"header"}, ResourceDocumentation: "https://mcp.example.com/docs", ResourceName: "Tools",
		}},
		{"same path, other host", "https://other.example.com/mcp", "", protectedResource{
			Resource: "https://other.example.com/mcp", AuthorizationServers: []string{issuer}, BearerMethodsSupported: []string{"header"},
		}},
		{"host in another case with the default port", "https://mcp.example.com/mcp", "MCP.Example.COM:443", protectedResource{
			Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{issuer}, ScopesSupported: []string{"mcp:read"},
			BearerMethodsSupported: []string{"header"}, ResourceDocumentation: "https://mcp.example.com/docs", ResourceName: "Tools",
		}},
		{"root resource", "https://api.example.com", "", protectedResource{
			Resource: "https://api.example.com", AuthorizationServers: []string{"https://elsewhere.example.com"}, BearerMethodsSupported: []string{"header"},
		}},
		{"path with a trailing slash", "https://files.example.com/v1/files/", "", protectedResource{
			Resource: "https://files.example.com/v1/files/", AuthorizationServers: []string{issuer}, BearerMethodsSupported: []string{"header"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got protectedResource
			decode(t, fetch(t, tc.resource, tc.host), &got)
			if !equalJSON(t, got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	// MCP clients (2025-06-18) also try the plain well-known URL on the
	// resource's host: it serves the host's only resource.
	for _, tc := range []struct {
		name, host string
		want       protectedResource
	}{
		{"plain URL, the host's only resource has a path", "mcp.example.com", protectedResource{
			Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{issuer}, ScopesSupported: []string{"mcp:read"},
			BearerMethodsSupported: []string{"header"}, ResourceDocumentation: "https://mcp.example.com/docs", ResourceName: "Tools",
		}},
		{"plain URL, another host with the same resource path", "other.example.com", protectedResource{
			Resource: "https://other.example.com/mcp", AuthorizationServers: []string{issuer}, BearerMethodsSupported: []string{"header"},
		}},
		{"plain URL, a resource with a trailing slash", "files.example.com:443", protectedResource{
			Resource: "https://files.example.com/v1/files/", AuthorizationServers: []string{issuer}, BearerMethodsSupported: []string{"header"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got protectedResource
			decode(t, do(t, srv, http.MethodGet, discovery.WellKnownProtectedResource, tc.host, nil), &got)
			if !equalJSON(t, got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	if md, _ := discovery.ResourceMetadataURL("https://mcp.example.com/mcp"); md != "https://mcp.example.com/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("ResourceMetadataURL = %s", md)
	}
	if md, _ := discovery.ResourceMetadataURL("https://api.example.com/"); md != "https://api.example.com/.well-known/oauth-protected-resource" {
		t.Fatalf("ResourceMetadataURL = %s", md)
	}

	for _, tc := range []struct{ name, path, host string }{
		{"unknown path", "/.well-known/oauth-protected-resource/nothing", "mcp.example.com"},
		{"two resources share the path, host matches neither", "/.well-known/oauth-protected-resource/mcp", "auth.example.com"},
		{"path resource without its path", "/.well-known/oauth-protected-resource/v1", "files.example.com"},
		{"path appended instead of inserted", "/mcp/.well-known/oauth-protected-resource", "mcp.example.com"},
		// Never a document of another host, even where only one resource
		// has the path: authd's own host is no resource's.
		{"root resource through authd's own host", "/.well-known/oauth-protected-resource", "auth.example.com"},
		{"path resource through authd's own host", "/.well-known/oauth-protected-resource/v1/files/", "auth.example.com"},
		{"path resource through another resource's host", "/.well-known/oauth-protected-resource/v1/files/", "mcp.example.com"},
		{"host differing only in port", "/.well-known/oauth-protected-resource/v1/files/", "files.example.com:8443"},
		{"plain URL, two resources on the host", "/.well-known/oauth-protected-resource", "two.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, http.MethodGet, tc.path, tc.host, nil)
			if r.status != http.StatusNotFound {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if tc.name == "path appended instead of inserted" {
				return // not a route of this handler at all
			}
			var body struct{ Error string }
			if err := json.Unmarshal(r.body, &body); err != nil || body.Error != "not_found" || r.header.Get("Content-Type") != "application/json" ||
				r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("404 body %s, headers %v", r.body, r.header)
			}
		})
	}

	t.Run("no resources configured", func(t *testing.T) {
		empty := serve(t, &discovery.Handler{Metadata: discovery.NewMetadata(issuer, discovery.Features{})})
		r := do(t, empty, http.MethodGet, "/.well-known/oauth-protected-resource", "", nil)
		if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "not_found") {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}
