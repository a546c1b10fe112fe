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
// MCP server.
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

// resourceIndex finds the document for a request: by the path after the
// well-known prefix, then by host.
type resourceIndex struct {
	byPath map[string][]resourceDoc
	log    *slog.Logger
}

type resourceDoc struct {
	host string // normalised, see normalHost
	body []byte
}

func newResourceIndex(issuer string, resources []ProtectedResource, log *slog.Logger) *resourceIndex {
	idx := &resourceIndex{byPath: map[string][]resourceDoc{}, log: log}
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
		p := pathKey(u.EscapedPath())
		idx.byPath[p] = append(idx.byPath[p], resourceDoc{host: normalHost(u.Host), body: body})
	}
	return idx
}

// ServeHTTP picks the document whose resource has the request's path
// suffix (the query is not compared) and host. r.Host is the public host: the server's trusted-proxy
// middleware sets it from X-Forwarded-Host for trusted proxies only. When
// the host matches none but exactly one resource has that path, that one is
// served, so a single resource works however the proxy forwards the host.
func (idx *resourceIndex) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	suffix := pathKey(strings.TrimPrefix(r.URL.EscapedPath(), WellKnownProtectedResource))
	docs := idx.byPath[suffix]
	host := normalHost(r.Host)
	for _, d := range docs {
		if d.host == host {
			write(w, d.body, cacheControl(MetadataMaxAge))
			return
		}
	}
	if len(docs) == 1 {
		write(w, docs[0].body, cacheControl(MetadataMaxAge))
		return
	}
	oauth.WriteError(w, r, idx.log, &oauth.Error{
		Code:        "not_found",
		Description: "no protected resource metadata at this address",
		Status:      http.StatusNotFound,
	})
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
