package clientauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

type fuzzClients map[string]store.Client

func (f fuzzClients) GetClient(_ context.Context, id string, _ time.Time) (store.Client, error) {
	if c, ok := f[id]; ok {
		return c, nil
	}
	return store.Client{}, store.ErrNotFound
}

// FuzzTokenRequestAuthentication parses arbitrary /token bodies and
// Authorization headers with ReadForm and Authenticate, against one
// confidential and one public client. Property: it never panics; an
// accepted form holds only valid UTF-8 without NUL; failures
// are 400 invalid_request, 401 invalid_client or 413 with a clean
// description; and a success is justified by an independent reading of
// the request with net/url and net/http — the confidential client only with
// its exact secret (Basic, per RFC 6749 §2.3.1 form-encoded, or in the
// body), the public client only by client_id without any secret, and never
// with two methods or repeated credentials at once.
func FuzzTokenRequestAuthentication(f *testing.F) {
	const secret = "authd_cs_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	basic := func(id, sec string) string {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
		return r.Header.Get("Authorization")
	}
	for _, s := range [][2]string{
		{"grant_type=client_credentials", basic("conf", secret)},
		{"grant_type=client_credentials&client_id=conf&client_secret=" + secret, ""},
		{"client_id=pub", ""},
		{"client_id=pub&client_secret=x", ""},
		{"client_id=conf", ""},
		{"client_id=conf&client_id=pub&client_secret=" + secret, ""},
		{"client_secret=" + secret, basic("conf", secret)},
		{"client_id=pub", basic("conf", secret)},
		{"", basic("conf", secret[:len(secret)-1])},
		{"", "Basic " + "Y29uZjo="},
		{"", "Basic !!!"},
		{"", "basic Y29uZg=="},
		{"", "Bearer abc"},
		{"client_id=%00&client_secret=%ff", ""},
		{"a=%zz", ""},
		{"client_id=conf;client_secret=" + secret, ""},
	} {
		f.Add(s[0], s[1])
	}
	clients := fuzzClients{
		"conf": {ID: "conf", SecretHash: oauth.HashSecret(secret)},
		"pub":  {ID: "pub"},
	}
	a := &Authenticator{Clients: clients}
	f.Fuzz(func(t *testing.T, body, authorization string) {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authorization != "" {
			if strings.ContainsAny(authorization, "\r\n\x00") {
				return // not a header value a client can send
			}
			r.Header.Set("Authorization", authorization)
		}
		form, err := ReadForm(httptest.NewRecorder(), r, 0)
		if err != nil {
			checkErr(t, err)
			return
		}
		// What ReadForm accepts is text all through (issue 16 part 6).
		for k, vs := range form {
			for _, v := range append(vs, k) {
				if !utf8.ValidString(v) || strings.Contains(v, "\x00") {
					t.Fatalf("ReadForm accepted %q in %q", v, body)
				}
			}
		}
		c, method, err := a.Authenticate(r, form)
		if err != nil {
			checkErr(t, err)
			return
		}
		// Independent reading.
		ref, perr := url.ParseQuery(body)
		if perr != nil {
			t.Fatalf("accepted an unparsable body %q", body)
		}
		if len(ref["client_id"]) > 1 || len(ref["client_secret"]) > 1 {
			t.Fatalf("accepted repeated credentials: %q", body)
		}
		user, pass, hasBasic := refBasic(authorization)
		switch c.ID {
		case "conf":
			switch {
			case method == MethodBasic && hasBasic && user == "conf" && pass == secret && ref.Get("client_secret") == "" &&
				(ref.Get("client_id") == "" || ref.Get("client_id") == "conf"):
			case method == MethodPost && !hasBasic && ref.Get("client_id") == "conf" && ref.Get("client_secret") == secret:
			default:
				t.Fatalf("confidential client authenticated (%s) by body %q, Authorization %q", method, body, authorization)
			}
		case "pub":
			if method != MethodNone || ref.Get("client_secret") != "" || (hasBasic && (user != "pub" || pass != "")) ||
				(!hasBasic && ref.Get("client_id") != "pub") {
				t.Fatalf("public client authenticated (%s) by body %q, Authorization %q", method, body, authorization)
			}
		default:
			t.Fatalf("authenticated unknown client %q", c.ID)
		}
	})
}

// refBasic reads "Basic base64(urlencode(id):urlencode(secret))", allowing
// any letter case in the scheme and blanks around the credentials.
func refBasic(h string) (id, secret string, ok bool) {
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	i := strings.IndexByte(string(raw), ':')
	if i < 0 {
		return "", "", false
	}
	id, err1 := url.QueryUnescape(string(raw[:i]))
	secret, err2 := url.QueryUnescape(string(raw[i+1:]))
	return id, secret, err1 == nil && err2 == nil
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("non-OAuth error %v", err)
	}
	switch {
	case oe.Code == oauth.CodeInvalidRequest && (oe.Status == 400 || oe.Status == 413):
	case oe.Code == oauth.CodeInvalidClient && oe.Status == 401:
	default:
		t.Fatalf("unexpected error %d %s", oe.Status, oe.Code)
	}
	for _, c := range []byte(oe.Description) {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Fatalf("description %q has byte %#x", oe.Description, c)
		}
	}
}
