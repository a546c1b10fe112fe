package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Tests for the findings of the outside security review (issue 17).

// TestSecurityInvalidClientAlwaysChallenges: every 401 invalid_client from
// /token and /revoke carries a Basic challenge (RFC 6749 §5.2, RFC 9110
// §15.5.2), also when the client sent a Bearer token or no credentials at
// all, not only when it tried Basic.
func TestSecurityInvalidClientAlwaysChallenges(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, nil)
	for _, path := range []string{"/token", "/revoke"} {
		for _, c := range []struct {
			name, authz string
			form        url.Values
		}{
			{"nothing", "", url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}},
			{"bearer", "Bearer some-token", url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}},
			{"unknown client_id", "", url.Values{"grant_type": {"client_credentials"}, "token": {"x"}, "client_id": {"nobody"}}},
			{"basic, wrong", "Basic " + basicAuth("nobody", "wrong"), url.Values{"grant_type": {"client_credentials"}, "token": {"x"}}},
		} {
			req, err := http.NewRequest(http.MethodPost, s.inst.URL+path, strings.NewReader(c.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if c.authz != "" {
				req.Header.Set("Authorization", c.authz)
			}
			r, err := sendOAuth(req)
			if err != nil {
				t.Fatal(err)
			}
			what := path + " with " + c.name
			wantOAuthError(t, what, r, http.StatusUnauthorized, "invalid_client")
			if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="authd"` {
				t.Errorf("%s: WWW-Authenticate %q, want a Basic challenge", what, got)
			}
		}
	}
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}
