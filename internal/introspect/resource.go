package introspect

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
)

// metadataPath is the RFC 9728 well-known path of protected-resource
// metadata.
const metadataPath = "/.well-known/oauth-protected-resource"

// resourceMatcher is a configured resource, parsed for matching request
// URLs against it.
type resourceMatcher struct {
	policy.Resource
	origin      string // scheme://host[:port], canonical
	path        string // decoded, without trailing "/"; "" covers the whole origin
	metadataURL string
}

func newResourceMatcher(r policy.Resource) (resourceMatcher, error) {
	canon, oerr := oauth.CanonicalResource(r.URI)
	if oerr != nil {
		return resourceMatcher{}, oerr
	}
	if canon != r.URI {
		// Tokens carry canonical audiences; a non-canonical URI would never
		// match them.
		return resourceMatcher{}, fmt.Errorf("resource URI is not canonical (want %q)", canon)
	}
	u, err := url.Parse(canon)
	if err != nil {
		return resourceMatcher{}, err
	}
	return resourceMatcher{
		Resource:    r,
		origin:      u.Scheme + "://" + u.Host,
		path:        strings.TrimSuffix(u.Path, "/"),
		metadataURL: metadataURL(canon),
	}, nil
}

// metadataURL is where the protected-resource metadata of resource is
// published (RFC 9728 §3.1): the well-known path goes between the host and
// the resource's path and query, so https://mcp.example.com/a has
// https://mcp.example.com/.well-known/oauth-protected-resource/a.
func metadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	p := u.EscapedPath()
	if p == "/" {
		p = ""
	}
	s := u.Scheme + "://" + u.Host + metadataPath + p
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	return s
}

// covers reports whether the request path p (decoded, cleaned) lies within
// the resource: equal to its path or below it, on a segment boundary, so
// that /mcp covers /mcp/x but not /mcpx.
func (m *resourceMatcher) covers(p string) bool {
	return m.path == "" || p == m.path || strings.HasPrefix(p, m.path+"/")
}

// errNoResource: the request does not say which resource is accessed.
var errNoResource = errors.New("the request does not say which resource it is for")

// resourceOf finds the configured resource a /verify request is about.
//
// A resource query parameter, fixed in the proxy's configuration (e.g.
// auth_request /verify?resource=https://mcp.example.com), names it
// exactly. Otherwise the original request's URL, from X-Forwarded-Proto,
// X-Forwarded-Host and X-Forwarded-Uri, is matched against the resources
// by origin and longest path prefix. The server middleware removes those
// headers unless a trusted proxy sent them, so a client cannot pick the
// resource it is judged against.
//
// It returns errNoResource when the request carries neither, and a nil
// matcher when what it names is not a configured resource.
func (h *Handler) resourceOf(r *http.Request) (*resourceMatcher, error) {
	if vs, ok := r.URL.Query()["resource"]; ok {
		if len(vs) != 1 {
			return nil, oauth.InvalidRequest("the resource parameter must be given once")
		}
		canon, oerr := oauth.CanonicalResource(vs[0])
		if oerr != nil {
			return nil, oauth.InvalidRequest("the resource parameter is not a valid resource URI")
		}
		for i := range h.resources {
			if h.resources[i].URI == canon {
				return &h.resources[i], nil
			}
		}
		if h.AnyResource {
			m, err := newResourceMatcher(policy.Resource{URI: canon})
			if err != nil {
				return nil, oauth.InvalidRequest("the resource parameter is not a valid resource URI")
			}
			return &m, nil
		}
		return nil, nil
	}

	proto, host, uri, err := forwarded(r.Header)
	if err != nil {
		return nil, err
	}
	origin, oerr := oauth.CanonicalResource(proto + "://" + host)
	if oerr != nil {
		return nil, oauth.InvalidRequest("X-Forwarded-Host is not a valid host")
	}
	p, err := cleanPath(uri)
	if err != nil {
		return nil, err
	}
	var best *resourceMatcher
	for i := range h.resources {
		m := &h.resources[i]
		if m.origin == origin && m.covers(p) && (best == nil || len(m.path) > len(best.path)) {
			best = m
		}
	}
	return best, nil
}

// forwarded reads the original request's scheme, host and URI. All three
// are required: guessing a missing one could match a broader resource than
// the one accessed.
func forwarded(hd http.Header) (proto, host, uri string, err error) {
	get := func(name string) (string, bool) {
		vs := hd.Values(name)
		if len(vs) != 1 || vs[0] == "" || strings.Contains(vs[0], ",") {
			return "", false
		}
		return strings.TrimSpace(vs[0]), true
	}
	proto, okProto := get("X-Forwarded-Proto")
	host, okHost := get("X-Forwarded-Host")
	uri, okURI := get("X-Forwarded-Uri")
	if !okProto && !okHost && !okURI {
		return "", "", "", errNoResource
	}
	proto = strings.ToLower(proto)
	switch {
	case !okProto || (proto != "https" && proto != "http"):
		return "", "", "", oauth.InvalidRequest("X-Forwarded-Proto must be one value, http or https")
	case !okHost || !validHost(host):
		return "", "", "", oauth.InvalidRequest("X-Forwarded-Host must be one host[:port]")
	case !okURI:
		return "", "", "", oauth.InvalidRequest("X-Forwarded-Uri must be one request URI")
	}
	return proto, host, uri, nil
}

// cleanPath decodes the path of a request URI and resolves dot segments,
// as the proxy does before routing: a raw X-Forwarded-Uri such as
// /mcp/../admin (nginx's $request_uri is not normalised) must be judged as
// /admin, the path the proxy actually serves, not as /mcp.
func cleanPath(uri string) (string, error) {
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
		return "", oauth.InvalidRequest("X-Forwarded-Uri must be an absolute path")
	}
	return path.Clean(u.Path), nil
}

// validHost accepts host[:port] made of the characters a DNS name or an IP
// literal can contain, so that nothing in it can change how the URL parses.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// scopesFor is what a request needs: the resource's required scopes and
// the scopes of every route rule matching its method and path. The method
// is X-Forwarded-Method (kept from trusted proxies only) or, for nginx's
// auth_request, which keeps the original method, the request's own. The
// path is X-Forwarded-Uri's; when the proxy does not send it (a resource
// parameter names the resource), rules with a path cannot be decided and
// apply, so an unknown path needs more, never less.
func (m *resourceMatcher) scopesFor(r *http.Request) ([]string, error) {
	need := m.RequiredScopes
	if len(m.RouteScopes) == 0 {
		return need, nil
	}
	method := r.Method
	if vs := r.Header.Values("X-Forwarded-Method"); len(vs) == 1 && vs[0] != "" {
		method = vs[0]
	}
	var p string
	known := false
	if vs := r.Header.Values("X-Forwarded-Uri"); len(vs) > 0 {
		if len(vs) != 1 {
			return nil, oauth.InvalidRequest("X-Forwarded-Uri must be one request URI")
		}
		var err error
		if p, err = cleanPath(vs[0]); err != nil {
			return nil, err
		}
		known = true
	}
	need = slices.Clone(need)
	for _, rule := range m.RouteScopes {
		if rule.Method != "" && !strings.EqualFold(rule.Method, method) {
			continue
		}
		if known && !routeMatchesPath(rule, p) {
			continue
		}
		for _, s := range rule.Scopes {
			if !slices.Contains(need, s) {
				need = append(need, s)
			}
		}
	}
	return need, nil
}

// routeMatchesPath reports whether rule rs applies to the request path p
// (decoded, dot segments resolved): an empty Path matches any, one ending
// in "*" every path it prefixes, any other only itself.
func routeMatchesPath(rs policy.RouteScope, p string) bool {
	if prefix, ok := strings.CutSuffix(rs.Path, "*"); ok {
		return strings.HasPrefix(p, prefix)
	}
	return rs.Path == "" || rs.Path == p
}
