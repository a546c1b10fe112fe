package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

// invalidCode is the one answer for an unknown, expired, used or foreign
// code, so that the answer does not tell an attacker which it was.
const invalidCode = "the authorization code is invalid, expired, or was issued to another client"

// authorizationCode redeems a code (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3,
// RFC 7636 §4.6, RFC 8707 §2.2). Every check runs before the code is
// consumed, so only a request that would have succeeded can consume it;
// a valid request for a code used before revokes everything the first
// redemption produced, while an invalid one (wrong client or verifier)
// revokes nothing, or anyone could revoke a user's grant.
func (h *Handler) authorizationCode(ctx context.Context, req *request) (*response, error) {
	code, verifier := req.form.Get("code"), req.form.Get("code_verifier")
	if code == "" {
		return nil, oauth.InvalidRequest("code is required")
	}
	if verifier == "" {
		return nil, oauth.InvalidRequest("code_verifier is required (PKCE)")
	}

	digest := oauth.Digest(code)
	// The code and its user in one read: the user is checked before the
	// code is redeemed.
	ac, user, err := h.Store.GetAuthCodeUser(ctx, digest, req.now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, oauth.InvalidGrant(invalidCode).WithCause(errors.New("unknown or expired code"))
	}
	if err != nil {
		return nil, err
	}
	if ac.ClientID != req.client.ID {
		return nil, oauth.InvalidGrant(invalidCode).WithCause(errors.New("code issued to another client"))
	}
	if err := checkRedirectURI(ac, req); err != nil {
		return nil, err
	}
	if !oauth.ValidVerifier(verifier) {
		return nil, oauth.InvalidGrant("code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636 section 4.1)")
	}
	if !oauth.VerifyPKCE(ac.CodeChallenge, ac.CodeChallengeMethod, verifier) {
		return nil, oauth.InvalidGrant("code_verifier does not match the code_challenge")
	}
	authorized := ac.Resources
	if len(authorized) == 0 {
		var oerr *oauth.Error
		if authorized, oerr = h.Policy.DefaultAudience(); oerr != nil {
			return nil, oerr
		}
	}
	aud, err := audience(req.resources, authorized)
	if err != nil {
		return nil, err
	}

	if ac.UsedAt != nil {
		return nil, h.codeReplayed(ctx, req, ac.UserID, ac.GrantID)
	}
	if err := h.allowUser(ctx, user); err != nil {
		return nil, err
	}

	g := store.Grant{
		ID: uuid.NewString(), ClientID: req.client.ID, UserID: ac.UserID,
		Scopes: ac.Scopes, Resources: authorized, AuthTime: ac.AuthTime,
		CreatedAt: req.now, LastUsedAt: req.now,
		ExpiresAt: req.now.Add(orDefault(h.GrantLifetime, DefaultGrantLifetime)),
	}
	refresh, rt := h.newRefreshToken(req, g)
	used, err := h.Store.RedeemAuthCode(ctx, digest, req.now, g, rt)
	switch {
	case errors.Is(err, store.ErrAlreadyUsed):
		// Redeemed by a concurrent request since it was read.
		return nil, h.codeReplayed(ctx, req, ac.UserID, used.GrantID)
	case errors.Is(err, store.ErrNotFound):
		return nil, oauth.InvalidGrant(invalidCode).WithCause(errors.New("code expired during redemption"))
	case err != nil:
		return nil, err
	}
	reqlog.Set(ctx, "user_id", g.UserID)
	h.touchClient(ctx, req)

	// The token carries what every resource of its audience offers
	// (policy.ScopeAllowed); the grant keeps all that was consented to,
	// for tokens narrowed to other resources later.
	scopes := h.Policy.AllowedScopes(g.Scopes, nil, aud)
	access, expiresIn, err := h.issue(ctx, req.now, tokens.Request{
		ClientID: req.client.ID, User: &user, Grant: &g, Scopes: scopes, Audience: aud,
	})
	if err != nil {
		return nil, err
	}
	h.log().InfoContext(ctx, "token issued", "event", "token_issued", "grant_type", req.grantType,
		"client_id", req.client.ID, "user_id", g.UserID, "grant_id", g.ID, "refresh_token", rt != nil)
	return &response{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: expiresIn,
		RefreshToken: refresh, Scope: oauth.JoinScope(scopes),
	}, nil
}

// checkRedirectURI applies RFC 6749 §4.1.3: when /authorize received a
// redirect_uri, the same value must come here; when it did not, a value
// sent here must still be the one the code was issued for.
func checkRedirectURI(ac store.AuthCode, req *request) error {
	got := req.form.Get("redirect_uri")
	switch {
	case ac.RedirectURIProvided && got == "":
		return oauth.InvalidRequest("redirect_uri is required: it was included in the authorization request")
	case got != "" && got != ac.RedirectURI:
		return oauth.InvalidGrant("redirect_uri does not match the one used in the authorization request")
	}
	return nil
}

// codeReplayed handles a valid presentation of a code redeemed before:
// OAuth 2.1 §4.1.3 and RFC 9700 §4.5 want the tokens issued from it revoked,
// since either the first or this presentation came from an attacker.
// Revoking the grant ends its refresh tokens and opaque access tokens at
// once, and its JWTs wherever they are checked (introspection and /verify
// look the grant id up).
func (h *Handler) codeReplayed(ctx context.Context, req *request, userID, grantID string) error {
	h.log().WarnContext(ctx, "authorization code replayed; revoking its grant",
		"event", "authorization_code_replay", "client_id", req.client.ID, "user_id", userID, "grant_id", grantID)
	if grantID != "" {
		if err := h.Store.RevokeGrant(ctx, grantID, req.now); err != nil {
			return fmt.Errorf("revoke grant of replayed code: %w", err)
		}
	}
	return oauth.InvalidGrant(invalidCode).WithCause(errCodeReplay)
}

// newRefreshToken makes the first refresh token of grant g, if the client
// registered the refresh_token grant (RFC 7591 §2 grant_types; the MCP
// authorization spec's SEP-2207 leaves issuance to that registration) and
// the server serves it to the client. A token the client may not redeem
// would only be a liability.
func (h *Handler) newRefreshToken(req *request, g store.Grant) (string, *store.RefreshToken) {
	if !h.mayUse(req.client, GrantRefreshToken) {
		return "", nil
	}
	value := oauth.NewToken(oauth.PrefixRefreshToken)
	return value, &store.RefreshToken{
		Digest: oauth.Digest(value), GrantID: g.ID, ClientID: req.client.ID,
		CreatedAt: req.now, ExpiresAt: h.refreshExpiry(req.now, g),
	}
}

// refreshExpiry is the idle expiry of a refresh token issued now: the idle
// timeout, but never past the grant's absolute lifetime.
func (h *Handler) refreshExpiry(now time.Time, g store.Grant) time.Time {
	return minTime(now.Add(orDefault(h.RefreshTokenLifetime, DefaultRefreshTokenLifetime)), g.ExpiresAt)
}

// allowUser checks that u may still use a grant: not disabled, and passing
// the current sign-in policy.
func (h *Handler) allowUser(ctx context.Context, u store.User) error {
	if u.Disabled {
		return oauth.InvalidGrant("the user of this grant is disabled")
	}
	if h.UserCheck != nil {
		if err := h.UserCheck(ctx, u); err != nil {
			if !errors.Is(err, tokens.ErrUserNotAllowed) {
				// The check could not be made: retry later, and keep
				// the grant (refresh revokes it on invalid_grant).
				return oauth.TemporarilyUnavailable(fmt.Errorf("user check: %w", err))
			}
			return oauth.InvalidGrant("the user is no longer allowed to sign in").WithCause(err)
		}
	}
	return nil
}

// touchClient slides a dynamic client's idle expiry while it is in use.
// The use is recorded only once the last recorded one is a tenth of the
// idle lifetime old (at most an hour): that saves a write on nearly every
// request, and a client in use still expires no sooner than 90 % of its
// idle lifetime after its last use. Failing is not worth failing the
// request for.
//
// A client registered less than that ago counts as just used: its expiry
// was set from its registration. (Registration leaves LastUsedAt unset, and the
// client cache keeps serving the row as registered for a few seconds, so
// without this every grant of a new client would cost a round trip.)
func (h *Handler) touchClient(ctx context.Context, req *request) {
	c := req.client
	last := c.LastUsedAt
	if c.CreatedAt.After(last) {
		last = c.CreatedAt
	}
	stale := min(time.Hour, h.ClientIdleLifetime/10)
	if h.ClientIdleLifetime <= 0 || c.ExpiresAt == nil || req.now.Sub(last) < stale {
		return
	}
	if err := h.Store.TouchClient(ctx, c.ID, req.now, h.ClientIdleLifetime); err != nil {
		h.log().WarnContext(ctx, "could not record client use", "client_id", c.ID, "error", err.Error())
	}
}
