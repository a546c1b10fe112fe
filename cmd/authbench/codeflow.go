package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// redirectURI is what authbench's code-flow clients register and send. The
// flow stops at it: nothing needs to listen there.
const redirectURI = "http://127.0.0.1/authbench/callback"

// maxFlowSteps bounds the redirects and pages of one authorization.
const maxFlowSteps = 12

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// codeFlow runs the whole authorization code flow with PKCE as a browser
// and a public client would, against authd's development login: GET
// /authorize, the redirect to /dev/login, its form (POST), the upstream
// callback, the consent page (prompt=consent asks every time) and its
// form, the redirect to the client with the code, then /token. It returns
// the token response and the last HTTP status seen.
func (a *api) codeFlow(ctx context.Context, clientID, resource, user string) (int, tokenResponse, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: a.client.Transport, Timeout: a.client.Timeout, Jar: jar, CheckRedirect: noRedirects}
	verifier := randomString(32)
	sum := sha256.Sum256([]byte(verifier))
	state := randomString(16)
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"state":                 {state},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"prompt":                {"consent"},
	}
	if resource != "" {
		q.Set("resource", resource)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/authorize?"+q.Encode(), nil)

	var code string
	status := 0
	for step := 0; code == "" && step < maxFlowSteps; step++ {
		resp, body, err := send(browser, req)
		if resp != nil {
			status = resp.StatusCode
		}
		if err != nil {
			return status, tokenResponse{}, err
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := req.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				return status, tokenResponse{}, fmt.Errorf("bad Location after %s: %v", req.URL.Path, err)
			}
			if strings.HasPrefix(loc.String(), redirectURI) {
				got := loc.Query()
				if got.Get("state") != state || got.Get("code") == "" {
					return status, tokenResponse{}, fmt.Errorf("authorization response without code or with the wrong state: %s", truncate(loc.RawQuery, 200))
				}
				code = got.Get("code")
				continue
			}
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
		case resp.StatusCode == http.StatusOK:
			form := url.Values{}
			for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
				form.Set(m[1], html.UnescapeString(m[2]))
			}
			action := req.URL.String()
			switch {
			case form.Has("csrf") && strings.Contains(string(body), `action="/consent"`):
				form.Set("decision", "approve")
				action = a.base + "/consent"
			case form.Has("upstream") && form.Has("code_challenge"): // the dev login form (action="")
				form.Set("name", user)
			default:
				return status, tokenResponse{}, fmt.Errorf("unexpected page at %s: %s", req.URL.Path, truncate(string(body), 200))
			}
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, action, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			return status, tokenResponse{}, &statusError{status: resp.StatusCode, body: req.URL.Path + ": " + excerpt(body)}
		}
	}
	if code == "" {
		return status, tokenResponse{}, errors.New("no authorization code after the maximum number of steps")
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
		"client_id":     {clientID},
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	return a.token(ctx, form, "", "")
}

// send does one request of the browser, reading a bounded body.
func send(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp, body, err
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
