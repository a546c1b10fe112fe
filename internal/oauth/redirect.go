package oauth

import (
	"net"
	"net/url"
	"strings"
)

// Application types (OpenID Connect Dynamic Client Registration §2, sent by
// MCP clients since the 2026-07-28 revision).
const (
	AppTypeWeb    = "web"
	AppTypeNative = "native"
)

// maxRedirectURILen bounds what we parse and store.
const maxRedirectURILen = 2000

// forbiddenSchemes can execute or read local content in a browser; they are
// never acceptable redirect targets, whatever their case.
var forbiddenSchemes = map[string]bool{
	"javascript": true, "data": true, "file": true, "vbscript": true,
	"about": true, "blob": true, "filesystem": true, "view-source": true,
	"jar": true, "ws": true, "wss": true, "ftp": true, "mailto": true,
	"chrome": true, "chrome-extension": true, "resource": true,
}

// IsLoopbackHost reports whether host (as url.URL.Hostname returns it) is
// one of the loopback names RFC 8252 §7.3 and the MCP spec accept over http.
func IsLoopbackHost(host string) bool {
	switch host {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// ValidateRedirectURI checks a redirect URI at registration (OAuth 2.1
// §2.3.1, RFC 8252 §7, RFC 9700 §2.1). appType is "web", "native" or ""
// (not stated: MCP clients such as Cursor register private-use schemes
// without saying they are native, so both kinds of rule apply).
func ValidateRedirectURI(raw, appType string) *Error {
	bad := func(why string) *Error {
		return InvalidRedirectURI("redirect URI %q is not acceptable: %s", truncate(raw, 200), why)
	}
	if raw == "" {
		return bad("it is empty")
	}
	if len(raw) > maxRedirectURILen {
		return bad("it is too long")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f {
			return bad("it contains whitespace, control or non-ASCII characters")
		}
	}
	if strings.Contains(raw, "#") {
		return bad("it must not contain a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("it is not a valid URI")
	}
	if u.Scheme == "" {
		return bad("it must be an absolute URI")
	}
	// url.Parse lower-cases the scheme; look at what was actually sent.
	scheme := strings.ToLower(u.Scheme)
	if !strings.HasPrefix(raw, scheme+":") {
		return bad("the scheme must be lower case")
	}
	if forbiddenSchemes[scheme] {
		return bad("the " + scheme + " scheme is not allowed")
	}
	if u.User != nil || strings.Contains(hostPart(raw), "@") {
		return bad("it must not contain user information")
	}
	// Matching is byte-exact, so a wildcard or pattern would only ever
	// match itself; refusing it keeps anyone from believing otherwise.
	if strings.ContainsAny(hostPart(raw), "*%") {
		return bad("the host must be a host name or IP address (no wildcards or percent-encoding)")
	}
	if why := reservedQuery(u.RawQuery); why != "" {
		return bad(why)
	}
	switch scheme {
	case "https":
		if u.Host == "" || u.Hostname() == "" {
			return bad("it must name a host")
		}
		if !validHostName(u.Hostname()) {
			return bad("the host must be a valid host name or IP address")
		}
		if u.Port() != "" && !allDigits(u.Port()) {
			return bad("the port is not numeric")
		}
	case "http":
		if !IsLoopbackHost(u.Hostname()) {
			return bad("http is allowed only for loopback hosts (127.0.0.1, [::1], localhost); use https")
		}
		if u.Port() != "" && !allDigits(u.Port()) {
			return bad("the port is not numeric")
		}
	default:
		// A private-use URI scheme (RFC 8252 §7.1), for native apps only.
		if appType == AppTypeWeb {
			return bad("web clients must use https (or http on a loopback host)")
		}
		if u.Opaque == "" && u.Path == "" && u.Host == "" {
			return bad("it has no path")
		}
	}
	return nil
}

// responseParams are the parameters authd adds to a redirect (RFC 6749
// §4.1.2, §4.1.2.1, RFC 9207): a redirect URI whose query already carries
// one would reach the client with two values of it (…?code=x&code=…).
var responseParams = []string{"code", "state", "iss", "error", "error_description"}

// reservedQuery explains why query cannot be a redirect URI's query, or
// returns "".
func reservedQuery(query string) string {
	if query == "" {
		return ""
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return "its query is not valid form encoding"
	}
	for _, name := range responseParams {
		if v.Has(name) {
			return "its query must not carry " + name + ", a parameter of the authorization response"
		}
	}
	return ""
}

// validHostName reports whether h is an IP address or a host name of
// letters, digits and hyphens (RFC 1123 §2.1), in labels of at most 63
// characters that neither start nor end with a hyphen.
func validHostName(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// MatchRedirectURI returns the registered URI that requested matches, by
// exact string comparison (RFC 9700 §4.1.3), except that for http loopback
// redirect URIs the port is ignored (RFC 8252 §7.3: native apps get an
// ephemeral port at run time). Scheme, host, path and query must still be
// byte-equal; nothing is normalised.
func MatchRedirectURI(registered []string, requested string) (string, bool) {
	for _, r := range registered {
		if r == requested {
			return r, true
		}
	}
	req, ok := loopbackWithoutPort(requested)
	if !ok {
		return "", false
	}
	for _, r := range registered {
		if reg, ok := loopbackWithoutPort(r); ok && reg == req {
			return r, true
		}
	}
	return "", false
}

// loopbackWithoutPort returns an http loopback URI with its port removed,
// reporting false for anything else (including malformed ports, userinfo,
// fragments or a missing path separator that would make "host" ambiguous).
func loopbackWithoutPort(raw string) (string, bool) {
	const prefix = "http://"
	if !strings.HasPrefix(raw, prefix) || strings.ContainsAny(raw, "#@\\") {
		return "", false
	}
	rest := raw[len(prefix):]
	end := strings.IndexAny(rest, "/?")
	authority, tail := rest, ""
	if end >= 0 {
		authority, tail = rest[:end], rest[end:]
	}
	host, port := authority, ""
	if h, p, err := net.SplitHostPort(authority); err == nil {
		host, port = h, p
		if port == "" || !allDigits(port) {
			return "", false
		}
	} else if strings.HasPrefix(authority, "[") && strings.HasSuffix(authority, "]") {
		host = authority[1 : len(authority)-1]
	} else if strings.Contains(authority, ":") {
		return "", false
	}
	if !IsLoopbackHost(host) {
		return "", false
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return prefix + host + tail, true
}

// hostPart returns the authority component of raw, if it has one.
func hostPart(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return ""
	}
	rest := raw[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// IssuerPath is the path of an issuer URL without a trailing slash ("" for
// an issuer at the host root): where authd mounts its endpoints and pages
// (RFC 8414 §3.1). A URL that does not parse has none.
func IssuerPath(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(u.EscapedPath(), "/")
}
