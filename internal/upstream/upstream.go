// Package upstream signs users in at the identity providers authd federates
// to: GitHub (and GitHub Enterprise), Google, any OpenID Connect issuer, and
// a development-only login. Each sits behind the small Connector interface
// (dex's CallbackConnector), built on golang.org/x/oauth2, with every
// endpoint URL configurable so tests run against local fakes.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Identity is who the upstream says the user is. Subject is the provider's
// immutable identifier (GitHub's numeric id, OIDC sub), never a login name
// or email, which can change hands.
type Identity struct {
	Provider      string // connector id
	Subject       string
	Login         string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string // OIDC groups; GitHub "org" and "org/team" (when org/team rules are configured)
	Domain        string   // Google Workspace hd claim
	// AuthTime is when the user last actively authenticated at the
	// provider (the ID token's auth_time claim); zero when unknown, as
	// always for GitHub.
	AuthTime time.Time
	// Grant is the provider's token response (GitHub, Google, OIDC; nil
	// for the dev login). It is kept only for upstreams with store_tokens
	// and otherwise dropped after the sign-in; it never prints its tokens.
	Grant *Grant
}

// LoginOptions is what authd asks of one sign-in at the provider. The same
// value goes to AuthCodeURL and, when the browser comes back, to
// HandleCallback, which checks the answer against it.
type LoginOptions struct {
	// Verifier is the PKCE verifier: AuthCodeURL sends its S256
	// challenge, HandleCallback redeems the code with it.
	Verifier string
	// Nonce is the OpenID Connect nonce; ignored by non-OIDC connectors.
	Nonce string
	// LoginHint is an optional hint at the account to sign in with.
	LoginHint string
	// ForceLogin asks the provider to authenticate the user again even
	// if it still has a session (the client sent prompt=login or
	// max_age=0). Each connector sends what its provider understands.
	ForceLogin bool
	// MaxAge, when set, is the most seconds that may have passed since
	// the user last actively authenticated at the provider (OpenID
	// Connect Core §3.1.2.1 max_age). OIDC connectors send it and then
	// refuse an ID token whose auth_time is missing or older.
	MaxAge *int
	// ClientName is the name of the application asking, shown by the
	// development login (other connectors ignore it).
	ClientName string
	// Scopes are asked for on top of the configured ones: the upstream
	// scopes the resources of this authorization need (store_tokens).
	Scopes []string
}

// Connector is one configured upstream identity provider.
type Connector interface {
	// ID is the configured id, used in the callback path /callback/{id}.
	ID() string
	// Type is "github", "google", "oidc" or "dev".
	Type() string
	// DisplayName is shown on the chooser page.
	DisplayName() string
	// AuthCodeURL returns where to send the browser: state is authd's
	// opaque state towards the upstream, o what this sign-in asks for.
	AuthCodeURL(state string, o LoginOptions) string
	// HandleCallback completes the login from the request that arrived at
	// /callback/{id} (after authd has matched state): it exchanges the
	// code with the verifier, checks the answer against o (nonce,
	// max_age) and returns the identity. An upstream error response (e.g.
	// the user declined) or an answer that does not satisfy o is
	// returned as *Error.
	HandleCallback(ctx context.Context, r *http.Request, o LoginOptions) (Identity, error)
}

// Error is a failure the user should see explained (declined at the
// provider, unverified email, provider answered an error).
type Error struct {
	Code    string // e.g. "access_denied", "upstream_error"
	Message string // safe to show the user
	Err     error  // internal cause, for the log
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Error codes carried by *Error.
const (
	// CodeAccessDenied: the user declined at the provider, or signed in
	// with an account this connector does not accept.
	CodeAccessDenied = "access_denied"
	// CodeUpstreamError: the provider answered with an error or with
	// something that failed verification.
	CodeUpstreamError = "upstream_error"
	// CodeUnavailable: the provider could not be reached or answered 5xx.
	CodeUnavailable = "temporarily_unavailable"
)

// Preparer is implemented by connectors that must reach their provider
// before they can send anyone there: the OIDC and Google connectors fetch
// the issuer's discovery document. New tries once and, if the provider is
// down, still returns the connector so that authd starts; Prepare retries
// (at most every few seconds) and reports whether the connector is usable.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// Prepare makes sure c can build a login URL; call it before AuthCodeURL
// and show the user a "try again later" page (503) if it fails. For
// connectors that need no preparation it returns nil. The error is an
// *Error with Code CodeUnavailable.
func Prepare(ctx context.Context, c Connector) error {
	if p, ok := c.(Preparer); ok {
		return p.Prepare(ctx)
	}
	return nil
}

// New builds the connector c describes. c must pass Validate and have
// RedirectURL set. hc is the client for every call to the provider (nil:
// a default one); New copies it and bounds each call with a timeout. log
// may be nil.
//
// For types google and oidc, New fetches the discovery document with ctx;
// if that fails it logs a warning and returns the connector anyway, which
// retries on Prepare, AuthCodeURL and HandleCallback.
func New(ctx context.Context, c Config, hc *http.Client, log *slog.Logger) (Connector, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.RedirectURL == "" {
		return nil, errNoRedirectURL
	}
	if err := checkEndpointURL(c.RedirectURL); err != nil {
		return nil, fmt.Errorf("upstream %s: redirect URL: %w", c.ID, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("upstream", c.ID)
	c = c.withDefaults()
	hc = boundedClient(hc)
	switch c.Type {
	case TypeGitHub:
		return newGitHub(c, hc), nil
	case TypeGoogle, TypeOIDC:
		return newOIDC(ctx, c, hc, log), nil
	case TypeDev:
		d, err := newDev(c)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	return nil, fmt.Errorf("upstream %s: unknown type %q", c.ID, c.Type)
}

// callbackCode reads the provider's answer at /callback/{id} (RFC 6749
// §4.1.2 and §4.1.2.1). The provider's error_description is attacker-
// controllable text, so it only goes to the log, never to the page.
func callbackCode(r *http.Request, provider string) (string, error) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		cause := fmt.Errorf("provider answered error=%q error_description=%q", clip(e), clip(q.Get("error_description")))
		if e == "access_denied" {
			return "", &Error{Code: CodeAccessDenied, Message: "You declined to sign in with " + provider + ", so nothing was shared with this server.", Err: cause}
		}
		return "", &Error{Code: CodeUpstreamError, Message: provider + " could not sign you in. Please try again.", Err: cause}
	}
	code := q.Get("code")
	if code == "" {
		return "", &Error{Code: CodeUpstreamError, Message: "The answer from " + provider + " was incomplete. Please try again.", Err: errors.New("callback without code")}
	}
	return code, nil
}

// clip shortens provider-supplied text before it reaches a log line.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
