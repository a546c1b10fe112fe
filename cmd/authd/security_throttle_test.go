package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// fromNetwork is a transport that sends every request as coming from addr
// (X-Forwarded-For through the trusted proxy the tests run behind).
type fromNetwork struct{ addr string }

func (f fromNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return http.DefaultTransport.RoundTrip(r)
}

// TestSecurityThrottlePublicClientNotLockedOut: anyone may present a
// public client's id, so failures with it (here: made-up secrets from
// three networks, well past the per-client budget) are charged to the
// failing networks only; the client's users, on another network, go on
// exchanging codes and refreshing tokens.
func TestSecurityThrottlePublicClientNotLockedOut(t *testing.T) {
	t.Parallel()
	s := newSecEnv(t, map[string]string{
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_PER_MINUTE":     "1", // refills too slowly to blur the budget on a slow machine
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_IP_BURST":          "20",
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_PER_MINUTE": "30",
		"AUTHD_RATE_LIMITS_CLIENT_AUTH_FAILURES_PER_CLIENT_BURST":      "60",
	})
	const redirect = "http://127.0.0.1:9/cb"
	id := s.publicClient(t, redirect)
	conf := s.oauthConfig(id, "", redirect)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: fromNetwork{"203.0.113.9"}})
	code, verifier := s.code(t, conf)

	for i := 1; i <= 3; i++ {
		for n := range 20 {
			req := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {id}, "client_secret": {"x"}}
			r, err := sendOAuth(formRequest(t, s.inst.URL+"/token", req, fmt.Sprint("198.51.100.", i)))
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d from 198.51.100.%d: %d %s", n+1, i, r.status, r.raw)
			}
		}
	}
	// The attacking networks are spent ...
	r, err := sendOAuth(formRequest(t, s.inst.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {id}}, "198.51.100.1"))
	if err != nil || r.status != http.StatusTooManyRequests {
		t.Fatalf("attacking network past its budget: %v %d %s", err, r.status, r.raw)
	}
	// ... the client's users are not.
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange after others' failures with the public client's id: %v", err)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Fatalf("refresh after others' failures with the public client's id: %v", err)
	}
}

// formRequest is a form POST to u as the network from.
func formRequest(t *testing.T, u string, form url.Values, from string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", from)
	return req
}
