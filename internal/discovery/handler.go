package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/oauth"
)

// Well-known paths (RFC 8414 §3, OpenID Connect Discovery §4, RFC 9728 §3).
const (
	WellKnownAuthorizationServer = "/.well-known/oauth-authorization-server"
	WellKnownOpenIDConfiguration = "/.well-known/openid-configuration"
	WellKnownProtectedResource   = "/.well-known/oauth-protected-resource"
)

// Cache lifetimes. Metadata changes only with the configuration, so an hour
// is harmless; the JWK set changes with key rotation, whose pre-publication
// period is designed around keys.JWKSMaxAge.
const (
	MetadataMaxAge = time.Hour
	JWKSMaxAge     = keys.JWKSMaxAge
)

// Handler serves the discovery documents.
type Handler struct {
	// Metadata is served as built (see NewMetadata), marshalled once.
	Metadata Metadata
	// JWKS returns the JWK set to publish (keys.Manager.JWKS); nil serves
	// none.
	JWKS func(ctx context.Context) ([]byte, error)
	// Resources get RFC 9728 documents; see ProtectedResource.
	Resources []ProtectedResource
	// AnyResource, in development mode only (with allow_any_resource),
	// answers a protected-resource metadata request that matches no
	// configured resource with a document for the URL asked about, on any
	// host, so that an MCP server behind /verify?resource= is discoverable
	// without configuring it. AnyResourceScopes are its scopes_supported.
	AnyResource       bool
	AnyResourceScopes []string
	Log               *slog.Logger
}

// Routes mounts the documents on r, the router at the host root: each route
// is the path of the public URL, so a proxy in front must pass paths
// unchanged. The metadata is served at /.well-known/oauth-authorization-server
// and /.well-known/openid-configuration and, when the issuer has a path (say
// https://host/tenant), also at the RFC 8414 §3.1 path-inserted form
// /.well-known/oauth-authorization-server/tenant, at the OpenID form
// /.well-known/openid-configuration/tenant, and at the appended forms that
// clients which concatenate issuer and well-known suffix try,
// /tenant/.well-known/oauth-authorization-server and
// /tenant/.well-known/openid-configuration (OpenID Connect Discovery §4;
// MCP clients try several of these). The JWK set is served at the
// path of jwks_uri (/tenant/.well-known/jwks.json in that example).
// authd issues no ID tokens; the OpenID names only serve clients that look
// for metadata there. Every route answers GET, HEAD and CORS preflight.
func (h *Handler) Routes(r chi.Router) {
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	issuerPath, err := routablePath(h.Metadata.Issuer)
	if err != nil {
		log.Error("discovery: serving metadata at the root paths only", "issuer", h.Metadata.Issuer, "error", err.Error())
		issuerPath = ""
	}

	body, err := json.Marshal(h.Metadata)
	if err != nil { // plain strings, slices and bools: unreachable
		log.Error("discovery: marshalling metadata", "error", err.Error())
		return
	}
	metadata := document(body, MetadataMaxAge)
	for _, p := range metadataPaths(issuerPath) {
		mount(r, p, metadata)
	}

	if h.JWKS != nil {
		jwksPath := issuerPath + PathJWKS
		if h.Metadata.JWKSURI != "" {
			if p, err := routablePath(h.Metadata.JWKSURI); err == nil {
				jwksPath = p
			}
		}
		mount(r, jwksPath, h.serveJWKS(log))
	}

	// Mounted even without resources, so that every miss is a JSON 404.
	prm := newResourceIndex(h.Metadata.Issuer, h.Resources, log)
	if h.AnyResource {
		prm.any = &ProtectedResource{AuthorizationServers: []string{h.Metadata.Issuer}, ScopesSupported: h.AnyResourceScopes,
			BearerMethodsSupported: []string{"header"}}
	}
	mount(r, WellKnownProtectedResource, prm.ServeHTTP)
	mount(r, WellKnownProtectedResource+"/*", prm.ServeHTTP)
}

// metadataPaths lists where the metadata of an issuer with path p is served.
func metadataPaths(p string) []string {
	paths := []string{WellKnownAuthorizationServer, WellKnownOpenIDConfiguration}
	if p != "" {
		paths = append(paths, WellKnownAuthorizationServer+p, WellKnownOpenIDConfiguration+p,
			p+WellKnownAuthorizationServer, p+WellKnownOpenIDConfiguration)
	}
	return paths
}

// routablePath returns the path of the absolute URL raw without a trailing
// slash ("" for none), refusing what a chi pattern would misread.
func routablePath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute URL", raw)
	}
	p := oauth.IssuerPath(raw)
	if strings.ContainsAny(p, "{}*") {
		return "", fmt.Errorf("the path of %q contains characters that cannot be routed", raw)
	}
	return p, nil
}

func (h *Handler) serveJWKS(log *slog.Logger) http.HandlerFunc {
	cacheControl := cacheControl(JWKSMaxAge)
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := h.JWKS(r.Context())
		if err != nil {
			oauth.WriteError(w, r, log, err)
			return
		}
		write(w, body, cacheControl)
	}
}

// mount serves GET and HEAD with h, and CORS preflight, at path.
func mount(r chi.Router, path string, h http.HandlerFunc) {
	r.Get(path, cors(h))
	r.Head(path, cors(h))
	r.Options(path, preflight)
}

// document serves a fixed body.
func document(body []byte, maxAge time.Duration) http.HandlerFunc {
	cc := cacheControl(maxAge)
	return func(w http.ResponseWriter, _ *http.Request) { write(w, body, cc) }
}

func cacheControl(maxAge time.Duration) string {
	return "public, max-age=" + strconv.Itoa(int(maxAge/time.Second))
}

func write(w http.ResponseWriter, body []byte, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // HEAD: net/http discards the body
}

// cors lets any origin read the response. The documents are public and
// requests carry no credentials (no Allow-Credentials), so "*" exposes
// nothing a plain fetch would not.
func cors(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		next(w, r)
	}
}

// preflight answers a CORS preflight for GET. It allows the request headers
// asked for (MCP clients send MCP-Protocol-Version, for one), which is safe
// for credential-less reads of public documents.
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && headerList(req) {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// headerList reports whether s is a comma-separated list of header names
// (RFC 9110 tokens), so only such a list is echoed back.
func headerList(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~, ", c) >= 0:
		default:
			return false
		}
	}
	return true
}
