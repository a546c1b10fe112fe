// Package authorize is the user-facing half of authd: the authorization
// endpoint (OAuth 2.1 §4.1), sign-in through an upstream identity provider,
// the consent page, browser sessions (single sign-on), the connected-apps
// page, and the issuing of authorization codes.
//
// # One authorization
//
//	GET|POST /authorize      validate → pending AuthRequest + request cookie
//	GET /login?req=H         chooser (several upstreams) → upstream redirect
//	GET /callback/{provider} state → request, cookie check, exchange,
//	                         allowlist, user, new session
//	GET|POST /consent?req=H  consent page, Approve/Deny
//	                         → code at the client's redirect URI
//	GET /apps                connected apps; POST /apps/revoke, POST /logout
//
// # Secrets that live only in the browser
//
// A pending request has a random id (oauth.PrefixRequest) that is kept only
// in an HttpOnly cookie; the database holds its digest. Everything else that
// must stay secret during the flow is derived from that id, so neither a
// database dump nor an intercepted URL is enough to use it:
//
//   - the PKCE verifier towards the upstream is
//     base64url(SHA-256("authd-upstream-pkce\x00" + requestID + "\x00" + upstreamState)),
//     and the OIDC nonce is built the same way with "authd-upstream-nonce".
//     The upstream state travels through the upstream and the callback URL;
//     the request id never does. A thief of the callback URL lacks the
//     request id (and the cookie check stops him first); a thief of the
//     database lacks the request id too.
//   - the consent form's CSRF token is
//     base64url(SHA-256("authd-consent\x00" + requestID)); an attacker's page
//     cannot read the HttpOnly cookie, so it cannot compute the token.
//
// Pending requests are looked up through a short public handle H (a prefix
// of the id's digest) that names the request cookie, so that one browser can
// run several authorizations at once (two MCP clients connecting in
// parallel) without one cookie overwriting the other.
package authorize

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstreamtokens"
)

// Store is the part of store.Store this package uses.
type Store interface {
	GetClient(ctx context.Context, id string, now time.Time) (store.Client, error)

	UpsertUser(ctx context.Context, u store.User) (store.User, error)

	CreateAuthRequest(ctx context.Context, r store.AuthRequest) error
	GetAuthRequest(ctx context.Context, idDigest string, now time.Time) (store.AuthRequest, error)
	GetAuthRequestByUpstreamState(ctx context.Context, stateDigest string, now time.Time) (store.AuthRequest, error)
	UpdateAuthRequest(ctx context.Context, r store.AuthRequest) error
	ConsumeAuthRequest(ctx context.Context, idDigest string, now time.Time) (store.AuthRequest, error)
	ClaimAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time) (store.AuthRequest, error)
	SettleAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time, signIn *store.SignIn) (store.AuthRequest, error)

	CreateSession(ctx context.Context, s store.Session) error
	GetSessionUser(ctx context.Context, idDigest string, now time.Time) (store.Session, store.User, error)
	DeleteSession(ctx context.Context, idDigest string) error

	GetConsent(ctx context.Context, userID, clientID string) (store.Consent, error)
	AddConsent(ctx context.Context, c store.Consent) error
	ListConsents(ctx context.Context, userID string) ([]store.Consent, error)
	DeleteConsent(ctx context.Context, userID, clientID string, now time.Time) error

	CreateAuthCode(ctx context.Context, c store.AuthCode) error
	ListGrants(ctx context.Context, userID string) ([]store.Grant, error)
}

// Allowlist decides who may sign in (allowlist.Policy). A non-nil error
// denies; the Reason of an *allowlist.Denied is shown to the user, any other
// error gets a generic sentence.
type Allowlist interface {
	Check(providerType string, u store.User) error
}

// UpstreamGrants is the broker (upstreamtokens.Broker): Keep is handed the
// upstream's grant of a user who just signed in (kept for upstreams with
// store_tokens, ignored for the others); /apps lists the kept grants and
// lets the user disconnect one.
type UpstreamGrants interface {
	Keep(ctx context.Context, userID, upstream string, g *upstream.Grant) error
	// Covers reports whether a usable grant with scopes is kept for the
	// user at an upstream that keeps tokens (always true at one that
	// does not): if not, single sign-on sends the user to the upstream
	// again (incremental authorization).
	Covers(ctx context.Context, userID, upstream string, scopes []string) (bool, error)
	Connections(ctx context.Context, userID string) ([]upstreamtokens.Connection, error)
	Disconnect(ctx context.Context, userID, upstream string) error
}

// Lifetimes of what this package creates. Zero values take the defaults.
type Lifetimes struct {
	Request time.Duration // pending authorization request; default 10m
	Code    time.Duration // authorization code; default 60s
	Session time.Duration // browser single sign-on session; default 24h
}

const (
	defaultRequestLifetime = 10 * time.Minute
	defaultCodeLifetime    = 60 * time.Second
	defaultSessionLifetime = 24 * time.Hour
)

// Handler serves /authorize and the pages around it.
type Handler struct {
	Store Store
	// Issuer is e.g. https://auth.example.com, sent as iss (RFC 9207). When
	// it has a path (https://auth.example.com/tenant), Routes must be
	// mounted under that path: links and redirects carry it.
	Issuer string
	// Connectors are the upstream identity providers, in chooser order.
	Connectors []upstream.Connector
	Allowlist  Allowlist
	// UpstreamGrants, if set, is the broker: it is handed each sign-in's
	// upstream grant, and /apps lists and disconnects kept grants.
	UpstreamGrants UpstreamGrants
	// Policy is the resource and scope policy (required): which resources
	// a request may name, the default audience of one that names none
	// (the same rule /token applies), which scopes the server knows,
	// describes and grants by default, and which scopes may be granted for
	// a set of resources.
	Policy    *policy.Policy
	Lifetimes Lifetimes
	// DevMode marks every page as a development server and mounts the
	// development login form (upstream.DevLoginPath) for dev connectors.
	DevMode bool
	// Pages are the templates, style and CSP of the pages (NewPages, with
	// the operator's branding); nil: authd's own, unbranded.
	Pages *Pages
	// OnEvent, if set, is told about outcomes (for metrics): see the event
	// constants. upstream is the configured upstream id for login events
	// ("unknown" for a callback to no configured upstream), else empty.
	OnEvent func(event, upstream string)
	Now     func() time.Time
	Log     *slog.Logger
}

// Events passed to OnEvent (and logged as audit records with event=...).
const (
	EventLogin           = "login"            // upstream sign-in succeeded
	EventLoginDenied     = "login_denied"     // allowlist or disabled user
	EventLoginFailed     = "login_failed"     // upstream error, bad state
	EventConsentApproved = "consent_approved" // user approved
	EventConsentDenied   = "consent_denied"   // user declined
	EventCodeIssued      = "code_issued"      // authorization code issued
	EventAppRevoked      = "app_revoked"      // consent revoked on /apps
)

// maxFormBytes bounds the bodies of the POST endpoints here.
const maxFormBytes = 64 << 10

// Routes mounts the endpoints on r, a router at the issuer's path.
func (h *Handler) Routes(r chi.Router) {
	// Cross-origin protection (Sec-Fetch-Site / Origin) guards the POSTs a
	// user makes on authd's own pages. Not /authorize: an authorization
	// request POSTed by a client's page is cross-origin by design.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, pageError(http.StatusForbidden, "Request refused",
			"This form was submitted from another site. Go back to the page on this server and try again."))
	}))
	r.Get("/authorize", h.serve(h.authorize))
	r.Post("/authorize", h.serve(h.authorize))
	r.Get("/login", h.serve(h.login))
	r.Get("/callback/{provider}", h.serve(h.callback))
	r.Get("/consent", h.serve(h.consentPage))
	r.With(cop.Handler).Post("/consent", h.serve(h.consentSubmit))
	r.Get("/apps", h.serve(h.apps))
	r.Get("/apps/login", h.serve(h.appsLogin))
	r.With(cop.Handler).Post("/apps/revoke", h.serve(h.revokeApp))
	r.With(cop.Handler).Post("/apps/disconnect", h.serve(h.disconnectUpstream))
	r.With(cop.Handler).Post("/logout", h.serve(h.logout))
	if h.DevMode {
		r.Handle(upstream.DevLoginPath, upstream.DevLoginHandler(h.Connectors, h.log(), h.pages().devBrand()))
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

func (h *Handler) requestLifetime() time.Duration {
	if h.Lifetimes.Request > 0 {
		return h.Lifetimes.Request
	}
	return defaultRequestLifetime
}

func (h *Handler) codeLifetime() time.Duration {
	if h.Lifetimes.Code > 0 {
		return h.Lifetimes.Code
	}
	return defaultCodeLifetime
}

func (h *Handler) sessionLifetime() time.Duration {
	if h.Lifetimes.Session > 0 {
		return h.Lifetimes.Session
	}
	return defaultSessionLifetime
}

// basePath is the path of the issuer ("" for https://auth.example.com,
// "/tenant" for https://auth.example.com/tenant): the routes are mounted
// under it, so every link and redirect to authd's own pages carries it.
func (h *Handler) basePath() string { return oauth.IssuerPath(h.Issuer) }

// path returns the URL path of one of authd's own pages, p being its path
// relative to the issuer ("/consent?req=…").
func (h *Handler) path(p string) string {
	return h.basePath() + p
}

// secureCookies reports whether cookies get Secure and the __Host- prefix:
// always, except for an http issuer (development on a loopback address),
// where a browser would drop Secure cookies.
func (h *Handler) secureCookies() bool {
	u, err := url.Parse(h.Issuer)
	return err != nil || u.Scheme != "http"
}

// event records an audit log line and tells OnEvent.
func (h *Handler) event(ctx context.Context, name string, attrs ...any) {
	h.log().InfoContext(ctx, "audit", append([]any{"event", name}, attrs...)...)
	if h.OnEvent != nil {
		upstreamID := ""
		for i := 0; i+1 < len(attrs); i += 2 {
			if attrs[i] == "upstream" {
				upstreamID, _ = attrs[i+1].(string)
			}
		}
		h.OnEvent(name, upstreamID)
	}
}

func (h *Handler) connector(id string) upstream.Connector {
	for _, c := range h.Connectors {
		if c.ID() == id {
			return c
		}
	}
	return nil
}

// resource is the configured resource uri, for the pages' names.
func (h *Handler) resource(uri string) (policy.Resource, bool) { return h.Policy.Resource(uri) }

// upstreamScopes is what the resources need at upstream id, in order.
func (h *Handler) upstreamScopes(id string, resources []string) []string {
	var out []string
	for _, uri := range resources {
		res, _ := h.Policy.Resource(uri)
		for _, s := range res.UpstreamScopes[id] {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// scopeDescription is the operator's words for scope name, for the pages.
func (h *Handler) scopeDescription(name string) string { return h.Policy.ScopeDescription(name) }
