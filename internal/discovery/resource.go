package discovery

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/authd/authd/internal/oauth"
)

// ProtectedResource is the RFC 9728 §2 metadata of a resource authd
// protects. authd serves it so that a proxy can route the resource host's
// /.well-known/oauth-protected-resource… to authd and protect an unmodified
// MCP server. Each document is served on its resource's host only (see
// resourceIndex.ServeHTTP).
type ProtectedResource struct {
	// Resource is the resource identifier (canonical, as in config).
	Resource string `json:"resource"`
	// AuthorizationServers defaults to the issuer.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
	// BearerMethodsSupported defaults to ["header"]: authd reads bearer
	// tokens from the Authorization header only.
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// ResourceMetadataURL is where the metadata of resource is published (RFC
// 9728 §3.1): the well-known path inserted between the host and the path and
// query, so https://mcp.example.com/mcp has
// https://mcp.example.com/.well-known/oauth-protected-resource/mcp. It is
// the resource_metadata a WWW-Authenticate challenge points to (§5.1).
func ResourceMetadataURL(resource string) (string, error) {
	u, err := url.Parse(resource)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("discovery: resource %q is not an absolute URL", resource)
	}
	s := u.Scheme + "://" + u.Host + WellKnownProtectedResource + pathKey(u.EscapedPath())
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	return s, nil
}

// pathKey is the resource path as it follows the well-known prefix: RFC
// 9728 §3.1 drops only a slash right after the host.
func pathKey(escapedPath string) string {
	if escapedPath == "/" {
		return ""
	}
	return escapedPath
}

// resourceIndex finds the document for a request by its host and the path
// after the well-known prefix.
type resourceIndex struct {
	byHost map[string][]resourceDoc // by normalHost of the resource, in config order
	// any, when set (development mode), is the template of the document
	// served for a URL that matches no resource (Handler.AnyResource).
	any *ProtectedResource
	log *slog.Logger
}

type resourceDoc struct {
	path string // pathKey of the resource's path
	body []byte
}

func newResourceIndex(issuer string, resources []ProtectedResource, log *slog.Logger) *resourceIndex {
	idx := &resourceIndex{byHost: map[string][]resourceDoc{}, log: log}
	for _, pr := range resources {
		u, err := url.Parse(pr.Resource)
		if err != nil || u.Host == "" || u.Opaque != "" {
			log.Error("discovery: skipping protected resource with an invalid URL", "resource", pr.Resource)
			continue
		}
		if len(pr.AuthorizationServers) == 0 {
			pr.AuthorizationServers = []string{issuer}
		}
		if len(pr.BearerMethodsSupported) == 0 {
			pr.BearerMethodsSupported = []string{"header"}
		}
		pr.ScopesSupported = slices.Clone(pr.ScopesSupported)
		body, err := json.Marshal(pr)
		if err != nil {
			log.Error("discovery: marshalling protected resource metadata", "resource", pr.Resource, "error", err.Error())
			continue
		}
		h := normalHost(u.Host)
		idx.byHost[h] = append(idx.byHost[h], resourceDoc{path: pathKey(u.EscapedPath()), body: body})
	}
	return idx
}

// ServeHTTP serves the document of a resource on the request's host, never
// one of another host: a client reaches it only at the resource's own
// origin, through the proxy that routes that origin's
// /.well-known/oauth-protected-resource… to authd. r.Host is that host as
// the proxy passed it (the proxies in docs/proxies.md keep Host; the
// server's trusted-proxy middleware replaces it with X-Forwarded-Host for
// trusted proxies only), so every resource_metadata URL that /verify
// points to is served.
//
// On that host:
//   - the path after the well-known prefix is the resource's path (RFC 9728
//     §3.1; the query is not compared): that resource;
//   - the plain /.well-known/oauth-protected-resource, when no resource is
//     at the host's root but exactly one is on the host: that one, since
//     MCP clients (2025-06-18) fall back to the plain URL on the resource's
//     host;
//   - anything else is a 404, as is every path on a host with no resource
//     (authd's own host included, unless a resource is on it).
func (idx *resourceIndex) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	suffix := pathKey(strings.TrimPrefix(r.URL.EscapedPath(), WellKnownProtectedResource))
	if body, ok := idx.lookup(r.Host, suffix); ok {
		write(w, body, cacheControl(MetadataMaxAge))
		return
	}
	if body, ok := idx.anyDocument(r, suffix); ok {
		write(w, body, cacheControl(MetadataMaxAge))
		return
	}
	oauth.WriteError(w, r, idx.log, &oauth.Error{
		Code:        "not_found",
		Description: "no protected resource metadata at this address",
		Status:      http.StatusNotFound,
	})
}

// anyDocument is the development-mode document for the resource at the
// request's host and the path suffix: http, or https when the request (or
// a trusted proxy's X-Forwarded-Proto) says so.
func (idx *resourceIndex) anyDocument(r *http.Request, suffix string) ([]byte, bool) {
	if idx.any == nil {
		return nil, false
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	res, oerr := oauth.CanonicalResource(scheme + "://" + r.Host + suffix)
	if oerr != nil {
		return nil, false
	}
	pr := *idx.any
	pr.Resource = res
	body, err := json.Marshal(pr)
	return body, err == nil
}

// lookup applies ServeHTTP's rule to a request for host with suffix, the
// path after the well-known prefix.
func (idx *resourceIndex) lookup(host, suffix string) ([]byte, bool) {
	docs := idx.byHost[normalHost(host)]
	for _, d := range docs {
		if d.path == suffix {
			return d.body, true
		}
	}
	if suffix == "" && len(docs) == 1 {
		return docs[0].body, true
	}
	return nil, false
}

// normalHost lowercases host and drops a default port, so
// "MCP.example.com:443" matches the canonical "mcp.example.com".
func normalHost(host string) string {
	host = strings.ToLower(host)
	for _, port := range []string{":443", ":80"} {
		if strings.HasSuffix(host, port) {
			return strings.TrimSuffix(host, port)
		}
	}
	return host
}
