package oauth

import (
	"net/url"
	"strings"
	"testing"
)

func TestValidateRedirectURI(t *testing.T) {
	for _, tc := range []struct {
		uri, appType string
		ok           bool
	}{
		{"https://claude.ai/api/mcp/auth_callback", "", true},
		{"https://app.example.com/cb?x=1", AppTypeWeb, true},
		{"http://localhost:6274/oauth/callback", "", true},
		{"http://127.0.0.1/callback", AppTypeNative, true},
		{"http://[::1]:33418/", AppTypeNative, true},
		{"http://127.0.0.1:8080/cb", AppTypeWeb, true},
		{"cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback", "", true},
		{"com.example.app:/oauth2redirect", AppTypeNative, true},
		{"com.example.app:/oauth2redirect", AppTypeWeb, false},
		{"http://example.com/cb", "", false},
		{"http://localhost.evil.com/cb", "", false},
		{"http://127.0.0.1.nip.io/cb", "", false},
		{"https://example.com/cb#frag", "", false},
		{"https://example.com/cb#", "", false},
		{"https://user:pw@example.com/cb", "", false},
		{"https://user@example.com/cb", "", false},
		{"javascript:alert(1)", "", false},
		{"JavaScript:alert(1)", "", false},
		{"data:text/html,<script>", "", false},
		{"file:///etc/passwd", "", false},
		{"vbscript:msgbox", "", false},
		{"HTTPS://example.com/cb", "", false},
		{"/relative/cb", "", false},
		{"https:///nohost", "", false},
		{"https://example.com/cb with space", "", false},
		{"https://example.com/\ncb", "", false},
		{"https://exämple.com/cb", "", false},
		{"", "", false},
		{"https://" + strings.Repeat("a", 2100) + ".com/", "", false},
		{"https://example.com:abc/cb", "", false},
		// Issue 17: no wildcards or invalid host names (matching is
		// byte-exact, so they would only ever match themselves) ...
		{"https://*.example/cb", "", false},
		{"https://app.*.example.com/cb", "", false},
		{"https://exa_mple.com/cb", "", false},
		{"https://-bad.example.com/cb", "", false},
		{"https://a..example.com/cb", "", false},
		{"https://ex%61mple.com/cb", "", false},
		{"myapp://*/cb", "", false},
		{"https://192.0.2.1/cb", "", true},
		{"https://[2001:db8::1]:8443/cb", "", true},
		{"https://xn--exmple-cua.com/cb", "", true},
		// ... and no query parameter of the authorization response.
		{"https://app.example.com/cb?code=x", "", false},
		{"https://app.example.com/cb?a=1&state=s", "", false},
		{"https://app.example.com/cb?iss=https://evil", "", false},
		{"https://app.example.com/cb?error=x", "", false},
		{"https://app.example.com/cb?error_description=x", "", false},
		{"https://app.example.com/cb?c%6Fde=x", "", false},
		{"http://127.0.0.1/cb?state", "", false},
		{"cursor://host/cb?code=1", "", false},
		{"https://app.example.com/cb?codes=1&tenant=a", "", true},
		{"https://app.example.com/cb?x=%zz", "", false},
	} {
		err := ValidateRedirectURI(tc.uri, tc.appType)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateRedirectURI(%q, %q) = %v, want ok=%v", tc.uri, tc.appType, err, tc.ok)
		}
		if err != nil && (err.Code != CodeInvalidRedirectURI || strings.ContainsAny(err.Description, "\r\n\t\"\\")) {
			t.Errorf("ValidateRedirectURI(%q): error %#v", tc.uri, err)
		}
	}
}

func TestMatchRedirectURI(t *testing.T) {
	registered := []string{
		"https://app.example.com/callback",
		"https://app.example.com/cb?tenant=a",
		"http://127.0.0.1/loopback",
		"http://localhost:3000/native",
		"http://[::1]/v6",
		"com.example.app:/oauth2redirect",
	}
	for _, tc := range []struct {
		req  string
		want string // "" means no match
	}{
		{"https://app.example.com/callback", "https://app.example.com/callback"},
		{"https://app.example.com/cb?tenant=a", "https://app.example.com/cb?tenant=a"},
		{"com.example.app:/oauth2redirect", "com.example.app:/oauth2redirect"},
		// RFC 8252 §7.3: loopback may vary the port, nothing else.
		{"http://127.0.0.1:51234/loopback", "http://127.0.0.1/loopback"},
		{"http://127.0.0.1/loopback", "http://127.0.0.1/loopback"},
		{"http://localhost:49152/native", "http://localhost:3000/native"},
		{"http://localhost/native", "http://localhost:3000/native"},
		{"http://[::1]:8080/v6", "http://[::1]/v6"},
		// Rejections (SECURITY.md: case, prefix, userinfo, path, query, scheme, port).
		{"https://APP.example.com/callback", ""},
		{"https://app.example.com/Callback", ""},
		{"https://app.example.com/callback/", ""},
		{"https://app.example.com/callback/extra", ""},
		{"https://app.example.com/callback?x=1", ""},
		{"https://app.example.com/cb?tenant=b", ""},
		{"https://app.example.com/cb", ""},
		{"https://app.example.com:8443/callback", ""},
		{"https://app.example.com:443/callback", ""},
		{"http://app.example.com/callback", ""},
		{"https://evil@app.example.com/callback", ""},
		{"https://app.example.com/callback#x", ""},
		{"https://app.example.com.evil.com/callback", ""},
		{"https://app.example.com/callback/../callback", ""},
		{"https://app.example.com/%63allback", ""},
		{"http://127.0.0.1:51234/loopback?x=1", ""},
		{"http://127.0.0.1:51234/loopback/", ""},
		{"http://127.0.0.1:51234/other", ""},
		{"http://127.0.0.2:51234/loopback", ""},
		{"http://localhost:51234/loopback", ""},
		{"https://127.0.0.1:51234/loopback", ""},
		{"http://127.0.0.1:abc/loopback", ""},
		{"http://127.0.0.1:/loopback", ""},
		{"http://evil@127.0.0.1:5000/loopback", ""},
		{"http://127.0.0.1:5000@evil.com/loopback", ""},
		{"http://127.0.0.1:5000\\@evil.com/loopback", ""},
		{"http://127.0.0.1:5000/loopback#frag", ""},
		{"HTTP://127.0.0.1:5000/loopback", ""},
		{"com.example.app:/oauth2redirect/x", ""},
	} {
		got, ok := MatchRedirectURI(registered, tc.req)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("MatchRedirectURI(%q) = %q, %v; want %q", tc.req, got, ok, tc.want)
		}
	}
}

// FuzzMatchRedirectURI checks the matching property from SECURITY.md: an
// accepted URI is byte-equal to a registered one, or an http loopback URI
// that differs from a registered one only in its port.
func FuzzMatchRedirectURI(f *testing.F) {
	for _, s := range []string{
		"https://app.example.com/callback", "http://127.0.0.1:5000/cb", "http://127.0.0.1:5000@evil.com/cb",
		"http://localhost:1/cb?x", "http://[::1]:2/cb", "https://app.example.com/callback/..;/", "http://127.0.0.1:99999999999/cb",
		"http://127.0.0.1:5000/cb#", "http://[::1/cb", "http://127.0.0.1:5000\\@x/cb",
	} {
		f.Add(s)
	}
	registered := []string{"https://app.example.com/callback", "http://127.0.0.1/cb", "http://[::1]:8080/cb", "http://localhost/cb"}
	f.Fuzz(func(t *testing.T, req string) {
		got, ok := MatchRedirectURI(registered, req)
		if !ok {
			return
		}
		if got == req {
			return
		}
		ru, err1 := url.Parse(req)
		gu, err2 := url.Parse(got)
		if err1 != nil || err2 != nil {
			t.Fatalf("matched unparsable %q to %q", req, got)
		}
		if ru.Scheme != "http" || !IsLoopbackHost(ru.Hostname()) || ru.Hostname() != gu.Hostname() ||
			ru.User != nil || ru.Fragment != "" || ru.EscapedPath() != gu.EscapedPath() || ru.RawQuery != gu.RawQuery {
			t.Fatalf("matched %q to %q: differs in more than the loopback port", req, got)
		}
		// The requested port may be any, or absent (RFC 8252 §7.3).
		host := strings.TrimSuffix(gu.Host, ":"+gu.Port())
		if !strings.HasPrefix(req, "http://"+host+":") && !strings.HasPrefix(req, "http://"+host+"/") {
			t.Fatalf("matched %q to %q: authority differs beyond the port", req, got)
		}
	})
}

func TestIssuerPath(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://auth.example.com":     "",
		"https://auth.example.com/":    "",
		"https://example.com/tenant":   "/tenant",
		"https://example.com/a/b":      "/a/b",
		"https://example.com/t%20x":    "/t%20x",
		"http://127.0.0.1:8080/tenant": "/tenant",
		"::not a url":                  "",
	} {
		if got := IssuerPath(issuer); got != want {
			t.Errorf("IssuerPath(%q) = %q, want %q", issuer, got, want)
		}
	}
}
