package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPKCE(t *testing.T) {
	// RFC 7636 Appendix B.
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge := "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if got := S256Challenge(verifier); got != challenge {
		t.Fatalf("S256Challenge = %q", got)
	}
	if !ValidChallenge(challenge) || !ValidVerifier(verifier) {
		t.Fatal("RFC 7636 example not valid")
	}
	if !VerifyPKCE(challenge, MethodS256, verifier) {
		t.Fatal("RFC 7636 example did not verify")
	}
	for _, tc := range []struct{ name, challenge, method, verifier string }{
		{"wrong verifier", challenge, MethodS256, strings.Replace(verifier, "d", "e", 1)},
		{"plain method", verifier, "plain", verifier},
		{"no method", challenge, "", verifier},
		{"verifier without challenge", "", MethodS256, verifier},
		{"challenge without verifier", challenge, MethodS256, ""},
		{"short verifier", S256Challenge("short"), MethodS256, "short"},
		{"bad charset", S256Challenge(strings.Repeat("a", 42) + "!"), MethodS256, strings.Repeat("a", 42) + "!"},
		{"too long", S256Challenge(strings.Repeat("a", 129)), MethodS256, strings.Repeat("a", 129)},
	} {
		if VerifyPKCE(tc.challenge, tc.method, tc.verifier) {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if !ValidVerifier(strings.Repeat("a", 43)) || !ValidVerifier(strings.Repeat("~", 128)) {
		t.Error("boundary lengths rejected")
	}
	for _, c := range []string{"", "abc", challenge + "A", strings.Repeat("+", 43)} {
		if ValidChallenge(c) {
			t.Errorf("ValidChallenge(%q) accepted", c)
		}
	}
}

func FuzzVerifyPKCE(f *testing.F) {
	f.Add("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, verifier, challenge string) {
		if VerifyPKCE(challenge, MethodS256, verifier) {
			if !ValidVerifier(verifier) || S256Challenge(verifier) != challenge {
				t.Fatalf("accepted verifier %q for challenge %q", verifier, challenge)
			}
		}
	})
}

func TestTokensAndSecrets(t *testing.T) {
	a, b := NewToken(PrefixRefreshToken), NewToken(PrefixRefreshToken)
	if a == b || !strings.HasPrefix(a, PrefixRefreshToken) || len(a) != len(PrefixRefreshToken)+43 {
		t.Fatalf("NewToken: %q %q", a, b)
	}
	if d := Digest(a); d == Digest(b) || Digest(a) != d || strings.Contains(d, a) {
		t.Fatal("Digest not a stable one-way function of its input")
	}
	secret := NewToken(PrefixClientSecret)
	h := HashSecret(secret)
	if strings.Contains(h, secret) || !IsSecretHash(h) {
		t.Fatalf("HashSecret = %q", h)
	}
	if !VerifySecret(h, secret) || VerifySecret(h, secret+"x") || VerifySecret(h, "") {
		t.Fatal("VerifySecret (sha256)")
	}
	bh, err := HashChosenSecret("correct horse battery staple")
	if err != nil || !IsSecretHash(bh) {
		t.Fatal(err)
	}
	if !VerifySecret(bh, "correct horse battery staple") || VerifySecret(bh, "wrong") {
		t.Fatal("VerifySecret (bcrypt)")
	}
	// Unknown client: empty hash never verifies, even against the dummy.
	if VerifySecret("", "authd-dummy-secret-for-constant-time-comparison") || VerifySecret("", "") {
		t.Fatal("empty hash verified")
	}
	if VerifySecret("md5$abc", "abc") || IsSecretHash("plaintext") {
		t.Fatal("unknown scheme accepted")
	}
}

func TestScopeAndResources(t *testing.T) {
	got, err := ParseScope("  mcp:read  mcp:write mcp:read ")
	if err != nil || JoinScope(got) != "mcp:read mcp:write" {
		t.Fatalf("ParseScope = %v, %v", got, err)
	}
	for _, bad := range []string{"a\"b", "a\\b", "caf\u00e9", "a\x00b", "a\tb", strings.Repeat("a", 2001)} {
		if _, err := ParseScope(bad); err == nil || err.Code != CodeInvalidScope {
			t.Errorf("ParseScope(%q) = %v", bad, err)
		}
	}
	res, err := ParseResources([]string{"https://MCP.Example.com:443/", "https://mcp.example.com", "https://mcp.example.com/mcp"})
	if err != nil || len(res) != 2 || res[0] != "https://mcp.example.com" || res[1] != "https://mcp.example.com/mcp" {
		t.Fatalf("ParseResources = %v, %v", res, err)
	}
	for _, bad := range []string{"", "mcp.example.com", "/mcp", "https://mcp.example.com/#x", "urn:x:y", "ftp://x.example", "https://u:p@x.example/", "https://x.example/ a"} {
		if _, err := CanonicalResource(bad); err == nil || err.Code != CodeInvalidTarget {
			t.Errorf("CanonicalResource(%q) = %v", bad, err)
		}
	}
	if !Subset([]string{"a"}, []string{"a", "b"}) || Subset([]string{"c"}, []string{"a"}) {
		t.Fatal("Subset")
	}
	if got := Union([]string{"a", "b"}, []string{"b", "c"}); JoinScope(got) != "a b c" {
		t.Fatalf("Union = %v", got)
	}
}

type outage struct{}

func (outage) Error() string     { return "dial tcp 10.0.0.5:5432: connection refused" }
func (outage) Unavailable() bool { return true }

func TestWriteError(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		code, desc string
	}{
		{"oauth error", InvalidGrant("code expired"), 400, "invalid_grant", "code expired"},
		{"invalid client", InvalidClient("client authentication failed").WithHeader("WWW-Authenticate", `Basic realm="authd"`), 401, "invalid_client", "client authentication failed"},
		{"wrapped", fmt.Errorf("ctx: %w", InvalidScope("nope")), 400, "invalid_scope", "nope"},
		{"internal", errors.New("pq: password=hunter2 failed"), 500, "server_error", "internal server error"},
		{"db down", fmt.Errorf("get client: %w", outage{}), 503, "temporarily_unavailable", "the service is temporarily unavailable, retry later"},
		{"control chars", InvalidRequest("bad\r\nSet-Cookie: x=1\t\"q\\"), 400, "invalid_request", "bad  Set-Cookie: x=1 'q/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/token", nil)
			var logged strings.Builder
			WriteError(rec, req, slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})), tc.err)
			if rec.Code != tc.status {
				t.Fatalf("status %d", rec.Code)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body["error"] != tc.code || body["error_description"] != tc.desc {
				t.Fatalf("body %v", body)
			}
			if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("headers %v", rec.Header())
			}
			if strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "10.0.0.5") {
				t.Fatal("internal cause leaked to the client")
			}
			if tc.status >= 500 && !strings.Contains(logged.String(), "level=ERROR") {
				t.Fatalf("5xx not logged at error level: %s", logged.String())
			}
		})
	}
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("POST", "/", nil), nil, InvalidClient("x").WithHeader("WWW-Authenticate", `Basic realm="authd"`))
	if rec.Header().Get("WWW-Authenticate") != `Basic realm="authd"` {
		t.Fatal("extra header not written")
	}
}
