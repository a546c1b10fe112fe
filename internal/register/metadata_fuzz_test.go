package register

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// FuzzRegistrationMetadata decodes and validates arbitrary RFC 7591
// request bodies as POST /register does. Property: whatever is accepted is
// safe to store and to show — every redirect URI passes
// oauth.ValidateRedirectURI, none has a script-like scheme in any letter
// case, the grant and response types are ones authd implements, the text
// fields are valid UTF-8 without control characters — and validation is
// idempotent (accepted metadata, encoded and decoded again, validates to the
// same thing). Rejections are RFC 7591 error codes with a clean description.
func FuzzRegistrationMetadata(f *testing.F) {
	for _, s := range []string{
		`{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"}`,
		`{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["authorization_code","refresh_token"],"client_name":"MCP"}`,
		`{"redirect_uris":["JavaScript:alert(1)"]}`,
		`{"redirect_uris":["javascript://example.com/%0aalert(1)"]}`,
		`{"redirect_uris":["data:text/html,<script>x</script>"]}`,
		`{"redirect_uris":["https://*.example.com/cb"]}`,
		`{"redirect_uris":["https://app.example.com/cb#x"]}`,
		`{"redirect_uris":["https://u:p@app.example.com/cb"]}`,
		`{"redirect_uris":["com.example.app:/cb"],"application_type":"native"}`,
		`{"redirect_uris":["https://app.example.com/cb"],"client_name":"a\u0000b","logo_uri":"javascript:x"}`,
		`{"redirect_uris":"https://app.example.com/cb"}`,
		`{"redirect_uris":[null,1,{}]}`,
		`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}`,
		`{"grant_types":["implicit"],"response_types":["token"]}`,
		`{"client_id":"admin","client_secret":"chosen","redirect_uris":["https://app.example.com/cb"]}`,
		`{"scope":"a \"b\" c","redirect_uris":["https://app.example.com/cb"]}`,
		`{"contacts":["a@example.com",""],"redirect_uris":["https://app.example.com/cb"]}`,
		`[]`, `null`, `{"redirect_uris":["https://app.example.com/cb"],"redirect_uris":["https://evil.example/cb"]}`,
		`{"redirect_uris":["https://app.example.com/cb"],"client_name":"\ud800","software_id":"\udfff\ud800"}`,
		"{\"redirect_uris\":[\"https://app.example.com/cb\"],\"contacts\":[\"\xff@example.com\"]}",
	} {
		f.Add([]byte(s))
	}
	p := DefaultPolicy()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, oerr := decodeMetadata(body)
		if oerr == nil {
			var md store.ClientMetadata
			md, oerr = p.validate(req.ClientMetadata)
			if oerr == nil {
				checkAccepted(t, body, md)
				enc, err := json.Marshal(md)
				if err != nil {
					t.Fatal(err)
				}
				again, oerr2 := decodeMetadata(enc)
				if oerr2 != nil {
					t.Fatalf("re-decoding accepted metadata failed: %v", oerr2)
				}
				md2, oerr2 := p.validate(again.ClientMetadata)
				if oerr2 != nil {
					t.Fatalf("accepted metadata fails validation the second time: %v\n%s", oerr2, enc)
				}
				enc2, _ := json.Marshal(md2)
				if string(enc) != string(enc2) {
					t.Fatalf("validation is not idempotent:\n%s\n%s", enc, enc2)
				}
				return
			}
		}
		switch oerr.Code {
		case oauth.CodeInvalidRequest, oauth.CodeInvalidClientMetadata, oauth.CodeInvalidRedirectURI:
		default:
			t.Fatalf("rejected with %q", oerr.Code)
		}
		for _, c := range []byte(oerr.Description) {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Fatalf("description %q has byte %#x", oerr.Description, c)
			}
		}
	})
}

func checkAccepted(t *testing.T, body []byte, m store.ClientMetadata) {
	t.Helper()
	for _, uri := range m.RedirectURIs {
		if err := oauth.ValidateRedirectURI(uri, m.ApplicationType); err != nil {
			t.Fatalf("accepted redirect URI %q fails validation: %v", uri, err)
		}
		scheme, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(uri)), ":")
		switch scheme {
		case "javascript", "data", "vbscript", "file", "blob", "about":
			t.Fatalf("accepted a %s: redirect URI from %s", scheme, body)
		}
	}
	for _, g := range m.GrantTypes {
		switch g {
		case GrantAuthorizationCode, "refresh_token", "client_credentials":
		default:
			t.Fatalf("accepted grant type %q", g)
		}
	}
	for _, s := range []string{m.ClientName, m.SoftwareID, m.SoftwareVersion, m.ClientURI, m.LogoURI, m.TOSURI, m.PolicyURI, m.Scope} {
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted text %q with control characters or invalid UTF-8", s)
		}
	}
}
