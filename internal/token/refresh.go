package token

import (
	"context"
	"errors"
	"fmt"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
)

const invalidRefresh = "the refresh token is invalid, expired, revoked, or was issued to another client"

// refreshToken rotates a refresh token (RFC 6749 §6, OAuth 2.1 §4.3): the
// presented token is spent and a new one issued in the same grant. A token
// presented after it was spent means two parties hold it, so the store
// revokes the whole grant (reuse detection, OAuth 2.1 §4.3.1), with one
// exception: the same client presenting it again within
// RefreshRetryWindow, before any successor was used, gets another
// successor. That is a client that never saw the first response (a lost
// connection, a timed-out proxy) or a second process of the client sharing
// the credential; whichever successor is used first continues the chain
// and the others are spent, so a thief who raced the client is still
// found out when the loser presents its token. The store applies the rule
// atomically (Store.RotateRefreshToken); the check here only saves a
// rotation attempt when the answer is certain.
//
// Before rotating, the grant is re-checked against the present: the user
// must still exist, be enabled and pass the current allowlist, or the grant
// ends here. (The client's existence and status were checked when it
// authenticated.)
func (h *Handler) refreshToken(ctx context.Context, req *request) (*response, error) {
	value := req.form.Get("refresh_token")
	if value == "" {
		return nil, oauth.InvalidRequest("refresh_token is required")
	}
	digest := oauth.Digest(value)
	// The token, its grant and the grant's user in one read.
	old, g, user, err := h.Store.GetRefreshTokenGrant(ctx, digest)
	if errors.Is(err, store.ErrNotFound) {
		return nil, oauth.InvalidGrant(invalidRefresh).WithCause(errors.New("unknown refresh token, or its grant or user gone"))
	}
	if err != nil {
		return nil, err
	}
	alive := g.RevokedAt == nil && req.now.Before(g.ExpiresAt)
	spent := old.UsedAt != nil && alive
	// A client presenting another client's unspent token learns nothing
	// and changes nothing: the owner keeps its sign-in. A spent one in the
	// wrong hands is replay like any other and revokes the family.
	if old.ClientID != req.client.ID && !spent {
		return nil, oauth.InvalidGrant(invalidRefresh).WithCause(errors.New("refresh token of another client"))
	}
	retry := spent && old.ClientID == req.client.ID && h.RefreshRetryWindow > 0 &&
		req.now.Before(old.UsedAt.Add(h.RefreshRetryWindow))
	if spent && !retry {
		// Reuse noticed here; RotateRefreshToken revokes the grant itself
		// when it is the one to notice (a concurrent rotation, or a retry
		// after the chain moved on).
		if err := h.Store.RevokeGrant(ctx, g.ID, req.now); err != nil {
			return nil, fmt.Errorf("revoke grant of reused refresh token: %w", err)
		}
		return nil, h.rotateFailed(ctx, req, old, store.ErrAlreadyUsed)
	}
	if !alive || !req.now.Before(old.ExpiresAt) {
		return nil, oauth.InvalidGrant(invalidRefresh).WithCause(errors.New("refresh token spent or expired, or grant revoked or expired"))
	}

	// RFC 6749 §6: the scope may only narrow, and narrows only this access
	// token; the grant keeps what was consented to.
	// offline_access, openid and unknown scopes are dropped first
	// (policy.Requested); a request left with none narrows nothing.
	scopes := g.Scopes
	requested, oerr := h.Policy.Requested(req.form.Get("scope"))
	if oerr != nil {
		return nil, oerr
	}
	if len(requested) > 0 {
		if !oauth.Subset(requested, g.Scopes) {
			return nil, oauth.InvalidScope("the requested scope exceeds the scope granted by the resource owner")
		}
		scopes = requested
	}
	authorized := g.Resources
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

	if err := h.allowUser(ctx, user); err != nil {
		var oe *oauth.Error
		// A refusal for what this server's configuration lacks keeps
		// the grant: putting the configuration right restores it.
		if errors.As(err, &oe) && oe.Code == oauth.CodeInvalidGrant && !errors.Is(err, tokens.ErrGrantKept) {
			if rerr := h.Store.RevokeGrant(ctx, g.ID, req.now); rerr != nil {
				return nil, fmt.Errorf("revoke grant of a user no longer allowed: %w", rerr)
			}
			h.log().InfoContext(ctx, "grant revoked: its user may no longer sign in",
				"event", "grant_revoked", "reason", oe.Description,
				"client_id", req.client.ID, "user_id", g.UserID, "grant_id", g.ID)
		}
		return nil, err
	}

	refresh := oauth.NewToken(oauth.PrefixRefreshToken)
	next := store.RefreshToken{
		Digest: oauth.Digest(refresh), GrantID: g.ID, ClientID: req.client.ID, Parent: digest,
		CreatedAt: req.now, ExpiresAt: h.refreshExpiry(req.now, g),
	}
	if _, err := h.Store.RotateRefreshToken(ctx, digest, req.now, next, h.RefreshRetryWindow); err != nil {
		return nil, h.rotateFailed(ctx, req, old, err)
	}
	if retry {
		h.log().InfoContext(ctx, "spent refresh token retried within the retry window; another successor issued",
			"event", "refresh_token_retry", "client_id", req.client.ID, "grant_id", g.ID)
	}
	reqlog.Set(ctx, "user_id", g.UserID)
	h.touchClient(ctx, req)

	scopes = h.Policy.AllowedScopes(scopes, nil, aud) // what every resource of aud offers, as at code redemption
	access, expiresIn, err := h.issue(ctx, req.now, tokens.Request{
		ClientID: req.client.ID, User: &user, Grant: &g, Scopes: scopes, Audience: aud,
	})
	if err != nil {
		return nil, err
	}
	h.log().InfoContext(ctx, "token issued", "event", "token_issued", "grant_type", req.grantType,
		"client_id", req.client.ID, "user_id", g.UserID, "grant_id", g.ID, "refresh_token", true)
	return &response{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: expiresIn,
		RefreshToken: refresh, Scope: oauth.JoinScope(scopes),
	}, nil
}

// rotateFailed turns a failed rotation into the answer, recording reuse.
func (h *Handler) rotateFailed(ctx context.Context, req *request, old store.RefreshToken, err error) error {
	switch {
	case errors.Is(err, store.ErrAlreadyUsed):
		h.log().WarnContext(ctx, "refresh token reused; grant revoked",
			"event", "refresh_token_reuse", "client_id", req.client.ID, "grant_id", old.GrantID)
		return oauth.InvalidGrant(invalidRefresh).WithCause(errRefreshReuse)
	case errors.Is(err, store.ErrNotFound):
		return oauth.InvalidGrant(invalidRefresh).WithCause(err)
	}
	return err
}
