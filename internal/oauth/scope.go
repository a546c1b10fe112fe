package oauth

import (
	"net/url"
	"slices"
	"strings"
)

const (
	maxScopeLen    = 2000
	maxResourceLen = 2000
	maxResources   = 10
)

// ParseScope splits a scope parameter (RFC 6749 §3.3) into its tokens,
// dropping duplicates and keeping their order. Each token must be
// 1*( %x21 / %x23-5B / %x5D-7E ).
func ParseScope(s string) ([]string, *Error) {
	if len(s) > maxScopeLen {
		return nil, InvalidScope("scope is too long")
	}
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return nil, InvalidScope("scope contains a character not allowed by RFC 6749 section 3.3")
			}
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out, nil
}

// JoinScope is the inverse of ParseScope.
func JoinScope(scopes []string) string { return strings.Join(scopes, " ") }

// ParseResources validates RFC 8707 resource indicators: each an absolute
// URI without a fragment. They are returned in canonical form (lower-case
// scheme and host, default port and a lone trailing "/" dropped) so that
// "https://MCP.example.com/" and "https://mcp.example.com" name the same
// resource, as the MCP spec's canonical server URI asks.
func ParseResources(values []string) ([]string, *Error) {
	if len(values) > maxResources {
		return nil, InvalidTarget("too many resource parameters")
	}
	var out []string
	for _, v := range values {
		r, err := CanonicalResource(v)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// CanonicalResource validates one resource indicator and returns its
// canonical form (see ParseResources).
func CanonicalResource(v string) (string, *Error) {
	bad := func(why string) *Error {
		return InvalidTarget("resource %q is invalid: %s", truncate(v, 200), why)
	}
	if v == "" || len(v) > maxResourceLen {
		return "", bad("it must be a non-empty absolute URI of reasonable length")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= 0x20 || c >= 0x7f {
			return "", bad("it contains whitespace, control or non-ASCII characters")
		}
	}
	if strings.Contains(v, "#") {
		return "", bad("it must not contain a fragment (RFC 8707 section 2)")
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "", bad("it must be an absolute URI with a host")
	}
	if u.User != nil {
		return "", bad("it must not contain user information")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", bad("only http and https resources are supported")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" { // "http://:80" has a Host but no host name
		return "", bad("it must be an absolute URI with a host")
	}
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		if !allDigits(port) {
			return "", bad("the port is not numeric")
		}
		host += ":" + port
	}
	u.Host = host
	if u.Path == "/" && u.RawQuery == "" {
		u.Path = ""
		u.RawPath = ""
	}
	return u.String(), nil
}

// Subset reports whether every element of a is in b.
func Subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Union returns a followed by the elements of b not already in a.
func Union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// Scopes a client addresses to the authorization server itself rather than
// to a resource. They are understood at every endpoint, never fail a
// request, and are never granted: they name no permission at a resource,
// so they appear in no token, consent or grant.
const (
	// ScopeOfflineAccess asks for a refresh token (OpenID Connect Core
	// §11; MCP SEP-2207 lets clients add it when the server's metadata
	// lists it). authd does not need it: a refresh token is issued exactly
	// when the client registered the refresh_token grant, with or without
	// offline_access, as the OAuth 2.1 client metadata says.
	ScopeOfflineAccess = "offline_access"
	// ScopeOpenID asks for an OpenID Connect ID token; authd issues none,
	// so it is ignored.
	ScopeOpenID = "openid"
)

// ProtocolScope reports whether s is one of the scopes above.
func ProtocolScope(s string) bool { return s == ScopeOfflineAccess || s == ScopeOpenID }

// ScopeRule is what the server does with requested scopes (RFC 6749 §3.3),
// the one rule /authorize and /token both apply before their per-client
// and per-resource checks.
type ScopeRule struct {
	// Known are the scopes the operator declared; empty means every
	// well-formed scope is known.
	Known []string
	// RejectUnknown answers a request naming an unknown scope with
	// invalid_scope. By default such scopes are dropped: RFC 6749 §3.3 lets
	// the server issue fewer scopes than requested and say so in the
	// token response's scope, and real clients add values of their own
	// (such as "claudeai") that no server declares.
	RejectUnknown bool
}

// Requested parses the scope parameter param and returns the scopes that
// may be granted: protocol scopes (offline_access, openid) are dropped,
// and so are unknown ones unless RejectUnknown. An empty result means the
// request names no grantable scope, which the caller treats like an absent
// scope parameter (the pre-defined default of RFC 6749 §3.3 applies).
func (r ScopeRule) Requested(param string) ([]string, *Error) {
	toks, err := ParseScope(param)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range toks {
		switch {
		case ProtocolScope(s):
		case len(r.Known) == 0 || slices.Contains(r.Known, s):
			out = append(out, s)
		case r.RejectUnknown:
			return nil, InvalidScope("scope %s is not known to this server", truncate(s, 100))
		}
	}
	return out, nil
}
