package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// Request describes the access token to issue.
type Request struct {
	ClientID string
	// User is the subject; nil for a token of the client itself
	// (client_credentials), whose subject is ClientID.
	User *store.User
	// Grant the token belongs to: it never outlives it, and dies with it.
	// Nil for client_credentials.
	Grant    *store.Grant
	Scopes   []string
	Audience []string // canonical resource URIs (RFC 8707)
	// Actor, for a delegated token (RFC 8693 §4.1): who acts for User.
	Actor *Actor
	// Confirmation binds the token to a key (RFC 9449, RFC 8705).
	Confirmation *Confirmation
}

// Issued is an access token issued.
type Issued struct {
	Value     string
	Format    string    // FormatJWT or FormatOpaque
	ExpiresAt time.Time // whole seconds
	ExpiresIn int64     // seconds from the issuing time, agreeing with exp
}

// ErrNotRepresentable: the opaque format stores no act or cnf (the
// store has no place for them yet), and a token must never silently drop
// the delegation or binding it was issued with.
var ErrNotRepresentable = errors.New("tokens: an opaque access token cannot carry act or cnf")

// Issue creates an access token for req, a JWT or an opaque token as the
// Policy says for its audience. It never outlives its grant. An opaque
// token for a grant revoked meanwhile is refused with invalid_grant.
func (s *Service) Issue(ctx context.Context, now time.Time, req Request) (Issued, error) {
	exp := now.Add(orDefault(s.Lifetime, DefaultLifetime))
	if req.Grant != nil && req.Grant.ExpiresAt.Before(exp) {
		exp = req.Grant.ExpiresAt
	}
	// Whole seconds, so that expires_in and the exp claim agree.
	exp = exp.Truncate(time.Second)
	out := Issued{Format: FormatJWT, ExpiresAt: exp, ExpiresIn: int64(exp.Sub(now).Seconds())}
	var err error
	if s.Policy != nil && s.Policy.Format(req.Audience) == FormatOpaque {
		out.Format = FormatOpaque
		out.Value, err = s.issueOpaque(ctx, now, exp, req)
	} else {
		out.Value, err = s.issueJWT(ctx, now, exp, req)
	}
	if err != nil {
		return Issued{}, err
	}
	return out, nil
}

func (s *Service) issueOpaque(ctx context.Context, now, exp time.Time, req Request) (string, error) {
	if req.Actor != nil || req.Confirmation != nil {
		return "", ErrNotRepresentable
	}
	value := oauth.NewToken(oauth.PrefixAccessToken)
	t := store.AccessToken{
		Digest: oauth.Digest(value), ClientID: req.ClientID,
		Scopes: req.Scopes, Resources: req.Audience, CreatedAt: now, ExpiresAt: exp,
	}
	if req.Grant != nil {
		t.GrantID = req.Grant.ID
		authTime := req.Grant.AuthTime
		t.AuthTime = &authTime
	}
	if req.User != nil {
		t.UserID = req.User.ID
	}
	if err := s.Store.CreateAccessToken(ctx, t); errors.Is(err, store.ErrNotFound) {
		// The grant was revoked meanwhile (reuse detection, a code
		// replay, /revoke): no token outlives it.
		return "", oauth.InvalidGrant("the grant was revoked").WithCause(err)
	} else if err != nil {
		return "", fmt.Errorf("store opaque access token: %w", err)
	}
	return value, nil
}

func (s *Service) issueJWT(ctx context.Context, now, exp time.Time, req Request) (string, error) {
	c := &Claims{
		Issuer:       s.Issuer,
		Subject:      req.ClientID,
		Audience:     Audience(req.Audience),
		ClientID:     req.ClientID,
		Scope:        oauth.JoinScope(req.Scopes),
		ID:           uuid.NewString(),
		IssuedAt:     jwt.NewNumericDate(now),
		NotBefore:    jwt.NewNumericDate(now),
		ExpiresAt:    jwt.NewNumericDate(exp),
		Actor:        req.Actor,
		Confirmation: req.Confirmation,
	}
	if req.Grant != nil {
		c.GrantID = req.Grant.ID
		c.AuthTime = jwt.NewNumericDate(req.Grant.AuthTime)
	}
	if req.User != nil {
		c.Subject = req.User.ID
		var set idclaims.Set
		if s.Policy != nil {
			set = s.Policy.IdentityClaims(req.Audience)
		}
		c.Identity = idclaims.For(set, req.User)
	}
	signed, err := s.Keys.Sign(ctx, TypeAccessToken, c)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return signed, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
