package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// ErrNothingRevoked: the token is unknown, invalid, expired or not
// clientID's. RFC 7009 §2.2 answers it like a success.
var ErrNothingRevoked = errors.New("nothing to revoke")

// Revoke revokes raw on behalf of clientID, the client it was issued to,
// and returns its kind. A refresh token takes its grant, and with it every
// token of the grant, along (RFC 7009 §2.1: SHOULD); an access token goes
// alone (§2.1 leaves the grant to the server, and a client discarding one
// access token should not sign its user out). A JWT's jti is recorded as
// revoked until the token expires.
//
// Only what Inspect would recognise and verify as the caller's is
// revoked; anything else is ErrNothingRevoked. Liveness (the grant, the
// client, the user) is not asked: revoking a token that is already dead
// does no harm, and one that is merely suspended (a disabled user) stays
// revoked when it would come back.
func (s *Service) Revoke(ctx context.Context, raw, clientID string, now time.Time) (Kind, error) {
	kind := KindOf(raw)
	var err error
	switch kind {
	case KindRefresh:
		err = s.revokeRefreshToken(ctx, clientID, raw, now)
	case KindOpaque:
		err = s.revokeOpaqueToken(ctx, clientID, raw, now)
	case KindJWT:
		err = s.revokeJWT(ctx, clientID, raw, now)
	default:
		err = ErrNothingRevoked
	}
	return kind, err
}

func (s *Service) revokeRefreshToken(ctx context.Context, clientID, value string, now time.Time) error {
	rt, err := s.Store.GetRefreshToken(ctx, oauth.Digest(value))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNothingRevoked
	case err != nil:
		return err
	case rt.ClientID != clientID:
		return ErrNothingRevoked
	}
	if err := s.Store.RevokeGrant(ctx, rt.GrantID, now); err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	return nil
}

func (s *Service) revokeOpaqueToken(ctx context.Context, clientID, value string, now time.Time) error {
	digest := oauth.Digest(value)
	t, err := s.Store.GetAccessToken(ctx, digest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNothingRevoked
	case err != nil:
		return err
	case t.ClientID != clientID || t.RevokedAt != nil || !now.Before(t.ExpiresAt):
		return ErrNothingRevoked
	}
	if err := s.Store.RevokeAccessToken(ctx, digest, now); err != nil {
		return fmt.Errorf("revoke access token: %w", err)
	}
	return nil
}

// revokeJWT records the jti of a valid access token of the caller until the
// token expires; an expired one needs nothing. No audience check: authd is
// the issuer, and the token may be for any of its resources.
func (s *Service) revokeJWT(ctx context.Context, clientID, value string, now time.Time) error {
	c, err := s.verifyJWT(value, now)
	if err != nil || c.ClientID != clientID {
		return ErrNothingRevoked
	}
	if err := s.Store.RevokeJTI(ctx, c.ID, c.ExpiresAt.Time); err != nil {
		return fmt.Errorf("record revoked jti: %w", err)
	}
	return nil
}
