package oauth

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzScopeAndResource checks the scope and resource parsers on any
// input: ParseScope yields only RFC 6749 §3.3 tokens, without duplicates,
// and is idempotent through JoinScope; CanonicalResource yields an absolute
// URI without fragment or userinfo that is its own canonical form, and
// errors carry a description within RFC 6749's charset.
func FuzzScopeAndResource(f *testing.F) {
	for _, s := range [][2]string{
		{"mcp:tools mcp:resources", "https://mcp.example.com/mcp"},
		{"a  a\tb", "HTTPS://MCP.Example.COM:443/"},
		{"\"quoted\" back\\slash", "https://mcp.example.com/mcp#frag"},
		{"' OR 1=1 --", "https://user:pw@mcp.example.com/"},
		{"\x00 \x7f é", "mcp.example.com"},
		{strings.Repeat("s ", 3000), "https://mcp.example.com/a/../b"},
		{"openid offline_access", "urn:example:resource"},
		{"mcp:tools claudeai offline_access openid", "https://mcp.example.com/mcp"},
		{"", "http://[::1]:80/"},
		{"x", "https://xn--80ak6aa92e.com/"},
		{"x", "https://mcp.example.com/%2e%2e/admin"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, scope, resource string) {
		toks, err := ParseScope(scope)
		if err != nil {
			checkCharset(t, err)
		} else {
			seen := map[string]bool{}
			for _, tok := range toks {
				if tok == "" || seen[tok] {
					t.Fatalf("ParseScope(%q): empty or duplicate token %q", scope, tok)
				}
				seen[tok] = true
				for i := 0; i < len(tok); i++ {
					if c := tok[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
						t.Fatalf("ParseScope(%q): token %q has byte %#x", scope, tok, c)
					}
				}
			}
			again, err := ParseScope(JoinScope(toks))
			if err != nil || JoinScope(again) != JoinScope(toks) {
				t.Fatalf("ParseScope is not idempotent on %q", scope)
			}
		}
		// ScopeRule: what may be granted is requested, declared, and never
		// a protocol scope; the lenient rule fails only where ParseScope
		// does, and the strict one keeps the same set when it succeeds.
		known := []string{"mcp:tools", "a", "offline_access"}
		lenient, lerr := ScopeRule{Known: known}.Requested(scope)
		if (lerr == nil) != (err == nil) {
			t.Fatalf("ScopeRule.Requested(%q) error %v, ParseScope error %v", scope, lerr, err)
		}
		for _, s := range lenient {
			if ProtocolScope(s) || !slices.Contains(known, s) || !slices.Contains(toks, s) {
				t.Fatalf("ScopeRule.Requested(%q) grants %q", scope, s)
			}
		}
		if strict, serr := (ScopeRule{Known: known, RejectUnknown: true}).Requested(scope); serr != nil {
			checkCharset(t, serr)
		} else if !slices.Equal(strict, lenient) {
			t.Fatalf("strict %v, lenient %v for %q", strict, lenient, scope)
		}

		canon, err := CanonicalResource(resource)
		if err != nil {
			checkCharset(t, err)
			return
		}
		u, perr := url.Parse(canon)
		if perr != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(canon, "#") || u.User != nil {
			t.Fatalf("CanonicalResource(%q) = %q: not an absolute URI without fragment and userinfo", resource, canon)
		}
		if again, err := CanonicalResource(canon); err != nil || again != canon {
			t.Fatalf("CanonicalResource not idempotent: %q -> %q -> %q (%v)", resource, canon, again, err)
		}
	})
}

func checkCharset(t *testing.T, e *Error) {
	t.Helper()
	for _, c := range []byte(e.Description) {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Fatalf("description %q has byte %#x", e.Description, c)
		}
	}
}
