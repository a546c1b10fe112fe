package tokens

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// clockSkew tolerates replicas whose clocks disagree a little: a token
// issued by one must not be refused as "not yet valid" by another whose
// clock lags. It applies to iat and nbf only; exp is checked exactly.
const clockSkew = 5 * time.Second

// InactiveError says why a token is not active. The reason is for logs
// (at debug level) and never sent: a caller learns only "not active".
type InactiveError string

func (e InactiveError) Error() string { return "token not active: " + string(e) }

// ErrUserNotAllowed is what a UserCheck error wraps when the user may no
// longer use their grants (disabled, off the allowlist, no longer a
// member at the upstream): only such an error ends a token or a grant. Any
// other UserCheck error means the check could not be made (a database or
// upstream outage) and answers 503 temporarily_unavailable: a passing
// outage must never revoke a grant for good.
var ErrUserNotAllowed = errors.New("the user is no longer allowed to sign in")

// ErrGrantKept marks a UserCheck refusal (it wraps ErrUserNotAllowed too)
// that must not end the grant: the user is refused because of what this
// server's configuration lacks (their upstream), which the operator may
// put right or another replica of a rolling deploy may already have. The
// token is refused all the same (inactive, invalid_grant); a refresh does
// not revoke the grant.
var ErrGrantKept = errors.New("refused by this server's configuration, the grant kept")

// Info is what an active token stands for.
type Info struct {
	Kind     Kind
	ClientID string
	// Subject is the user id, or the client id for a client's own token
	// (client_credentials).
	Subject string
	User    *store.User // nil for a client's own token
	GrantID string      // "" for a client's own token
	Scopes  []string
	// Audience is the resources the token is good at; nil for refresh
	// tokens, which are good at none.
	Audience  []string
	IssuedAt  time.Time
	NotBefore time.Time // zero when absent
	ExpiresAt time.Time
	AuthTime  time.Time // when the user signed in; zero when unknown
	JTI       string    // JWTs only
	// Actor and Confirmation are the token's act and cnf claims (JWTs only).
	Actor        *Actor
	Confirmation *Confirmation
}

// AccessToken reports whether the token is an access token (JWT or
// opaque), not a refresh token.
func (i *Info) AccessToken() bool { return i.Kind == KindJWT || i.Kind == KindOpaque }

// Inspect decides whether raw is an active token authd issued: an access
// token (JWT or opaque) or a refresh token, recognised by KindOf. A JWT's
// signature and claims are verified with the key set; then revocation,
// the grant, the client and the user are checked, and the user against
// UserCheck. It returns an InactiveError when the token is not active, and
// other errors only when the store could not answer, so an outage never
// reads as "inactive" nor, worse, as "active". The caller checks what is
// its own to check: the kind it accepts, the audience, the scopes.
func (s *Service) Inspect(ctx context.Context, raw string, now time.Time) (*Info, error) {
	t, err := s.inspectKind(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	// A user removed from the allowlist since the token was issued is
	// refused now, not at the next refresh: the check reads only the
	// configuration and the user row the token already brought.
	if t.User != nil && s.UserCheck != nil {
		if err := s.UserCheck(ctx, *t.User); err != nil {
			if !errors.Is(err, ErrUserNotAllowed) {
				return nil, oauth.TemporarilyUnavailable(fmt.Errorf("user check: %w", err))
			}
			return nil, InactiveError("user no longer allowed: " + err.Error())
		}
	}
	return t, nil
}

// inspectKind is Inspect without the user check.
func (s *Service) inspectKind(ctx context.Context, raw string, now time.Time) (*Info, error) {
	if len(raw) > maxTokenLen {
		return nil, InactiveError("too long")
	}
	switch KindOf(raw) {
	case KindOpaque:
		return s.inspectOpaque(ctx, raw, now)
	case KindRefresh:
		return s.inspectRefresh(ctx, raw, now)
	case KindJWT:
		return s.inspectJWT(ctx, raw, now)
	}
	return nil, InactiveError("not a token authd issues")
}

// inspectJWT verifies an RFC 9068 access token, then asks the store only
// what the signature cannot say: whether it was revoked since.
func (s *Service) inspectJWT(ctx context.Context, raw string, now time.Time) (*Info, error) {
	c, err := s.verifyJWT(raw, now)
	if err != nil {
		return nil, err
	}
	t := c.info()

	// The client first: it is cached, so a deleted or disabled client
	// costs no database round trip.
	if err := s.activeClient(ctx, c.ClientID, now); err != nil {
		return nil, err
	}
	if c.GrantID == "" {
		// client_credentials: no grant, no user, the client is the subject.
		if c.Subject != c.ClientID {
			return nil, InactiveError("token without grant has a foreign subject")
		}
		revoked, err := s.Store.IsJTIRevoked(ctx, c.ID, now)
		if err != nil {
			return nil, fmt.Errorf("check revoked jti: %w", err)
		}
		if revoked {
			return nil, InactiveError("jti revoked")
		}
		return t, nil
	}
	// A user's token: the revoked jti, the grant and the user in one read.
	revoked, g, u, err := s.Store.CheckJWTGrant(ctx, c.ID, c.GrantID, now)
	if err == nil && revoked {
		return nil, InactiveError("jti revoked")
	}
	if err := checkGrant(g, u, err, c.ClientID, now); err != nil {
		return nil, err
	}
	if g.UserID != c.Subject {
		return nil, InactiveError("subject does not match the grant")
	}
	t.User = &u
	return t, nil
}

// info is what verified claims say; the user is for the caller to add.
func (c *Claims) info() *Info {
	t := &Info{
		Kind:         KindJWT,
		ClientID:     c.ClientID,
		Subject:      c.Subject,
		GrantID:      c.GrantID,
		Scopes:       strings.Fields(c.Scope),
		Audience:     c.Audience,
		IssuedAt:     c.IssuedAt.Time,
		ExpiresAt:    c.ExpiresAt.Time,
		JTI:          c.ID,
		Actor:        c.Actor,
		Confirmation: c.Confirmation,
	}
	if c.NotBefore != nil {
		t.NotBefore = c.NotBefore.Time
	}
	if c.AuthTime != nil {
		t.AuthTime = c.AuthTime.Time
	}
	return t
}

// verifyJWT checks raw's signature and claims, and returns a copy of the
// claims the caller may keep, without the identity claims. A resource server presents the same token on
// every request it serves, so a token that verified once is remembered (by
// the SHA-256 of its exact bytes, until it expires) and later presentations
// skip the signature check and claim parsing, which were most of
// introspection's CPU time under load. What can change is re-checked every
// time: the time claims, that its signing key is still published (an
// emergency key rotation ends its tokens at once), and, by the callers,
// revocation.
func (s *Service) verifyJWT(raw string, now time.Time) (*Claims, error) {
	sum := sha256.Sum256([]byte(raw))
	if e, ok := s.jwts.get(sum, now); ok {
		if _, err := s.Keys.Keyfunc(&jwt.Token{Header: e.header, Method: e.method}); err != nil {
			return nil, InactiveError("signing key no longer published")
		}
		if !cachedClaimsValid(&e.claims, now) {
			return nil, InactiveError("invalid JWT")
		}
		c := e.claims.copy() // the cached entry stays as verified
		return &c, nil
	}
	var c Claims
	tok, err := jwt.ParseWithClaims(raw, &c, s.Keys.Keyfunc,
		jwt.WithValidMethods(s.Keys.Algorithms()),
		jwt.WithIssuer(s.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case err != nil:
		return nil, InactiveError("invalid JWT")
	case !isAccessTokenType(tok.Header["typ"]):
		// Another kind of JWT signed with the same keys (RFC 9068 §4).
		return nil, InactiveError("JWT typ is not at+jwt")
	case !now.Before(c.ExpiresAt.Time):
		// The leeway above must not extend the token's life.
		return nil, InactiveError("expired")
	case c.ID == "" || c.ClientID == "" || c.Subject == "" || c.IssuedAt == nil || len(c.Audience) == 0:
		return nil, InactiveError("required claim missing")
	}
	// The identity claims (email, name, groups, upstream ids) are for the
	// resource that reads the token; nothing here uses them (answers take
	// the user's current row). Dropped before caching, so the cache holds
	// no personal data for the token's lifetime, and a hit and a miss
	// return the same claims.
	c.Identity = idclaims.Identity{}
	s.jwts.put(sum, jwtEntry{
		claims: c.copy(),
		header: map[string]any{"kid": tok.Header["kid"], "alg": tok.Header["alg"]},
		method: tok.Method,
	}, now)
	return &c, nil
}

// copy is c with its own audience, act chain and confirmation (verified
// claims carry no identity claims to copy).
func (c *Claims) copy() Claims {
	cp := *c
	cp.Audience = slices.Clone(c.Audience)
	cp.Actor = c.Actor.clone()
	cp.Confirmation = c.Confirmation.clone()
	return cp
}

// cachedClaimsValid repeats, for a remembered token, the checks of
// ParseWithClaims that depend on the time: it is not yet expired (no
// leeway), and neither issued nor valid only in the future (beyond
// clockSkew). The issuer, the required claims and the signature were
// checked when it was first verified and cannot have changed since.
func cachedClaimsValid(c *Claims, now time.Time) bool {
	latest := now.Add(clockSkew)
	switch {
	case c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Time):
		return false
	case c.IssuedAt == nil || c.IssuedAt.After(latest):
		return false
	case c.NotBefore != nil && c.NotBefore.After(latest):
		return false
	}
	return true
}

// inspectOpaque looks an opaque access token up by its digest.
func (s *Service) inspectOpaque(ctx context.Context, raw string, now time.Time) (*Info, error) {
	at, err := s.Store.GetAccessToken(ctx, oauth.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, InactiveError("unknown access token")
	case err != nil:
		return nil, fmt.Errorf("get access token: %w", err)
	case at.RevokedAt != nil:
		return nil, InactiveError("access token revoked")
	case !now.Before(at.ExpiresAt):
		return nil, InactiveError("expired")
	}
	t := &Info{
		Kind:      KindOpaque,
		ClientID:  at.ClientID,
		Subject:   at.ClientID,
		GrantID:   at.GrantID,
		Scopes:    at.Scopes,
		Audience:  at.Resources,
		IssuedAt:  at.CreatedAt,
		ExpiresAt: at.ExpiresAt,
	}
	if at.AuthTime != nil {
		t.AuthTime = *at.AuthTime
	}
	if err := s.activeClient(ctx, at.ClientID, now); err != nil {
		return nil, err
	}
	// The row speaks for its grant too: revoking a grant revokes its
	// opaque tokens in the same transaction (store.Store.RevokeGrant), and
	// a token never outlives its grant (it is issued expiring no later), so
	// reading the grant would cost a round trip and tell nothing more.
	if at.UserID != "" {
		t.Subject = at.UserID
		if t.User, err = s.activeUser(ctx, at.UserID, now); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// inspectRefresh looks a refresh token up by its digest. Only the current
// link of a rotation chain is active; a rotated-away one is not, though
// the grant may be.
func (s *Service) inspectRefresh(ctx context.Context, raw string, now time.Time) (*Info, error) {
	rt, err := s.Store.GetRefreshToken(ctx, oauth.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, InactiveError("unknown refresh token")
	case err != nil:
		return nil, fmt.Errorf("get refresh token: %w", err)
	case rt.UsedAt != nil:
		return nil, InactiveError("refresh token used or revoked")
	case !now.Before(rt.ExpiresAt):
		return nil, InactiveError("expired")
	}
	if err := s.activeClient(ctx, rt.ClientID, now); err != nil {
		return nil, err
	}
	g, u, err := s.activeGrant(ctx, rt.GrantID, rt.ClientID, now)
	if err != nil {
		return nil, err
	}
	return &Info{
		Kind:      KindRefresh,
		ClientID:  rt.ClientID,
		Subject:   g.UserID,
		User:      u,
		GrantID:   g.ID,
		Scopes:    g.Scopes,
		IssuedAt:  rt.CreatedAt,
		ExpiresAt: rt.ExpiresAt,
		AuthTime:  g.AuthTime,
	}, nil
}

// activeClient checks that the token's client still exists (deleting a
// client, or its idle expiry, ends its tokens) and is not disabled.
func (s *Service) activeClient(ctx context.Context, id string, now time.Time) error {
	c, err := s.Clients.GetClient(ctx, id, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return InactiveError("client deleted")
	case err != nil:
		return fmt.Errorf("get client: %w", err)
	case c.Disabled:
		return InactiveError("client disabled")
	}
	return nil
}

// activeGrant returns the grant and its user, read together in one round
// trip, if checkGrant passes them.
func (s *Service) activeGrant(ctx context.Context, id, clientID string, now time.Time) (store.Grant, *store.User, error) {
	g, u, err := s.Store.GetGrantUser(ctx, id)
	if err := checkGrant(g, u, err, clientID, now); err != nil {
		return store.Grant{}, nil, err
	}
	return g, &u, nil
}

// checkGrant turns the read of a grant and its user into an answer: the
// grant must exist, be neither revoked nor expired and belong to clientID,
// and the user must exist and not be disabled. A grant without a user
// (none carries a grant id in its tokens) reads as gone.
func checkGrant(g store.Grant, u store.User, err error, clientID string, now time.Time) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return InactiveError("grant or its user gone")
	case err != nil:
		return fmt.Errorf("get grant: %w", err)
	case g.RevokedAt != nil:
		return InactiveError("grant revoked")
	case !now.Before(g.ExpiresAt):
		return InactiveError("grant expired")
	case g.ClientID != clientID:
		return InactiveError("grant of another client")
	case u.Disabled:
		return InactiveError("user disabled")
	}
	return nil
}

// activeUser returns the user unless deleted or disabled by the operator.
func (s *Service) activeUser(ctx context.Context, id string, now time.Time) (*store.User, error) {
	u, ok := s.users.get(id, now, s.UserCacheTTL)
	var err error
	if !ok {
		u, err = s.Store.GetUser(ctx, id)
		if err == nil {
			s.users.put(u, now, s.UserCacheTTL)
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, InactiveError("user gone")
	case err != nil:
		return nil, fmt.Errorf("get user: %w", err)
	case u.Disabled:
		return nil, InactiveError("user disabled")
	}
	return &u, nil
}
