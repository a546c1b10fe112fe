// Package clientauth authenticates OAuth clients at the endpoints they call
// directly (/token, /revoke, /introspect), following RFC 6749 §2.3.1:
// client_secret_basic, client_secret_post, and "none" for public clients.
// It also reads those endpoints' form bodies the same strict way (§3.2),
// and throttles failed authentications before any comparison (Throttle,
// which RFC 7592 management shares).
package clientauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

// Method is the client authentication method a request used, named as in
// RFC 7591 §2 (token_endpoint_auth_method).
type Method string

const (
	MethodNone  Method = "none"
	MethodBasic Method = "client_secret_basic"
	MethodPost  Method = "client_secret_post"
)

// ClientGetter looks clients up; *store.Postgres, *store.Memory and
// *CachedClients implement it.
type ClientGetter interface {
	GetClient(ctx context.Context, id string, now time.Time) (store.Client, error)
}

// maxClientIDLen bounds what is looked up. Client ID metadata document
// URLs are the longest ids authd accepts.
const maxClientIDLen = 2048

// failed is the one description every credential failure gets, so that an
// unknown client, a wrong secret, a disabled client and an expired secret
// cannot be told apart from outside. The log gets the real reason.
const failed = "client authentication failed"

// basicChallenge is sent with every 401: RFC 6749 §5.2 asks for it when
// the client used the Authorization header, and RFC 9110 §15.5.2 requires a
// challenge with every 401, whatever the client sent (nothing, or a Bearer
// token that is no client authentication here).
const basicChallenge = `Basic realm="authd"`

// Authenticator authenticates the client of a token-endpoint-style request.
type Authenticator struct {
	Clients ClientGetter
	Now     func() time.Time
	// Throttle, when set, limits failed authentications per network and
	// per client id; it is consulted before any lookup or comparison.
	Throttle *Throttle
	// FailureFloor, when positive, is the least time a failed
	// authentication takes to answer (DefaultFailureFloor in production).
	// The comparison itself costs the same for every kind of client, but
	// the lookup does not: a client used in the last few seconds comes
	// from the cache, an unknown id from the database. Answering every
	// failure no sooner than the floor hides that difference (and any
	// other below it); successes are not delayed.
	FailureFloor time.Duration

	verified secretMemo // keyed digests of secrets known good; see verifySecret
}

// Authenticate identifies and authenticates the client of r, whose body
// parameters are form (read with ReadForm). It accepts client_secret_basic
// or client_secret_post from any confidential client, whatever it
// registered, since deployed MCP clients send post after registering basic,
// but never both at once; public clients identify themselves with client_id
// alone and must not present a secret.
//
// Failures are *oauth.Error values: invalid_request for a malformed or
// ambiguous request, 401 invalid_client with a Basic challenge for anything
// wrong with the credentials.
// Store failures other than "not found" are returned as they are.
func (a *Authenticator) Authenticate(r *http.Request, form url.Values) (store.Client, Method, error) {
	cred, err := credentials(r, form)
	if err != nil {
		return store.Client{}, "", err
	}
	reject := func(reason string) (store.Client, Method, error) {
		e := oauth.InvalidClient(failed).WithCause(fmt.Errorf("client %q: %s", truncate(cred.id, 100), reason)).
			WithHeader("WWW-Authenticate", basicChallenge)
		return store.Client{}, "", e
	}
	if cred.id == "" {
		return reject("no client authentication included")
	}
	if len(cred.id) > maxClientIDLen {
		return reject("client_id too long")
	}

	att, err := a.Throttle.Check(r, cred.id, cred.secret != "")
	if err != nil {
		return store.Client{}, "", err
	}
	start := time.Now()
	c, reason, err := a.check(r, cred)
	if err != nil {
		att.Done(NoVerdict)
		return store.Client{}, "", err // the store failed: no verdict
	}
	att.Done(outcome(c, reason))
	if reason != "" {
		waitUntil(r.Context(), start.Add(a.FailureFloor))
		return reject(reason)
	}
	m := MethodNone
	switch {
	case cred.secret == "":
	case cred.basic:
		m = MethodBasic
	default:
		m = MethodPost
	}
	reqlog.Set(r.Context(), "client_id", c.ID) // for the access log line
	return c, m, nil
}

// check looks the client up and judges cred, returning why it fails ("" if
// it does not). The work is the same for an unknown id as for a wrong
// secret: one digest comparison (see verifySecret).
func (a *Authenticator) check(r *http.Request, cred credential) (store.Client, string, error) {
	now := a.now()
	c, err := a.Clients.GetClient(r.Context(), cred.id, now)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Client{}, "", err
	}

	if cred.secret != "" {
		// Compare even for unknown and public clients (the empty hash makes
		// VerifySecret do dummy work) so timing does not reveal which ids
		// exist.
		ok := a.verifySecret(c.ID, c.SecretHash, cred.secret)
		switch {
		case !known:
			return c, "unknown client", nil
		case c.SecretHash == "":
			return c, "public client presented a secret", nil
		case !ok:
			return c, "wrong secret", nil
		case c.SecretExpiresAt != nil && !now.Before(*c.SecretExpiresAt):
			return c, "secret expired", nil
		}
	} else {
		switch {
		case !known:
			return c, "unknown client", nil
		case c.SecretHash != "":
			return c, "confidential client presented no secret", nil
		}
	}
	if c.Disabled {
		return c, "client disabled", nil
	}
	return c, "", nil
}

// outcome is how the throttle counts a check that failed for reason ("":
// it did not). A client without a secret has nothing to guess: its id,
// which anyone may send, is not charged. An unknown id is, like a
// confidential client's, so that the throttle does not tell them apart.
func outcome(c store.Client, reason string) Outcome {
	switch {
	case reason == "":
		return Succeeded
	case c.ID != "" && c.SecretHash == "":
		return FailedPublic
	}
	return Failed
}

// DefaultFailureFloor is above a loaded database's typical lookup time.
const DefaultFailureFloor = 10 * time.Millisecond

// waitUntil sleeps until t, or until ctx ends.
func waitUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

type credential struct {
	id, secret string
	basic      bool // came in the Authorization header
}

// credentials extracts the client's id and secret from the Authorization
// header or the body. RFC 6749 §3.2 treats a parameter sent without a value
// as omitted, so "client_secret=" or a Basic header with an empty password
// present no secret (x/oauth2 sends the latter for public clients).
func credentials(r *http.Request, form url.Values) (credential, error) {
	for _, name := range []string{"client_id", "client_secret"} {
		if len(form[name]) > 1 {
			return credential{}, oauth.InvalidRequest("parameter %s is included more than once", name)
		}
	}
	formID, formSecret := form.Get("client_id"), form.Get("client_secret")

	headers := r.Header.Values("Authorization")
	if len(headers) > 1 {
		return credential{}, oauth.InvalidRequest("more than one Authorization header")
	}
	if len(headers) == 0 || !isBasic(headers[0]) {
		// No Basic credentials (another scheme is not client
		// authentication at this endpoint, so it is ignored).
		return credential{id: formID, secret: formSecret}, nil
	}

	id, secret, err := parseBasic(headers[0])
	if err != nil {
		return credential{}, oauth.InvalidClient(failed).WithCause(err).WithHeader("WWW-Authenticate", basicChallenge)
	}
	if formSecret != "" {
		return credential{}, oauth.InvalidRequest("the client used more than one authentication method (Authorization header and client_secret)")
	}
	if formID != "" && formID != id {
		return credential{}, oauth.InvalidRequest("client_id does not match the client in the Authorization header")
	}
	return credential{id: id, secret: secret, basic: true}, nil
}

func isBasic(h string) bool {
	scheme, _, _ := strings.Cut(h, " ")
	return strings.EqualFold(scheme, "Basic")
}

// parseBasic decodes "Basic base64(urlencode(id):urlencode(secret))"; the
// form-urlencoding inside is what RFC 6749 §2.3.1 prescribes, so that ids
// and secrets may contain ':' and non-ASCII characters.
func parseBasic(h string) (id, secret string, err error) {
	_, enc, _ := strings.Cut(h, " ")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", fmt.Errorf("basic credentials are not valid base64: %w", err)
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("basic credentials lack the ':' separator")
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", fmt.Errorf("basic client id is not form-urlencoded: %w", err)
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", fmt.Errorf("basic client secret is not form-urlencoded: %w", err)
	}
	if id == "" {
		return "", "", errors.New("basic credentials have an empty client id")
	}
	return id, secret, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
