package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

const (
	// callTimeout bounds each request to a provider.
	callTimeout = 10 * time.Second
	// callbackTimeout bounds a whole HandleCallback (exchange plus API
	// calls), so a slow provider cannot hold a browser request for long.
	callbackTimeout = 30 * time.Second
	// maxBody caps what is read from a provider.
	maxBody      = 1 << 20
	maxRedirects = 3
)

// boundedClient copies hc (never modifying the caller's) and makes sure
// every call has a timeout and follows only a few redirects.
func boundedClient(hc *http.Client) *http.Client {
	c := &http.Client{}
	if hc != nil {
		*c = *hc
	}
	if c.Timeout == 0 || c.Timeout > callTimeout {
		c.Timeout = callTimeout
	}
	if c.CheckRedirect == nil {
		c.CheckRedirect = func(_ *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			return nil
		}
	}
	return c
}

// withHeader returns a copy of hc that sets header k on every request.
func withHeader(hc *http.Client, k, v string) *http.Client {
	c := *hc
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = headerTransport{base: base, k: k, v: v}
	return &c
}

type headerTransport struct {
	base http.RoundTripper
	k, v string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(t.k, t.v)
	return t.base.RoundTrip(r)
}

// statusError is a non-2xx answer from a provider API.
type statusError struct {
	URL    string
	Status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.Status)
}

// getJSON GETs u with the access token and decodes the JSON body into v.
// Anything but a 2xx answer is an error: a provider that fails to confirm
// who the user is must never be read as "nothing to report".
func getJSON(ctx context.Context, hc *http.Client, u, token string, hdr http.Header, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return nil, &statusError{URL: stripQuery(u), Status: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", stripQuery(u), err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("GET %s: response larger than %d bytes", stripQuery(u), maxBody)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", stripQuery(u), err)
	}
	return resp.Header, nil
}

func stripQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// nextLink returns the rel="next" target of an RFC 8288 Link header.
func nextLink(h http.Header) string {
	for _, v := range h.Values("Link") {
		for part := range strings.SplitSeq(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok {
				continue
			}
			target = strings.TrimSpace(target)
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for p := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(val, `"`) == "next" {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}

// sameRoot reports whether next lies under root (same scheme, host and
// path prefix), so that a Link header cannot send the token elsewhere.
func sameRoot(root, next string) bool {
	r, err1 := url.Parse(root)
	n, err2 := url.Parse(next)
	if err1 != nil || err2 != nil {
		return false
	}
	return n.Scheme == r.Scheme && strings.EqualFold(n.Host, r.Host) &&
		strings.HasPrefix(n.Path, strings.TrimSuffix(r.Path, "/")+"/")
}

// apiError turns a failed call to a provider into the *Error the user
// sees: unreachable or overloaded providers are "try again later", any
// other failure (refused code, 4xx, malformed answer) is an upstream error.
func apiError(provider string, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	unavailable := func(cause error) *Error {
		return &Error{Code: CodeUnavailable, Message: provider + " could not be reached. Please try again in a moment.", Err: cause}
	}
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		// 4xx, or GitHub's 200 with an error member: the code, verifier
		// or client credentials were refused. The body is not logged: it
		// could echo what was sent.
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		cause := fmt.Errorf("token endpoint: HTTP %d error=%q error_description=%q", status, clip(re.ErrorCode), clip(re.ErrorDescription))
		if status >= 500 {
			return unavailable(cause)
		}
		return &Error{Code: CodeUpstreamError, Message: provider + " did not accept the sign-in. Please try again.", Err: cause}
	}
	if se, ok := errors.AsType[*statusError](err); ok && (se.Status >= 500 || se.Status == http.StatusTooManyRequests) {
		return unavailable(err)
	}
	if _, ok := errors.AsType[*url.Error](err); ok || errors.Is(err, context.DeadlineExceeded) {
		return unavailable(err)
	}
	return &Error{Code: CodeUpstreamError, Message: provider + " did not confirm who you are. Please try again.", Err: err}
}
