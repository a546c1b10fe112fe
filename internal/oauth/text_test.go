package oauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckParams(t *testing.T) {
	for _, tc := range []struct {
		v    url.Values
		want string // "" for valid; else a word the description must contain
	}{
		{url.Values{"state": {"abc"}, "scope": {"a b"}, "login_hint": {"zoë"}}, ""},
		{url.Values{"state": {"\xff"}}, "state"},
		{url.Values{"nonce": {"a\x00b"}}, "nonce"},
		{url.Values{"resource": {"https://a.example", "https://b.example/\xc3"}}, "resource"},
		{url.Values{"a": {"\xff"}, "b": {"\x00"}}, "a is"}, // the first by name
		{url.Values{"\xff": {"x"}}, "parameter name"},
	} {
		err := CheckParams(tc.v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.v, err)
		case tc.want != "" && (err == nil || err.Code != CodeInvalidRequest || !strings.Contains(err.Description, tc.want)):
			t.Errorf("%v: %v, want invalid_request naming %q", tc.v, err, tc.want)
		}
	}
}

func TestCheckCharset(t *testing.T) {
	for cs, ok := range map[string]bool{"": true, "utf-8": true, "UTF-8": true, `"utf-8"`: true, "utf8": true, "us-ascii": true,
		"utf-16": false, "iso-8859-1": false, "UTF-16LE": false, "x": false} {
		params := map[string]string{}
		if cs != "" {
			params["charset"] = cs
		}
		err := CheckCharset(params)
		if (err == nil) != ok || (err != nil && err.Status != http.StatusUnsupportedMediaType) {
			t.Errorf("charset %q: %v", cs, err)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		body, want string // want: "" valid, else a word of the description
	}{
		{`{"client_name":"Zoë \u00e9 \ud83d\ude00 \ufffd","contacts":["a@example.com"],"n":1.5e3,"b":[true,false,null,{}]}`, ""},
		{"{\"client_name\":\"\xff\"}", "client_name"},
		{`{"client_name":"\ud800"}`, "client_name"},
		{`{"client_name":"\udc00\ud800"}`, "client_name"},
		{`{"client_name":"\ud800\u0041"}`, "client_name"},
		{`{"software_id":"a\u0000b"}`, "software_id"},
		{`{"contacts":["ok","\ud800x"]}`, "contacts"},
		{`{"jwks":{"keys":[{"kid":"\u0000"}]}}`, "jwks.keys"},
		{`{"client_name":"a","client_name":"b"}`, "client_name appears more than once"},
		{`{"client_name":"a","client_\u006eame":"b"}`, "more than once"},
		{`{"x":{"k":1,"k":2}}`, "x.k appears"},
		{`[{"a":1},{"a":1}]`, ""}, // same name in different objects
		{`{"\ud800":1}`, "member name"},
		{"{\"a\":1", "not valid JSON"},
		{"", "not valid JSON"},
	} {
		err := CheckJSON([]byte(tc.body))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.want != "" && (err == nil || err.Code != CodeInvalidRequest || !strings.Contains(err.Description, tc.want)):
			t.Errorf("%s: %v, want invalid_request saying %q", tc.body, err, tc.want)
		}
	}
}

// FuzzTextInput checks the text rules every endpoint's parsing applies:
// CheckParams accepts exactly valid UTF-8 without NUL; CheckJSON accepts
// only valid JSON whose decoded strings are exactly what the body says
// (no U+FFFD that a lone surrogate or an invalid byte would have become,
// no NUL) and whose objects have no repeated member, and every error it
// returns is a clean invalid_request.
func FuzzTextInput(f *testing.F) {
	for _, s := range []string{
		`{"client_name":"a","redirect_uris":["https://a.example/cb"]}`,
		`{"client_name":"\ud800"}`, `{"a":"\ud83d\ude00"}`, "{\"a\":\"\xff\"}", `{"a":1,"a":2}`,
		`{"a":"\u0000"}`, `{"a":{"b":[{"c":"\ufffd"}]}}`, `["\udfff"]`, "\"\xed\xa0\x80\"", `{"a":"\\ud800"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if perr := CheckParams(url.Values{"p": {s}}); (perr == nil) != (utf8.ValidString(s) && !strings.Contains(s, "\x00")) {
			t.Fatalf("CheckParams(%q) = %v", s, perr)
		}
		err := CheckJSON([]byte(s))
		if err != nil {
			if err.Code != CodeInvalidRequest || err.Status != http.StatusBadRequest {
				t.Fatalf("CheckJSON(%q): %v", s, err)
			}
			checkCharset(t, err)
			return
		}
		if !json.Valid([]byte(s)) || !utf8.ValidString(s) {
			t.Fatalf("CheckJSON accepted %q", s)
		}
		// Decode with encoding/json, independently checking member names
		// and counting U+FFFD in the decoded strings.
		dec := json.NewDecoder(strings.NewReader(s))
		var stack []map[string]bool
		var inObject []bool
		expectName := false
		decodedFFFD := 0
		for {
			tok, terr := dec.Token()
			if terr != nil {
				break
			}
			switch v := tok.(type) {
			case json.Delim:
				switch v {
				case '{':
					stack, inObject = append(stack, map[string]bool{}), append(inObject, true)
					expectName = true
					continue
				case '[':
					stack, inObject = append(stack, nil), append(inObject, false)
				default:
					stack, inObject = stack[:len(stack)-1], inObject[:len(inObject)-1]
				}
			case string:
				if strings.Contains(v, "\x00") {
					t.Fatalf("CheckJSON accepted a NUL in %q", s)
				}
				decodedFFFD += strings.Count(v, "\ufffd")
				if expectName {
					if stack[len(stack)-1][v] {
						t.Fatalf("CheckJSON accepted the repeated member %q in %q", v, s)
					}
					stack[len(stack)-1][v] = true
					expectName = false
					continue
				}
			}
			expectName = len(inObject) > 0 && inObject[len(inObject)-1]
		}
		written := strings.Count(s, "\ufffd") + strings.Count(strings.ToLower(s), `\ufffd`) - strings.Count(strings.ToLower(s), `\\ufffd`)
		if decodedFFFD != written && !bytes.Contains([]byte(s), []byte(`\\`)) {
			t.Fatalf("CheckJSON accepted %q, which decodes to %d U+FFFD where %d are written", s, decodedFFFD, written)
		}
	})
}

func BenchmarkCheckJSON(b *testing.B) {
	body := []byte(`{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","scope":"mcp:tools offline_access"}`)
	for b.Loop() {
		if err := CheckJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}
