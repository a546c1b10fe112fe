// Package discovery serves what clients and resource servers fetch before
// anything else: the authorization server metadata (RFC 8414, also under the
// OpenID Connect discovery name), the JWK set that verifies access tokens
// (RFC 7517), and protected-resource metadata (RFC 9728) for the resources
// authd guards. Browser-based MCP clients fetch all of them cross-origin, so
// every document is public, cacheable, and served with
// Access-Control-Allow-Origin: * (never with credentials).
package discovery

import (
	"slices"
	"strings"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
)

// Endpoint paths, appended to the issuer. The routers of the endpoint
// packages serve the same paths.
const (
	PathAuthorize  = "/authorize"
	PathToken      = "/token"
	PathRegister   = "/register"
	PathIntrospect = "/introspect"
	PathRevoke     = "/revoke"
	PathJWKS       = "/.well-known/jwks.json"
)

// Metadata is the RFC 8414 §2 authorization server metadata, plus the RFC
// 9207 and client ID metadata document flags. Empty endpoints and lists are
// omitted, so nothing that is not built is advertised.
type Metadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                              string   `json:"token_endpoint,omitempty"`
	JWKSURI                                    string   `json:"jwks_uri,omitempty"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported                        []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	ServiceDocumentation                       string   `json:"service_documentation,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint,omitempty"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint,omitempty"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported,omitempty"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported,omitempty"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported,omitempty"`
}

// Features are the configuration switches that decide which endpoints and
// grants exist. The composition root passes the same values to the endpoint
// handlers and here, so the document cannot advertise what is not served.
type Features struct {
	Registration  bool // POST /register (RFC 7591)
	Introspection bool // POST /introspect (RFC 7662)
	Revocation    bool // POST /revoke (RFC 7009)
	// GrantTypes are the grant types /token serves, from the grant
	// registry (grants.Registry.Types), in order; empty means
	// authorization_code alone.
	GrantTypes []string
	// CIMD: URL client_ids resolved as client ID metadata documents.
	CIMD bool
	// Scopes is the server-wide scope list (scopes_supported).
	Scopes []string
	// ServiceDocumentation is a URL of human-readable documentation.
	ServiceDocumentation string
}

// Client authentication methods authd implements (internal/clientauth).
var (
	tokenAuthMethods = []string{"none", "client_secret_basic", "client_secret_post"}
	// Introspection is for resource servers: a confidential client only.
	introspectionAuthMethods = []string{"client_secret_basic", "client_secret_post"}
)

// NewMetadata builds the metadata for issuer (an absolute URL without a
// trailing slash, as config validates) from the enabled features.
func NewMetadata(issuer string, f Features) Metadata {
	base := strings.TrimSuffix(issuer, "/")
	m := Metadata{
		Issuer:                            issuer,
		AuthorizationEndpoint:             base + PathAuthorize,
		TokenEndpoint:                     base + PathToken,
		JWKSURI:                           base + PathJWKS,
		ScopesSupported:                   slices.Clone(f.Scopes),
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               slices.Clone(f.GrantTypes),
		TokenEndpointAuthMethodsSupported: slices.Clone(tokenAuthMethods),
		ServiceDocumentation:              f.ServiceDocumentation,
		// OAuth 2.1 and the MCP spec: PKCE with S256 only; MCP clients
		// refuse a server that does not list it.
		CodeChallengeMethodsSupported: []string{"S256"},
		// RFC 9207: authorization responses carry iss.
		AuthorizationResponseISSParameterSupported: true,
		ClientIDMetadataDocumentSupported:          f.CIMD,
	}
	if len(m.GrantTypesSupported) == 0 {
		// RFC 8414 §2: an absent list would mean authorization_code and
		// implicit.
		m.GrantTypesSupported = []string{grants.AuthorizationCode}
	}
	if slices.Contains(m.GrantTypesSupported, grants.RefreshToken) {
		// MCP SEP-2207: clients that want a refresh token add
		// offline_access when the server lists it. authd accepts it
		// everywhere and issues refresh tokens by the client's registered
		// grant_types (oauth.ScopeOfflineAccess). Never in the protected
		// resource documents: it is no permission at a resource.
		m.ScopesSupported = append(m.ScopesSupported, oauth.ScopeOfflineAccess)
	}
	if f.Registration {
		m.RegistrationEndpoint = base + PathRegister
	}
	if f.Revocation {
		m.RevocationEndpoint = base + PathRevoke
		m.RevocationEndpointAuthMethodsSupported = slices.Clone(tokenAuthMethods)
	}
	if f.Introspection {
		m.IntrospectionEndpoint = base + PathIntrospect
		m.IntrospectionEndpointAuthMethodsSupported = slices.Clone(introspectionAuthMethods)
	}
	return m
}
