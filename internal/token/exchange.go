package token

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

// RFC 8693 identifiers.
const (
	GrantTokenExchange   = grants.TokenExchange
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// Exchange configures RFC 8693 token exchange: a resource server (an MCP
// server) that received a user's authd access token trades it for the
// user's access token at an upstream (audience=<upstream id>), or for an
// authd token for another resource that names it as the actor
// (resource=<uri>, delegation, §4.1).
type Exchange struct {
	// Clients are the operator-configured clients that may exchange, by id
	// (clients[].token_exchange). No other client may, whatever it
	// registered: only the operator can vouch for a resource server.
	Clients map[string]ExchangePolicy
	// Upstreams returns a user's current upstream access token, refreshed
	// if need be; nil when no upstream tokens are kept.
	Upstreams UpstreamTokens
	// Observe, when set, is told the outcome of every exchange: the kind
	// ("upstream", "delegation", or "unknown" before the target is known)
	// and "issued" or the OAuth error code (metrics).
	Observe func(kind, outcome string)
}

// ExchangePolicy is what one client may exchange tokens for.
type ExchangePolicy struct {
	// ResourceServer is the resource the client serves: subject tokens
	// must have it in their audience (a token for another resource is
	// not the caller's to trade).
	ResourceServer string
	// Upstreams are the upstream ids whose tokens it may obtain.
	Upstreams []string
	// Resources are the resources it may obtain delegated tokens for.
	Resources []string
}

// UpstreamToken is a user's access token at an upstream.
type UpstreamToken struct {
	AccessToken string
	TokenType   string
	Expiry      time.Time // zero: does not expire
	Scopes      []string
}

// Errors of UpstreamTokens.
var (
	// ErrUpstreamNotStored: authd keeps no token of that upstream for the
	// user (never signed in there, store_tokens off, or disconnected).
	ErrUpstreamNotStored = errors.New("no upstream token stored for the user")
	// ErrUpstreamGrantDead: the upstream refused to refresh it.
	ErrUpstreamGrantDead = errors.New("the user's upstream grant is no longer valid")
)

// UpstreamTokens returns the user's current access token at upstream.
type UpstreamTokens func(ctx context.Context, userID, upstream string) (UpstreamToken, error)

// exchange is what one request asked for and got, for the audit log.
type exchange struct {
	kind, target string
	subject      *tokens.Info
}

// tokenExchange serves grant_type=urn:ietf:params:oauth:grant-type:token-exchange
// (RFC 8693 §2.1), audited and counted whatever the outcome.
func (h *Handler) tokenExchange(ctx context.Context, req *request) (*response, error) {
	ex := exchange{kind: "unknown"}
	resp, err := h.exchange(ctx, req, &ex)
	outcome := "issued"
	if err != nil {
		outcome = oauth.AsError(err).Code
	}
	if h.Exchange != nil && h.Exchange.Observe != nil {
		h.Exchange.Observe(ex.kind, outcome)
	}
	attrs := []any{"event", "token_exchange", "outcome", outcome, "client_id", req.client.ID, "kind", ex.kind}
	if ex.target != "" {
		attrs = append(attrs, ex.kind, ex.target)
	}
	if ex.subject != nil {
		attrs = append(attrs, "user_id", ex.subject.Subject, "subject_client_id", ex.subject.ClientID)
	}
	if err != nil {
		// The cause stays out of the log line's description: it may say
		// why a token was inactive, never the token.
		attrs = append(attrs, "error_description", oauth.AsError(err).Description)
	}
	h.log().InfoContext(ctx, "audit", attrs...)
	return resp, err
}

func (h *Handler) exchange(ctx context.Context, req *request, ex *exchange) (*response, error) {
	c := req.client
	// §2.1: client authentication as for any grant (done in parse); a
	// public client cannot be told apart from anyone holding its id.
	if req.method == clientauth.MethodNone {
		return nil, oauth.UnauthorizedClient("token exchange is for confidential clients only")
	}
	if h.Exchange == nil {
		return nil, oauth.UnauthorizedClient("this server lets no client exchange tokens")
	}
	policy, ok := h.Exchange.Clients[c.ID]
	if !ok || c.Source != store.SourceConfig {
		return nil, oauth.UnauthorizedClient("the client may not exchange tokens")
	}
	// parse has refused every repeated parameter but resource (RFC 8707),
	// and a second target is refused below as invalid_target.
	f := req.form
	switch {
	case f.Get("subject_token") == "":
		return nil, oauth.InvalidRequest("subject_token is required")
	case f.Get("subject_token_type") != TokenTypeAccessToken:
		return nil, oauth.InvalidRequest("subject_token_type must be %s", TokenTypeAccessToken)
	case f.Get("requested_token_type") != "" && f.Get("requested_token_type") != TokenTypeAccessToken:
		return nil, oauth.InvalidRequest("requested_token_type must be %s (or absent)", TokenTypeAccessToken)
	case f.Has("actor_token") || f.Has("actor_token_type"):
		// The actor is the authenticated client itself.
		return nil, oauth.InvalidRequest("actor_token is not supported: the authenticated client is the actor")
	}

	// The target: exactly one audience (an upstream id, or a resource) or
	// one resource. Checked before the subject token, so a client learns
	// nothing about tokens for targets it may not have anyway.
	targets := slices.Clone(f["audience"])
	targets = append(targets, req.resources...)
	if len(targets) != 1 {
		return nil, oauth.InvalidTarget("name exactly one target: audience=<upstream id> for the user's upstream token, or resource=<uri> for a delegated token")
	}
	target := targets[0]
	switch {
	case slices.Contains(policy.Upstreams, target):
		ex.kind, ex.target = "upstream", target
	case slices.Contains(policy.Resources, target):
		ex.kind, ex.target = "delegation", target
	default:
		return nil, oauth.InvalidTarget("the client may not exchange tokens for %q", truncate(target, 200))
	}

	// The subject token is judged as /introspect judges it: signature,
	// claims, revocation, its grant, client and user, the allowlist.
	sub, err := h.tokens().Inspect(ctx, f.Get("subject_token"), req.now)
	var inactive tokens.InactiveError
	switch {
	case errors.As(err, &inactive):
		// §2.2.2: an invalid subject_token is invalid_request.
		return nil, oauth.InvalidRequest("subject_token is not an active access token").WithCause(err)
	case err != nil:
		return nil, err
	case !sub.AccessToken():
		return nil, oauth.InvalidRequest("subject_token is not an access token")
	case !slices.Contains(sub.Audience, policy.ResourceServer):
		return nil, oauth.InvalidRequest("subject_token was not issued for this resource server")
	case sub.User == nil || sub.GrantID == "":
		return nil, oauth.InvalidRequest("subject_token does not stand for a user")
	}
	ex.subject = sub

	if ex.kind == "upstream" {
		return h.upstreamToken(ctx, req, sub, target)
	}
	return h.delegatedToken(ctx, req, sub, target)
}

// upstreamToken hands out the user's current access token at upstream.
func (h *Handler) upstreamToken(ctx context.Context, req *request, sub *tokens.Info, upstream string) (*response, error) {
	if h.Exchange.Upstreams == nil {
		return nil, oauth.InvalidTarget("this server keeps no upstream tokens (upstreams[].store_tokens)")
	}
	// The user consented to upstream access only as the consent page
	// showed it: for the resources of the subject token that declared
	// this upstream's scopes. Config validation requires it of the
	// client's resource_server; this holds it per token as well.
	if !slices.ContainsFunc(sub.Audience, func(uri string) bool {
		r, _ := h.Policy.Resource(uri)
		return len(r.UpstreamScopes[upstream]) > 0
	}) {
		return nil, oauth.InvalidTarget("the subject token is for no resource that declares %s access (resources[].upstream_scopes): the user never agreed to it", upstream)
	}
	ut, err := h.Exchange.Upstreams(ctx, sub.User.ID, upstream)
	switch {
	case errors.Is(err, ErrUpstreamNotStored):
		return nil, oauth.InvalidGrant("authd holds no %s token for this user: the user must sign in through %s again", upstream, upstream).WithCause(err)
	case errors.Is(err, ErrUpstreamGrantDead):
		return nil, oauth.InvalidGrant("the user's %s authorization was revoked or expired: the user must sign in through %s again", upstream, upstream).WithCause(err)
	case err != nil:
		// The upstream is down, slow, or being refreshed by another
		// replica: the client may retry, it did nothing wrong.
		return nil, oauth.TemporarilyUnavailable(err)
	}
	resp := &response{
		AccessToken:     ut.AccessToken,
		IssuedTokenType: TokenTypeAccessToken,
		// §2.2.1: token_type says how to use the issued token at its
		// target. It is an access token the upstream takes as a bearer
		// token, so Bearer, not N_A (for tokens that are not access
		// tokens, e.g. an ID token or an assertion).
		TokenType: bearerType(ut.TokenType),
		Scope:     oauth.JoinScope(ut.Scopes),
	}
	if !ut.Expiry.IsZero() {
		// An upstream token without expiry (a GitHub OAuth app's) gets no
		// expires_in rather than a made-up one.
		resp.ExpiresIn = max(int64(ut.Expiry.Sub(req.now).Seconds()), 1)
	}
	return resp, nil
}

// bearerType normalises the upstream's token_type (GitHub says "bearer").
func bearerType(t string) string {
	if t == "" || strings.EqualFold(t, "bearer") {
		return "Bearer"
	}
	return t
}

// delegatedToken issues an access token for resource that names the
// client as the actor (RFC 8693 §4.1), within the user's grant: the
// subject token's scopes that resource allows, the subject token's expiry
// at most, the subject token's client and grant (revoking the grant ends
// it too).
func (h *Handler) delegatedToken(ctx context.Context, req *request, sub *tokens.Info, resource string) (*response, error) {
	aud := []string{resource}
	if h.Policy.Format(aud) != FormatJWT {
		// Opaque tokens are rows without an act column; issuing one would
		// drop who acts, and a JWT would bypass the introspection the
		// resource asked for.
		return nil, oauth.InvalidTarget("delegated tokens are JWTs; resource %q takes opaque tokens", truncate(resource, 200))
	}
	// What the user granted (the subject token's scopes) that the target
	// offers (policy.ScopeAllowed).
	allowed := h.Policy.AllowedScopes(sub.Scopes, nil, aud)
	scopes := allowed
	requested, oerr := h.Policy.Requested(req.form.Get("scope"))
	if oerr != nil {
		return nil, oerr
	}
	if len(requested) > 0 {
		for _, s := range requested {
			if !slices.Contains(allowed, s) {
				return nil, oauth.InvalidScope("scope %q is not both granted by the user and allowed at %s", truncate(s, 100), truncate(resource, 200))
			}
		}
		scopes = requested
	}
	if len(scopes) == 0 {
		return nil, oauth.InvalidScope("none of the subject token's scopes is allowed at %s", truncate(resource, 200))
	}
	// The subject token's grant, as far as the token says: its expiry
	// bounds the new token's.
	grant := &store.Grant{ID: sub.GrantID, ClientID: sub.ClientID, UserID: sub.User.ID, AuthTime: sub.AuthTime, ExpiresAt: sub.ExpiresAt}
	access, expiresIn, err := h.issue(ctx, req.now, tokens.Request{
		ClientID: sub.ClientID, User: sub.User, Grant: grant, Scopes: scopes, Audience: aud,
		Actor: &tokens.Actor{Subject: req.client.ID, Actor: sub.Actor},
	})
	if err != nil {
		return nil, err
	}
	return &response{
		AccessToken: access, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: expiresIn, Scope: oauth.JoinScope(scopes),
	}, nil
}
