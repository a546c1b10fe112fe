package oauth

import (
	"strings"
	"testing"
)

// redirectAttackSeeds are redirect URIs from the attack classes real
// servers fell for: case changes, prefixes, userinfo, "..;/", encoded
// separators, added queries, fragments, loopback look-alikes, script
// schemes, whitespace and control characters.
var redirectAttackSeeds = [][2]string{
	{"https://app.example.com/cb", "https://app.example.com/cb"},
	{"https://app.example.com/cb", "https://APP.example.com/cb"},
	{"https://app.example.com/cb", "https://app.example.com/CB"},
	{"https://app.example.com/cb", "https://app.example.com/cb/../x"},
	{"https://app.example.com/cb", "https://app.example.com/cb..;/x"},
	{"https://app.example.com/cb", "https://app.example.com/cb%2f..%2fx"},
	{"https://app.example.com/cb", "https://app.example.com/cbx"},
	{"https://app.example.com/cb", "https://app.example.com/cb?x=1"},
	{"https://app.example.com/cb", "https://app.example.com/cb#"},
	{"https://app.example.com/cb", "https://evil@app.example.com/cb"},
	{"https://app.example.com/cb", "https://app.example.com@evil.example/cb"},
	{"https://app.example.com/cb", "https://app.example.com:443/cb"},
	{"https://app.example.com/cb", "http://app.example.com/cb"},
	{"https://app.example.com/cb?a=1", "https://app.example.com/cb?a=1&b=2"},
	{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb"},
	{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb?x"},
	{"http://127.0.0.1/cb", "http://127.0.0.1:5000@evil.example/cb"},
	{"http://127.0.0.1/cb", "http://127.0.0.1.evil.example:5000/cb"},
	{"http://127.0.0.1/cb", "http://localhost:5000/cb"},
	{"http://127.0.0.1/cb", "http://127.0.0.1:0x50/cb"},
	{"http://127.0.0.1/cb", "http://127.0.0.1:99999999999999999999/cb"},
	{"http://127.0.0.1:8080/cb", "http://127.0.0.1:8081/cb"},
	{"http://[::1]/cb", "http://[::1]:5000/cb"},
	{"http://[::1]/cb", "http://[::1%25eth0]:5000/cb"},
	{"http://localhost/cb", "http://localhost:1234/cb"},
	{"com.example.app:/oauth", "com.example.app:/oauth"},
	{"com.example.app:/oauth", "COM.example.app:/oauth"},
	{"https://app.example.com/cb", "javascript:alert(1)//https://app.example.com/cb"},
	{"https://app.example.com/cb", " https://app.example.com/cb"},
	{"https://app.example.com/cb", "https://app.example.com/cb\x00"},
	{"https://app.example.com/cb", "https://app.example.com\\@evil.example/cb"},
}

// splitLoopback splits an http URI into the text before the port, the port
// digits and the text after, by plain string scanning (independent of
// net/url). ok is false unless the scheme is http and the authority is a
// host with an optional all-digit port.
func splitLoopback(u string) (before, port, after string, ok bool) {
	const scheme = "http://"
	if !strings.HasPrefix(u, scheme) {
		return "", "", "", false
	}
	rest := u[len(scheme):]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth, after := rest[:end], rest[end:]
	host := auth
	if i := strings.LastIndex(auth, ":"); i >= 0 && !strings.HasSuffix(auth, "]") {
		host, port = auth[:i], auth[i+1:]
		for _, c := range port {
			if c < '0' || c > '9' {
				return "", "", "", false
			}
		}
	}
	if strings.ContainsAny(host, "@\\%") {
		return "", "", "", false
	}
	return scheme + host, port, after, true
}

// FuzzRedirectURIProperty checks validation and matching together, for any
// registered and requested URI: if the registered URI is valid and the
// requested one matches it, then the requested URI is byte-for-byte the
// registered one, or both are http loopback URIs (127.0.0.1, [::1] or
// localhost, as registered) that differ only in the port — the same host
// text, path, query and no fragment or userinfo. And what matches is
// itself a valid redirect URI.
func FuzzRedirectURIProperty(f *testing.F) {
	for _, s := range redirectAttackSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if ValidateRedirectURI(registered, "") != nil {
			return
		}
		got, ok := MatchRedirectURI([]string{registered}, requested)
		if !ok {
			return
		}
		if got != registered {
			t.Fatalf("MatchRedirectURI returned %q, not the registered %q", got, registered)
		}
		if requested == registered {
			return
		}
		rb, rp, ra, ok1 := splitLoopback(registered)
		qb, qp, qa, ok2 := splitLoopback(requested)
		if !ok1 || !ok2 || rb != qb || ra != qa || qp == "" && rp == "" || strings.Contains(qa, "#") {
			t.Fatalf("requested %q matched registered %q but differs in more than the port", requested, registered)
		}
		if !IsLoopbackHost(strings.Trim(strings.TrimPrefix(qb, "http://"), "[]")) {
			t.Fatalf("non-loopback %q matched %q with another port", requested, registered)
		}
		if err := ValidateRedirectURI(requested, ""); err != nil {
			t.Fatalf("matched %q is not a valid redirect URI: %v", requested, err)
		}
	})
}
