package resource

import (
	"encoding/json"
	"net/http"
	"net/url"
)

// wellKnownProtectedResource is RFC 9728's well-known path.
const wellKnownProtectedResource = "/.well-known/oauth-protected-resource"

// protectedResourceMetadata is the RFC 9728 §2 document.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// MetadataPath is the path at which to mount [Protector.MetadataHandler]:
// the RFC 9728 §3.1 well-known path with the resource's path appended, e.g.
// /.well-known/oauth-protected-resource/mcp for https://mcp.example.com/mcp.
func (p *Protector) MetadataPath() string {
	u, _ := url.Parse(p.metadataURL) // built by New
	return u.EscapedPath()
}

// MetadataHandler serves this resource's RFC 9728 metadata: the resource,
// the authorization server, the scopes and that tokens go in the
// Authorization header. Mount it at [Protector.MetadataPath]; it is public
// and readable cross-origin (browser-based MCP clients fetch it).
func (p *Protector) MetadataHandler() http.Handler {
	scopes := p.cfg.ScopesSupported
	if len(scopes) == 0 {
		scopes = p.cfg.Scopes
	}
	body, _ := json.Marshal(protectedResourceMetadata{
		Resource:               p.cfg.Resource,
		AuthorizationServers:   []string{p.cfg.Issuer},
		ScopesSupported:        scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           p.cfg.ResourceName,
		ResourceDocumentation:  p.cfg.ResourceDocumentation,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=3600")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}
