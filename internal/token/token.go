// Package token implements the token endpoint, POST /token (RFC 6749 §3.2,
// OAuth 2.1 §3.2), with the authorization_code (PKCE required),
// refresh_token (rotation with reuse detection), client_credentials and
// RFC 8693 token exchange (exchange.go) grants, and token revocation,
// POST /revoke (RFC 7009).
//
// Every request is parsed once, its client authenticated and its grant type
// checked against the client's registration in one shared path, and only
// then dispatched to the grant, so that no grant can skip those checks.
// Access tokens are RFC 9068 JWTs or, for resources configured so, opaque
// random strings stored by digest; refresh tokens are always opaque.
package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

// Grant types (RFC 6749 §4), as named by the grant registry.
const (
	GrantAuthorizationCode = grants.AuthorizationCode
	GrantRefreshToken      = grants.RefreshToken
	GrantClientCredentials = grants.ClientCredentials
)

// Access token formats (policy.Resource.TokenFormat).
const (
	FormatJWT    = policy.FormatJWT
	FormatOpaque = policy.FormatOpaque
)

// Defaults for the zero values of Handler's lifetimes.
const (
	DefaultAccessTokenLifetime  = tokens.DefaultLifetime
	DefaultRefreshTokenLifetime = 30 * 24 * time.Hour
	DefaultGrantLifetime        = 90 * 24 * time.Hour
)

// Store is what the token and revocation endpoints persist: the grants'
// codes and refresh tokens, and what the token core (internal/tokens)
// keeps and checks access tokens in. *store.Postgres and *store.Memory
// implement it.
type Store interface {
	tokens.Store
	GetAuthCodeUser(ctx context.Context, digest string, now time.Time) (store.AuthCode, store.User, error)
	RedeemAuthCode(ctx context.Context, digest string, now time.Time, g store.Grant, rt *store.RefreshToken) (store.AuthCode, error)
	GetRefreshTokenGrant(ctx context.Context, digest string) (store.RefreshToken, store.Grant, store.User, error)
	RotateRefreshToken(ctx context.Context, old string, now time.Time, next store.RefreshToken, retryWindow time.Duration) (store.Grant, error)
	TouchClient(ctx context.Context, id string, now time.Time, idle time.Duration) error
}

// Keys signs access tokens and verifies them at /revoke;
// *keys.Manager implements it.
type Keys = tokens.Keys

// Handler serves POST /token and POST /revoke.
type Handler struct {
	Store   Store
	Clients *clientauth.Authenticator
	Keys    Keys
	Issuer  string

	// Policy is the resource and scope policy (required): which resources
	// tokens may be bound to (client_credentials may name any the policy
	// serves; authorization codes carry resources already vetted at
	// /authorize), the default audience, the scopes a token for a set of
	// resources may carry, the defaults of client_credentials requests
	// without a scope parameter when the client has no AllowedScopes of
	// its own, and each token's format.
	Policy *policy.Policy

	AccessTokenLifetime time.Duration // default 1h
	// RefreshRetryWindow is how long after a refresh token's rotation its
	// client may present it again and get another successor, as long as
	// no successor has been used yet (Store.RotateRefreshToken): a client
	// that lost the response, or two processes sharing one credential,
	// keep their sign-in. Zero turns retries off: any second use revokes.
	RefreshRetryWindow   time.Duration
	RefreshTokenLifetime time.Duration // idle; default 30 days
	GrantLifetime        time.Duration // absolute; default 90 days
	// ClientIdleLifetime, when positive, is passed to Store.TouchClient
	// when a client with an idle expiry redeems a code or refreshes, so
	// that a client in use through refresh alone does not expire.
	ClientIdleLifetime time.Duration
	// Grants are the grant types served and who may use each (the same
	// registry registration and the metadata are built from). Whether a
	// client's source may use a grant is checked here as well as at
	// registration, so that closing a grant to dynamically registered
	// clients takes effect for clients registered while it was open. The
	// zero value means grants.Default().
	Grants grants.Registry

	// IdentityClaims adds preferred_username and email to JWT access
	// tokens issued for a user.
	IdentityClaims bool
	// Exchange enables RFC 8693 token exchange (nil: no client may).
	Exchange *Exchange

	// UserCheck re-applies the current sign-in policy (the allowlist) to
	// the user at every code redemption and refresh; an error wrapping
	// tokens.ErrUserNotAllowed ends the grant, any other (an outage)
	// answers 503 and keeps it. Nil allows everyone.
	UserCheck func(ctx context.Context, u store.User) error
	// Observe, when set, is told the outcome of every token request: the
	// grant type ("unknown" for unsupported ones) and "issued", the OAuth
	// error code, or "code_replay" / "refresh_token_reuse" (metrics).
	Observe func(grantType, outcome string)
	// MaxBodyBytes bounds request bodies (clientauth.DefaultMaxFormBytes
	// when zero).
	MaxBodyBytes int64
	// TokenLimit and RevokeLimit, when set, bound /token and /revoke per
	// client address (ratelimit.RemoteIPKey). They run after the CORS
	// headers are set, so a browser client can read a 429 and its
	// Retry-After.
	TokenLimit, RevokeLimit *ratelimit.Limiter

	Now func() time.Time
	Log *slog.Logger

	// core is the token core, built from the fields above by Routes.
	core *tokens.Service
}

// Routes mounts POST /token and POST /revoke, with CORS for browser-based
// clients (any origin, never credentials: these endpoints authenticate by
// what the request carries, not by cookies). It builds the handler's token
// core from its fields, which must not change afterwards.
func (h *Handler) Routes(r chi.Router) {
	h.core = h.newCore()
	r.With(allowAnyOrigin, ratelimit.Middleware(h.TokenLimit, ratelimit.RemoteIPKey)).Post("/token", h.serveToken)
	r.Options("/token", preflight)
	r.With(allowAnyOrigin, ratelimit.Middleware(h.RevokeLimit, ratelimit.RemoteIPKey)).Post("/revoke", h.serveRevoke)
	r.Options("/revoke", preflight)
}

// request is a parsed and client-authenticated token request.
type request struct {
	form      url.Values
	client    store.Client
	method    clientauth.Method
	grantType string
	// resources are the RFC 8707 resource parameters, canonical.
	resources []string
	now       time.Time
}

// response is the RFC 6749 §5.1 success response.
type response struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"` // absent only for a non-expiring upstream token (exchange.go)
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IssuedTokenType is RFC 8693 §2.2.1's, for token exchange only.
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

type grantFunc func(h *Handler, ctx context.Context, req *request) (*response, error)

// grantFuncs are the grants this package implements, by grant type. Which
// of them /token serves is the registry's decision (Handler.Grants); a
// new grant is an entry in the registry (internal/grants) plus its
// function here, in a file of its own.
var grantFuncs = map[string]grantFunc{
	GrantAuthorizationCode: (*Handler).authorizationCode,
	GrantRefreshToken:      (*Handler).refreshToken,
	GrantClientCredentials: (*Handler).clientCredentials,
	GrantTokenExchange:     (*Handler).tokenExchange,
}

// CheckGrants reports a grant type of the registry this package has no
// function for: the composition root refuses to start rather than
// advertise a grant /token cannot serve.
func CheckGrants(r grants.Registry) error {
	for _, gt := range r.Types() {
		if _, ok := grantFuncs[gt]; !ok {
			return fmt.Errorf("grant type %q is in the grant registry, but /token does not implement it", gt)
		}
	}
	return nil
}

func (h *Handler) grants() grants.Registry { return h.Grants.OrDefault() }

func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	req := &request{grantType: "unknown"}
	err := h.parse(w, r, req)
	var resp *response
	if err == nil {
		resp, err = grantFuncs[req.grantType](h, r.Context(), req)
	}
	if err != nil {
		h.observe(req.grantType, outcome(err))
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	h.observe(req.grantType, "issued")
	oauth.NoStore(w)
	oauth.WriteJSON(w, http.StatusOK, resp)
}

// parse fills req: it reads the form, authenticates the client and checks
// the grant type, everything every grant needs, in one place. req.grantType
// is set as soon as it is known to be supported (for metrics labels).
func (h *Handler) parse(w http.ResponseWriter, r *http.Request, req *request) error {
	form, err := clientauth.ReadForm(w, r, h.MaxBodyBytes)
	if err != nil {
		return err
	}
	gt := form.Get("grant_type")
	grant, supported := h.grants().Lookup(gt)
	supported = supported && grantFuncs[gt] != nil
	if supported {
		req.grantType = gt
	}
	if err := clientauth.CheckSingle(form, "resource"); err != nil {
		return err
	}
	client, method, err := h.Clients.Authenticate(r, form)
	if err != nil {
		return err
	}
	reqlog.Set(r.Context(), "client_id", client.ID)

	switch {
	case gt == "":
		return oauth.InvalidRequest("grant_type is required")
	case !supported:
		return oauth.UnsupportedGrantType("grant_type %q is not supported", truncate(gt, 50))
	case !slices.Contains(grantTypes(client), gt):
		return oauth.UnauthorizedClient("the client is not registered for the %s grant", gt)
	case grant.Confidential && method == clientauth.MethodNone:
		return oauth.UnauthorizedClient("%s is for confidential clients only", gt)
	case !grant.AllowedFor(client.Source):
		// Open registration must not be a way around signing in.
		return oauth.UnauthorizedClient("this server does not let %s use %s", sourceName(client.Source), gt)
	}
	resources, oerr := oauth.ParseResources(form["resource"])
	if oerr != nil {
		return oerr
	}
	req.form, req.client, req.method, req.resources, req.now = form, client, method, resources, h.now()
	return nil
}

// sourceName names the clients of a source for error descriptions.
func sourceName(src store.ClientSource) string {
	if src == store.SourceMetadata {
		return "metadata-document clients"
	}
	return "dynamically registered clients"
}

// mayUse reports whether the client may use the grant type gt: the
// server serves it to the client's kind and the client registered for it.
func (h *Handler) mayUse(c store.Client, gt string) bool {
	return h.grants().Allows(gt, c.Source) && slices.Contains(grantTypes(c), gt)
}

// grantTypes is what the client registered, with RFC 7591 §2's default.
func grantTypes(c store.Client) []string {
	if len(c.Metadata.GrantTypes) == 0 {
		return []string{GrantAuthorizationCode}
	}
	return c.Metadata.GrantTypes
}

// allowAnyOrigin lets browser-based MCP clients read token responses. No
// Access-Control-Allow-Credentials: a page can never make the browser
// attach cookies or cached HTTP credentials for it.
func allowAnyOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After")
		next.ServeHTTP(w, r)
	})
}

// preflight answers CORS preflight requests. Authorization must be listed
// by name: the "*" wildcard does not cover it.
func preflight(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Methods", "POST")
	hd.Set("Access-Control-Allow-Headers", "Authorization, *")
	hd.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// Causes of invalid_grant that deserve their own metric outcome.
var (
	errCodeReplay   = errors.New("authorization code used twice")
	errRefreshReuse = errors.New("spent refresh token presented again")
)

// outcome labels a failed request for Observe.
func outcome(err error) string {
	switch {
	case errors.Is(err, errCodeReplay):
		return "code_replay"
	case errors.Is(err, errRefreshReuse):
		return "refresh_token_reuse"
	}
	return oauth.AsError(err).Code
}

func (h *Handler) observe(grantType, outcome string) {
	if h.Observe != nil {
		h.Observe(grantType, outcome)
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
