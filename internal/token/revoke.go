package token

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

// serveRevoke implements RFC 7009. The client authenticates as at /token
// (public clients by client_id). The token is routed by its own shape,
// never by token_type_hint, which §2.1 makes a mere optimisation: authd's
// refresh and opaque access tokens carry distinct prefixes, and anything
// else shaped like a JWT is verified as an access token.
//
// Whatever cannot be revoked on the caller's behalf (unknown, malformed,
// expired, or another client's token) gets the same empty 200 as success
// (§2.2), so the endpoint reveals nothing about tokens it did not issue to
// the caller. unsupported_token_type is never needed: authd can revoke
// every kind of token it issues, and unknown hint values are ignored.
//
// Revoking a refresh token revokes its grant, and with it every token of
// the grant (§2.1: SHOULD). Revoking an access token revokes that token
// only: §2.1 leaves the grant to the server, and a client discarding one
// access token should not sign its user out.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if err := h.revoke(w, r); err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	oauth.NoStore(w)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) error {
	form, err := clientauth.ReadForm(w, r, h.MaxBodyBytes)
	if err != nil {
		return err
	}
	if err := clientauth.CheckSingle(form); err != nil {
		return err
	}
	client, _, err := h.Clients.Authenticate(r, form)
	if err != nil {
		return err
	}
	ctx := r.Context()
	reqlog.Set(ctx, "client_id", client.ID)
	value := form.Get("token")
	if value == "" {
		return oauth.InvalidRequest("token is required")
	}
	now := h.now()

	var kind string
	switch {
	case strings.HasPrefix(value, oauth.PrefixRefreshToken):
		kind, err = "refresh_token", h.revokeRefreshToken(ctx, client.ID, value, now)
	case strings.HasPrefix(value, oauth.PrefixAccessToken):
		kind, err = "opaque_access_token", h.revokeOpaqueToken(ctx, client.ID, value, now)
	case strings.Count(value, ".") == 2:
		kind, err = "jwt_access_token", h.revokeJWT(ctx, client.ID, value, now)
	default:
		err = errNothingRevoked
	}
	switch {
	case errors.Is(err, errNothingRevoked):
		h.log().DebugContext(ctx, "revocation request for a token not revocable by this client", "client_id", client.ID)
		return nil
	case err != nil:
		return err
	}
	h.log().InfoContext(ctx, "token revoked", "event", "token_revoked", "token_kind", kind, "client_id", client.ID)
	return nil
}

// errNothingRevoked: the token is unknown, invalid, expired or not the
// caller's; the answer is still 200.
var errNothingRevoked = errors.New("nothing to revoke")

func (h *Handler) revokeRefreshToken(ctx context.Context, clientID, value string, now time.Time) error {
	rt, err := h.Store.GetRefreshToken(ctx, oauth.Digest(value))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNothingRevoked
	case err != nil:
		return err
	case rt.ClientID != clientID:
		return errNothingRevoked
	}
	if err := h.Store.RevokeGrant(ctx, rt.GrantID, now); err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	return nil
}

func (h *Handler) revokeOpaqueToken(ctx context.Context, clientID, value string, now time.Time) error {
	digest := oauth.Digest(value)
	t, err := h.Store.GetAccessToken(ctx, digest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNothingRevoked
	case err != nil:
		return err
	case t.ClientID != clientID || t.RevokedAt != nil || !now.Before(t.ExpiresAt):
		return errNothingRevoked
	}
	if err := h.Store.RevokeAccessToken(ctx, digest, now); err != nil {
		return fmt.Errorf("revoke access token: %w", err)
	}
	return nil
}

// revokeJWT records the jti of a valid access token of the caller until the
// token expires; an expired one needs nothing. No audience check: authd is
// the issuer, and the token may be for any of its resources.
func (h *Handler) revokeJWT(ctx context.Context, clientID, value string, now time.Time) error {
	var c Claims
	tok, err := jwt.ParseWithClaims(value, &c, h.Keys.Keyfunc,
		jwt.WithValidMethods(h.Keys.Algorithms()),
		jwt.WithIssuer(h.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil || tok.Header["typ"] != TypeAccessToken || c.ClientID != clientID || c.ID == "" {
		return errNothingRevoked
	}
	if err := h.Store.RevokeJTI(ctx, c.ID, c.ExpiresAt.Time); err != nil {
		return fmt.Errorf("record revoked jti: %w", err)
	}
	return nil
}
