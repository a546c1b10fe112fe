package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// maxBody bounds what authbench reads of any response.
const maxBody = 1 << 20

// api talks to one authd. Its transport keeps a connection per worker
// alive, as a busy client or resource server would.
type api struct {
	base   string
	client *http.Client
}

func newAPI(base string, concurrency int, timeout time.Duration) *api {
	tr := &http.Transport{
		Proxy:               nil, // never send benchmark traffic through a proxy
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   false,
	}
	return &api{base: base, client: &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: noRedirects}}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// statusError is a response other than the one expected.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// exchange sends req and returns the status and body. A status other than
// want is a *statusError carrying the start of the body.
func (a *api) exchange(req *http.Request, want int) (int, []byte, error) {
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode != want {
		return resp.StatusCode, body, &statusError{status: resp.StatusCode, body: excerpt(body)}
	}
	return resp.StatusCode, body, nil
}

// postForm builds a form POST to path; user and pass, when set, go in a
// Basic Authorization header, form-encoded first (RFC 6749 §2.3.1).
func (a *api) postForm(ctx context.Context, path string, form url.Values, user, pass string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return req
}

// tokenResponse is the part of an RFC 6749 §5.1 response authbench uses.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func (a *api) token(ctx context.Context, form url.Values, user, pass string) (int, tokenResponse, error) {
	status, body, err := a.exchange(a.postForm(ctx, "/token", form, user, pass), http.StatusOK)
	if err != nil {
		return status, tokenResponse{}, err
	}
	var t tokenResponse
	if err := json.Unmarshal(body, &t); err != nil || t.AccessToken == "" {
		return status, t, fmt.Errorf("token response without access_token: %s", truncate(string(body), 200))
	}
	return status, t, nil
}

// registered is the part of an RFC 7591 response authbench uses.
type registered struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// register registers a client with the given metadata (RFC 7591).
func (a *api) register(ctx context.Context, metadata map[string]any) (int, registered, error) {
	b, _ := json.Marshal(metadata)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/register", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	status, body, err := a.exchange(req, http.StatusCreated)
	if err != nil {
		return status, registered{}, err
	}
	var r registered
	if err := json.Unmarshal(body, &r); err != nil || r.ClientID == "" {
		return status, r, fmt.Errorf("registration response without client_id: %s", truncate(string(body), 200))
	}
	return status, r, nil
}

var (
	htmlTag    = regexp.MustCompile(`(?s)<(style|script)[^>]*>.*?</(style|script)>|<[^>]*>`)
	whitespace = regexp.MustCompile(`\s+`)
)

// excerpt is the start of a response body for an error message: an HTML
// error page is reduced to its text.
func excerpt(body []byte) string {
	s := string(body)
	if strings.HasPrefix(strings.TrimSpace(strings.ToLower(s)), "<!doctype") || strings.HasPrefix(strings.TrimSpace(s), "<html") {
		s = whitespace.ReplaceAllString(html.UnescapeString(htmlTag.ReplaceAllString(s, " ")), " ")
	}
	return truncate(strings.TrimSpace(s), 300)
}

// checkIssuer makes sure the target is authd's issuer URL: the browser
// steps of a code flow follow redirects to the issuer, and cookies set on
// one host name are not sent to another (localhost is not 127.0.0.1).
func (a *api) checkIssuer(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/.well-known/oauth-authorization-server", nil)
	_, body, err := a.exchange(req, http.StatusOK)
	if err != nil {
		return fmt.Errorf("reading the server's metadata: %w", err)
	}
	var md struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(body, &md); err != nil {
		return fmt.Errorf("reading the server's metadata: %w", err)
	}
	if md.Issuer != a.base {
		return fmt.Errorf("-target %s is not the server's issuer %s: use the issuer URL", a.base, md.Issuer)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
