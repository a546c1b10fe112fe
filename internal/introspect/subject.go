package introspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/authd/authd/internal/store"
)

// ErrInactive wraps the reason an inspected token is not active.
var ErrInactive = errors.New("token not active")

// AccessToken is an active access token, as InspectAccessToken found it.
type AccessToken struct {
	ClientID  string
	Subject   string      // user id, or the client id for client_credentials
	User      *store.User // nil for client_credentials
	GrantID   string
	Audience  []string
	Scopes    []string
	AuthTime  time.Time // zero when unknown
	ExpiresAt time.Time
	Act       json.RawMessage // the act claim of a delegated token
}

// InspectAccessToken judges raw exactly as /introspect does (signature,
// claims, revocation, client, grant, user and the sign-in policy), for the
// token endpoint's token exchange, and accepts access tokens only. A token
// that is not active yields an error wrapping ErrInactive; other errors
// mean the store could not answer.
func (h *Handler) InspectAccessToken(ctx context.Context, raw string, now time.Time) (AccessToken, error) {
	h.prepare()
	t, err := h.inspect(ctx, raw, now)
	var inactive inactiveError
	switch {
	case errors.As(err, &inactive):
		return AccessToken{}, fmt.Errorf("%w: %s", ErrInactive, string(inactive))
	case err != nil:
		return AccessToken{}, err
	case t.refresh:
		return AccessToken{}, fmt.Errorf("%w: a refresh token, not an access token", ErrInactive)
	}
	return AccessToken{
		ClientID: t.clientID, Subject: t.subject, User: t.user, GrantID: t.grantID,
		Audience: t.audience, Scopes: t.scopes, AuthTime: t.authTime, ExpiresAt: t.expiresAt, Act: t.act,
	}, nil
}
