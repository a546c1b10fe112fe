// Package introspect lets resource servers check the tokens authd issues:
// token introspection, POST /introspect (RFC 7662), for resource servers
// that call authd themselves, and GET /verify, a ForwardAuth endpoint for
// reverse proxies (Traefik forwardAuth, nginx auth_request, Caddy
// forward_auth) that protect an unmodified MCP server.
//
// Both are HTTP adapters over the token core, tokens.Service.Inspect, and
// so judge a token the same way: it must be one authd issued and still
// stands behind. A token is recognised by its own shape (tokens.KindOf),
// never by the caller's token_type_hint. Revocation is checked on every
// call (the revoked jti, the grant), so a revocation made through any
// replica is seen at once.
package introspect

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

// Store is what the token core checks tokens against (introspection only
// reads it). *store.Postgres and *store.Memory implement it. Clients are
// read through Handler.Clients (cached).
type Store = tokens.Store

// Keys verifies JWT access tokens; *keys.Manager implements it.
type Keys = tokens.Keys

// Handler serves POST /introspect and GET /verify.
type Handler struct {
	Store Store
	// Clients authenticates the callers of /introspect. Its ClientGetter
	// (a clientauth.CachedClients in production) is also how the client a
	// token was issued to is checked, so the hot path reads no client row.
	Clients *clientauth.Authenticator
	Keys    Keys
	Issuer  string

	// BearerTokens are static tokens that may call /introspect in place of
	// client credentials (simple deployments). Callers authenticated so see
	// tokens for every resource.
	BearerTokens []string
	// Policy is the server's resource policy, the value /authorize and
	// /token are given: its Resources are the resources /verify protects
	// (required and per-route scopes, forward_upstream_token), and their
	// identity claims are what answers about a token may say of its user,
	// the same data /token issued the token by.
	Policy *policy.Policy
	// UserCheck re-applies the current sign-in policy (the allowlist, from
	// the configuration: no upstream call) to the user of every user token
	// judged, at /introspect and /verify; an error wrapping
	// tokens.ErrUserNotAllowed makes the token inactive, any other is an
	// outage (503). Nil allows everyone.
	UserCheck func(ctx context.Context, u store.User) error
	// UpstreamTokens returns the user's current access token at an
	// upstream, for resources with policy.Resource.ForwardUpstreamToken; nil when no
	// upstream tokens are kept (ErrUpstreamTokenGone: none usable).
	UpstreamTokens func(ctx context.Context, userID, upstream string) (string, error)
	// FromTrustedProxy reports whether a /verify request came straight
	// from a peer in trusted_proxies (server.FromTrustedProxy). Only such
	// a request, and only one that names the resource by its forwarded
	// headers, gets the upstream token: /verify is open to anyone holding
	// an access token, and the token's client must never see the user's
	// upstream token. Nil: never forwarded.
	FromTrustedProxy func(r *http.Request) bool
	// ForwardAuthSecret (introspection.forward_auth_secret) is what the
	// proxy's auth subrequest carries in HeaderForwardAuthSecret. Being a
	// trusted peer is not enough: clients usually reach /verify through
	// the same proxy, with X-Forwarded-* headers it may pass on. Empty:
	// the upstream token is never forwarded.
	ForwardAuthSecret string
	// AnyResource lets /verify?resource=<URI> protect a URI that is not
	// among Policy.Resources (no required scopes; the token's audience must still
	// name it). Development mode only: in production an unlisted resource
	// is a deployment error that /verify refuses (fail closed).
	AnyResource bool
	// IdentityClaims adds preferred_username and email (when verified) to
	// active introspection responses for user tokens.
	IdentityClaims bool
	// UserCacheTTL, when positive, keeps user rows this long, saving one
	// database round trip per opaque user token checked (JWTs and refresh
	// tokens read the user together with their grant). The price: a disabled
	// user's tokens stay active for up to the TTL, as a disabled client's
	// do with clientauth.CachedClients. Zero reads
	// the user every time. Revocation (jti, grant) is never cached.
	UserCacheTTL time.Duration
	// Limiter bounds /introspect calls per authenticated caller (client id
	// or static token); failed authentications are limited by
	// Clients.Throttle instead, before any comparison. Nil: no limit.
	Limiter *ratelimit.Limiter
	// MaxBodyBytes bounds request bodies (clientauth.DefaultMaxFormBytes
	// when zero).
	MaxBodyBytes int64
	// Observe, if set, is told whether each answered introspection found
	// the token active (for metrics).
	Observe func(active bool)

	Now func() time.Time
	Log *slog.Logger

	once      sync.Once
	bearers   [][sha256.Size]byte // digests of BearerTokens
	resources []resourceMatcher   // Policy.Resources, parsed for matching
	// tokens judges tokens; its caches (verified JWTs, users) serve both
	// endpoints.
	tokens *tokens.Service
	// forwardRefusedWarned: the upstream token was withheld from a
	// request not from the proxy, and the operator was told (once).
	forwardRefusedWarned atomic.Bool
}

// Routes mounts POST /introspect and /verify. /verify answers every method:
// nginx's auth_request subrequest keeps the original request's method
// (POST for MCP), while Traefik and Caddy send GET.
func (h *Handler) Routes(r chi.Router) {
	r.Post("/introspect", h.serveIntrospect)
	r.Handle("/verify", http.HandlerFunc(h.serveVerify))
}

// inactiveBody is the whole answer for a token that is not active: RFC
// 7662 §2.2 lets the server say more, but anything more would tell a
// caller something about tokens it has no business with.
var inactiveBody = []byte(`{"active":false}`)

// response is an RFC 7662 §2.2 answer for an active token.
type response struct {
	Active    bool            `json:"active"`
	Scope     string          `json:"scope,omitempty"`
	ClientID  string          `json:"client_id"`
	Username  string          `json:"username,omitempty"`
	TokenType string          `json:"token_type"`
	ExpiresAt int64           `json:"exp"`
	IssuedAt  int64           `json:"iat"`
	NotBefore int64           `json:"nbf,omitempty"`
	Subject   string          `json:"sub"`
	Audience  tokens.Audience `json:"aud,omitempty"`
	Issuer    string          `json:"iss"`
	JTI       string          `json:"jti,omitempty"`
	// The token's act and cnf claims (RFC 8693 §4.1, RFC 9449 §6.2),
	// for delegated and sender-constrained tokens.
	Actor        *tokens.Actor        `json:"act,omitempty"`
	Confirmation *tokens.Confirmation `json:"cnf,omitempty"`
	// Identity claims, as Handler.IdentityClaims and the token's
	// resources allow.
	idclaims.Identity
}

// caller is who called /introspect.
type caller struct {
	id     string // client id, or "bearer:<n>" for the n-th static token (logs only)
	client bool   // a client, not a static token
	// resources restricts which tokens the caller may see as active;
	// nil means no restriction.
	resources []string
	limitKey  string
}

func (h *Handler) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	resp, err := h.introspect(w, r)
	if err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	oauth.NoStore(w)
	if h.Observe != nil {
		h.Observe(resp != nil)
	}
	if resp == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inactiveBody)
		return
	}
	oauth.WriteJSON(w, http.StatusOK, resp)
}

// introspect returns the answer for an active token, or nil for an
// inactive one.
func (h *Handler) introspect(w http.ResponseWriter, r *http.Request) (*response, error) {
	h.prepare()
	form, err := clientauth.ReadForm(w, r, h.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	if err := clientauth.CheckSingle(form); err != nil {
		return nil, err
	}
	// Guessing credentials is limited by clientauth's Throttle, per network
	// and client id, before anything is compared.
	c, err := h.authenticate(r, form)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	if c.client {
		reqlog.Set(ctx, "client_id", c.id)
	} else {
		reqlog.Set(ctx, "introspection_caller", c.id)
	}
	if err := h.limit(c.limitKey); err != nil {
		return nil, err
	}
	raw := form.Get("token")
	if raw == "" {
		return nil, oauth.InvalidRequest("token is required")
	}
	// token_type_hint is deliberately not read: the token's shape says
	// what it is, and a wrong hint must not change the answer (§2.1).

	t, err := h.tokens.Inspect(ctx, raw, h.now())
	if err != nil {
		return nil, h.inactive(ctx, err)
	}
	if t.Kind == tokens.KindRefresh && !(c.client && c.id == t.ClientID) {
		// A refresh token is no credential at any resource server (it
		// has no audience); one that checks only "active" must not take
		// it for an access token. Only the client holding it may see it
		// active (RFC 7662 §2.2 lets the answer depend on the caller).
		h.log().DebugContext(ctx, "introspection of a refresh token by another caller", "caller", c.id)
		return nil, nil
	}
	if c.resources != nil && !slices.ContainsFunc(t.Audience, func(a string) bool { return slices.Contains(c.resources, a) }) {
		// RFC 7662 §4: a resource server must not learn about tokens meant
		// for others, so token scanning through it reveals nothing.
		h.log().DebugContext(ctx, "introspection of a token for another resource", "caller", c.id)
		return nil, nil
	}
	return h.describe(t), nil
}

// inactive turns an inspection failure into "not active" (nil), or the
// error to answer with when the store could not be asked.
func (h *Handler) inactive(ctx context.Context, err error) error {
	var why tokens.InactiveError
	if errors.As(err, &why) {
		h.log().DebugContext(ctx, "token not active", "reason", string(why))
		return nil
	}
	return err
}

// describe is the RFC 7662 §2.2 answer for an active token.
func (h *Handler) describe(t *tokens.Info) *response {
	resp := &response{
		Active:       true,
		Scope:        oauth.JoinScope(t.Scopes),
		ClientID:     t.ClientID,
		TokenType:    "Bearer",
		ExpiresAt:    t.ExpiresAt.Unix(),
		IssuedAt:     t.IssuedAt.Unix(),
		Subject:      t.Subject,
		Audience:     t.Audience,
		Issuer:       h.Issuer,
		JTI:          t.JTI,
		Actor:        t.Actor,
		Confirmation: t.Confirmation,
	}
	if t.Kind == tokens.KindRefresh {
		resp.TokenType = "refresh_token"
	}
	if !t.NotBefore.IsZero() {
		resp.NotBefore = t.NotBefore.Unix()
	}
	if u := t.User; u != nil {
		resp.Username = u.Login
		resp.Identity = idclaims.For(h.identityClaims(t.Audience), u)
	}
	return resp
}

// identityClaims is what an answer about a token for audience may say
// about its user: idclaims.ForToken, the rule the token was issued by.
func (h *Handler) identityClaims(audience []string) idclaims.Set {
	return h.Policy.IdentityClaims(audience, h.IdentityClaims)
}

// authenticate identifies the caller of /introspect (RFC 7662 §2.1): a
// static bearer token, or a confidential client allowed to introspect.
// Every failure is a 401 with a challenge for each accepted scheme.
func (h *Handler) authenticate(r *http.Request, form url.Values) (caller, error) {
	authz := r.Header.Values("Authorization")
	if len(authz) == 1 {
		if scheme, tok, _ := strings.Cut(authz[0], " "); strings.EqualFold(scheme, "Bearer") {
			if form.Has("client_id") || form.Has("client_secret") {
				return caller{}, oauth.InvalidRequest("the caller used more than one authentication method (a bearer token and client credentials)")
			}
			// A static token names no client: only the network's failure
			// budget applies.
			att, err := h.Clients.Throttle.CheckNetwork(r)
			if err != nil {
				return caller{}, err
			}
			c, err := h.authenticateBearer(strings.TrimSpace(tok))
			o := clientauth.Failed
			if err == nil {
				o = clientauth.Succeeded
			}
			att.Done(o)
			return c, err
		}
	}
	cl, method, err := h.Clients.Authenticate(r, form)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) && oe.Code == oauth.CodeInvalidClient {
			return caller{}, h.challenge(oe)
		}
		return caller{}, err
	}
	if method == clientauth.MethodNone || !cl.CanIntrospect {
		// The same answer as for wrong credentials: whether a client
		// exists or may introspect is nobody else's business.
		return caller{}, h.challenge(oauth.InvalidClient("client authentication failed").
			WithCause(errors.New("client " + cl.ID + " may not introspect")))
	}
	return caller{id: cl.ID, client: true, resources: cl.AllowedResources, limitKey: "client:" + cl.ID}, nil
}

// authenticateBearer checks a static introspection token. Every configured
// token is compared, in constant time, so timing reveals neither whether
// nor which one matched.
func (h *Handler) authenticateBearer(tok string) (caller, error) {
	sum := sha256.Sum256([]byte(tok))
	match := -1
	for i, d := range h.bearers {
		if subtle.ConstantTimeCompare(sum[:], d[:]) == 1 {
			match = i
		}
	}
	if tok == "" || match < 0 {
		// RFC 7662 §2.1 sends a failed bearer caller to RFC 6750 §3.
		return caller{}, oauth.InvalidToken("the introspection bearer token is not valid").
			WithHeader("WWW-Authenticate", `Bearer realm="authd", error="invalid_token"`)
	}
	id := "bearer:" + strconv.Itoa(match)
	return caller{id: id, limitKey: id}, nil
}

// challenge makes e (a 401 invalid_client) ask for every scheme the
// endpoint accepts; HTTP requires a challenge with every 401.
func (h *Handler) challenge(e *oauth.Error) *oauth.Error {
	e.Header = e.Header.Clone()
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Del("WWW-Authenticate")
	e.Header.Add("WWW-Authenticate", `Basic realm="authd"`)
	if len(h.bearers) > 0 {
		e.Header.Add("WWW-Authenticate", `Bearer realm="authd"`)
	}
	return e
}

func (h *Handler) limit(key string) error {
	if ok, retry := h.Limiter.Allow(key); !ok {
		return oauth.TooManyRequests(ratelimit.RetryAfterSeconds(retry))
	}
	return nil
}

// prepare derives what the handler needs from its configuration once.
func (h *Handler) prepare() {
	h.once.Do(func() {
		h.tokens = &tokens.Service{
			Store: h.Store, Keys: h.Keys, Issuer: h.Issuer,
			UserCheck: h.UserCheck, UserCacheTTL: h.UserCacheTTL,
		}
		if h.Clients != nil {
			h.tokens.Clients = h.Clients.Clients
		}
		for _, t := range h.BearerTokens {
			if t != "" {
				h.bearers = append(h.bearers, sha256.Sum256([]byte(t)))
			}
		}
		var resources []policy.Resource
		if h.Policy != nil {
			resources = h.Policy.Resources
		}
		for _, res := range resources {
			m, err := newResourceMatcher(res)
			if err != nil {
				// Config validation makes this unreachable; never match
				// rather than guess.
				h.log().Error("resource ignored by /verify", "resource", res.URI, "error", err.Error())
				continue
			}
			h.resources = append(h.resources, m)
		}
	})
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
