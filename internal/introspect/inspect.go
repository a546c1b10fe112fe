package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// accessTokenType is the JWT "typ" of access tokens (RFC 9068 §2.1).
const accessTokenType = "at+jwt"

// clockSkew tolerates replicas whose clocks disagree a little: a token
// issued by one must not be refused as "not yet valid" by another whose
// clock lags. It applies to iat and nbf only; exp is checked exactly.
const clockSkew = 5 * time.Second

// maxTokenLen bounds what is parsed or hashed; authd's tokens are far
// shorter.
const maxTokenLen = 8 << 10

// inactiveError says why a token is not active. The reason is logged at
// debug level and never sent.
type inactiveError string

func (e inactiveError) Error() string { return "token not active: " + string(e) }

// tokenInfo is what an active token stands for.
type tokenInfo struct {
	refresh   bool // a refresh token; otherwise an access token
	clientID  string
	subject   string      // user id, or the client id for client_credentials
	user      *store.User // nil for client_credentials
	scopes    []string
	audience  []string // nil for refresh tokens
	issuedAt  time.Time
	notBefore time.Time // zero when absent
	expiresAt time.Time
	jti       string
	grantID   string
	authTime  time.Time       // zero when unknown
	act       json.RawMessage // RFC 8693 §4.1 actor of a delegated token
}

// inspect decides whether raw is an active token authd issued, routing it
// by its shape. It returns an inactiveError when not, and other errors only
// when the store could not answer, so an outage never reads as "inactive"
// nor, worse, as "active".
func (h *Handler) inspect(ctx context.Context, raw string, now time.Time) (*tokenInfo, error) {
	t, err := h.inspectShape(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	// A user removed from the allowlist since the token was issued is
	// refused now, not at the next refresh: the check reads only the
	// configuration and the user row the token already brought.
	if t.user != nil && h.UserCheck != nil {
		if err := h.UserCheck(ctx, *t.user); err != nil {
			return nil, inactiveError("user no longer allowed: " + err.Error())
		}
	}
	return t, nil
}

// inspectShape is inspect without the user check.
func (h *Handler) inspectShape(ctx context.Context, raw string, now time.Time) (*tokenInfo, error) {
	switch {
	case len(raw) > maxTokenLen:
		return nil, inactiveError("too long")
	case strings.HasPrefix(raw, oauth.PrefixAccessToken):
		return h.inspectOpaque(ctx, raw, now)
	case strings.HasPrefix(raw, oauth.PrefixRefreshToken):
		return h.inspectRefresh(ctx, raw, now)
	case isJWT(raw):
		return h.inspectJWT(ctx, raw, now)
	}
	return nil, inactiveError("not a token authd issues")
}

// claims are the claims of authd's JWT access tokens (RFC 9068 §2.2) that
// matter here, plus the grant id.
type claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  audience         `json:"aud"`
	ClientID  string           `json:"client_id"`
	Scope     string           `json:"scope"`
	ID        string           `json:"jti"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	GrantID   string           `json:"gid"`
	AuthTime  *jwt.NumericDate `json:"auth_time"`
	Act       json.RawMessage  `json:"act"`
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings(c.Audience), nil }

// inspectJWT verifies an RFC 9068 access token, then asks the store only
// what the signature cannot say: whether it was revoked since.
func (h *Handler) inspectJWT(ctx context.Context, raw string, now time.Time) (*tokenInfo, error) {
	c, err := h.verifyJWT(raw, now)
	if err != nil {
		return nil, err
	}
	t := &tokenInfo{
		clientID:  c.ClientID,
		subject:   c.Subject,
		scopes:    strings.Fields(c.Scope),
		audience:  c.Audience,
		issuedAt:  c.IssuedAt.Time,
		expiresAt: c.ExpiresAt.Time,
		jti:       c.ID,
		grantID:   c.GrantID,
		act:       c.Act,
	}
	if c.NotBefore != nil {
		t.notBefore = c.NotBefore.Time
	}
	if c.AuthTime != nil {
		t.authTime = c.AuthTime.Time
	}

	// The client first: it is cached, so a deleted or disabled client
	// costs no database round trip.
	if err := h.activeClient(ctx, c.ClientID, now); err != nil {
		return nil, err
	}
	if c.GrantID == "" {
		// client_credentials: no grant, no user, the client is the subject.
		if c.Subject != c.ClientID {
			return nil, inactiveError("token without grant has a foreign subject")
		}
		revoked, err := h.Store.IsJTIRevoked(ctx, c.ID, now)
		if err != nil {
			return nil, fmt.Errorf("check revoked jti: %w", err)
		}
		if revoked {
			return nil, inactiveError("jti revoked")
		}
		return t, nil
	}
	// A user's token: the revoked jti, the grant and the user in one read.
	revoked, g, u, err := h.Store.CheckJWTGrant(ctx, c.ID, c.GrantID, now)
	if err == nil && revoked {
		return nil, inactiveError("jti revoked")
	}
	if err := checkGrant(g, u, err, c.ClientID, now); err != nil {
		return nil, err
	}
	if g.UserID != c.Subject {
		return nil, inactiveError("subject does not match the grant")
	}
	t.user = &u
	return t, nil
}

// verifyJWT checks raw's signature and claims. A resource server presents
// the same token on every request it serves, so a token that verified
// once is remembered (by the SHA-256 of its exact bytes, until it expires)
// and later presentations skip the signature check and claim parsing,
// which were most of introspection's CPU time under load. What can change
// is re-checked every time: the time claims, that its signing key is
// still published (an emergency key rotation ends its tokens at once),
// and, by the callers, revocation.
func (h *Handler) verifyJWT(raw string, now time.Time) (*claims, error) {
	sum := sha256.Sum256([]byte(raw))
	if e, ok := h.jwts.get(sum, now); ok {
		if _, err := h.Keys.Keyfunc(&jwt.Token{Header: e.header, Method: e.method}); err != nil {
			return nil, inactiveError("signing key no longer published")
		}
		if err := h.validator(now).Validate(&e.claims); err != nil || !now.Before(e.claims.ExpiresAt.Time) {
			return nil, inactiveError("invalid JWT")
		}
		c := e.claims
		c.Audience = slices.Clone(c.Audience) // the cached entry stays as verified
		return &c, nil
	}
	var c claims
	tok, err := jwt.ParseWithClaims(raw, &c, h.Keys.Keyfunc,
		jwt.WithValidMethods(h.Keys.Algorithms()),
		jwt.WithIssuer(h.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case err != nil:
		return nil, inactiveError("invalid JWT")
	case !isAccessTokenType(tok.Header["typ"]):
		// Another kind of JWT signed with the same keys (RFC 9068 §4).
		return nil, inactiveError("JWT typ is not at+jwt")
	case !now.Before(c.ExpiresAt.Time):
		// The leeway above must not extend the token's life.
		return nil, inactiveError("expired")
	case c.ID == "" || c.ClientID == "" || c.Subject == "" || c.IssuedAt == nil || len(c.Audience) == 0:
		return nil, inactiveError("required claim missing")
	}
	cached := c
	cached.Audience = slices.Clone(c.Audience)
	h.jwts.put(sum, jwtEntry{
		claims: cached,
		header: map[string]any{"kid": tok.Header["kid"], "alg": tok.Header["alg"]},
		method: tok.Method,
	}, now)
	return &c, nil
}

// validator checks the claims of a remembered token as ParseWithClaims
// did when it was first verified.
func (h *Handler) validator(now time.Time) *jwt.Validator {
	return jwt.NewValidator(
		jwt.WithIssuer(h.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
}

// inspectOpaque looks an opaque access token up by its digest.
func (h *Handler) inspectOpaque(ctx context.Context, raw string, now time.Time) (*tokenInfo, error) {
	at, err := h.Store.GetAccessToken(ctx, oauth.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, inactiveError("unknown access token")
	case err != nil:
		return nil, fmt.Errorf("get access token: %w", err)
	case at.RevokedAt != nil:
		return nil, inactiveError("access token revoked")
	case !now.Before(at.ExpiresAt):
		return nil, inactiveError("expired")
	}
	t := &tokenInfo{
		clientID:  at.ClientID,
		subject:   at.ClientID,
		scopes:    at.Scopes,
		audience:  at.Resources,
		issuedAt:  at.CreatedAt,
		expiresAt: at.ExpiresAt,
		grantID:   at.GrantID,
	}
	if at.AuthTime != nil {
		t.authTime = *at.AuthTime
	}
	if err := h.activeClient(ctx, at.ClientID, now); err != nil {
		return nil, err
	}
	// The row speaks for its grant too: revoking a grant revokes its
	// opaque tokens in the same transaction (store.Store.RevokeGrant), and
	// a token never outlives its grant (it is issued expiring no later), so
	// reading the grant would cost a round trip and tell nothing more.
	if at.UserID != "" {
		t.subject = at.UserID
		if t.user, err = h.activeUser(ctx, at.UserID, now); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// inspectRefresh looks a refresh token up by its digest. Only the current
// link of a rotation chain is active; a rotated-away one is not, though
// the grant may be.
func (h *Handler) inspectRefresh(ctx context.Context, raw string, now time.Time) (*tokenInfo, error) {
	rt, err := h.Store.GetRefreshToken(ctx, oauth.Digest(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, inactiveError("unknown refresh token")
	case err != nil:
		return nil, fmt.Errorf("get refresh token: %w", err)
	case rt.UsedAt != nil:
		return nil, inactiveError("refresh token used or revoked")
	case !now.Before(rt.ExpiresAt):
		return nil, inactiveError("expired")
	}
	if err := h.activeClient(ctx, rt.ClientID, now); err != nil {
		return nil, err
	}
	g, u, err := h.activeGrant(ctx, rt.GrantID, rt.ClientID, now)
	if err != nil {
		return nil, err
	}
	return &tokenInfo{
		refresh:   true,
		clientID:  rt.ClientID,
		subject:   g.UserID,
		user:      u,
		scopes:    g.Scopes,
		issuedAt:  rt.CreatedAt,
		expiresAt: rt.ExpiresAt,
	}, nil
}

// activeClient checks that the token's client still exists (deleting a
// client, or its idle expiry, ends its tokens) and is not disabled.
func (h *Handler) activeClient(ctx context.Context, id string, now time.Time) error {
	c, err := h.Clients.Clients.GetClient(ctx, id, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return inactiveError("client deleted")
	case err != nil:
		return fmt.Errorf("get client: %w", err)
	case c.Disabled:
		return inactiveError("client disabled")
	}
	return nil
}

// activeGrant returns the grant and its user, read together in one round
// trip, if checkGrant passes them.
func (h *Handler) activeGrant(ctx context.Context, id, clientID string, now time.Time) (store.Grant, *store.User, error) {
	g, u, err := h.Store.GetGrantUser(ctx, id)
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
		return inactiveError("grant or its user gone")
	case err != nil:
		return fmt.Errorf("get grant: %w", err)
	case g.RevokedAt != nil:
		return inactiveError("grant revoked")
	case !now.Before(g.ExpiresAt):
		return inactiveError("grant expired")
	case g.ClientID != clientID:
		return inactiveError("grant of another client")
	case u.Disabled:
		return inactiveError("user disabled")
	}
	return nil
}

// activeUser returns the user unless deleted or disabled by the operator.
func (h *Handler) activeUser(ctx context.Context, id string, now time.Time) (*store.User, error) {
	u, ok := h.users.get(id, now, h.UserCacheTTL)
	var err error
	if !ok {
		u, err = h.Store.GetUser(ctx, id)
		if err == nil {
			h.users.put(u, now, h.UserCacheTTL)
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, inactiveError("user gone")
	case err != nil:
		return nil, fmt.Errorf("get user: %w", err)
	case u.Disabled:
		return nil, inactiveError("user disabled")
	}
	return &u, nil
}

// isAccessTokenType accepts "at+jwt" and its full media type (RFC 9068 §4),
// compared case-insensitively as media types are.
func isAccessTokenType(typ any) bool {
	s, _ := typ.(string)
	return strings.EqualFold(s, accessTokenType) || strings.EqualFold(s, "application/"+accessTokenType)
}

// isJWT reports whether s has the shape of a JWS compact serialization:
// three non-empty base64url segments.
func isJWT(s string) bool {
	segments := 0
	seglen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seglen == 0 {
				return false
			}
			segments++
			seglen = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			seglen++
		default:
			return false
		}
	}
	return segments == 2 && seglen > 0
}

// audience is the aud claim: a string when it names one resource, an
// array for several (RFC 7519 §4.1.3); introspection answers in kind.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(b []byte) error {
	var cs jwt.ClaimStrings
	if err := cs.UnmarshalJSON(b); err != nil {
		return err
	}
	*a = audience(cs)
	return nil
}

// maxCachedUsers bounds the user cache; past it, stale entries go first,
// then arbitrary ones (which at worst costs a lookup).
const maxCachedUsers = 10000

// userCache remembers user rows for Handler.UserCacheTTL.
type userCache struct {
	mu sync.Mutex
	m  map[string]cachedUser
}

type cachedUser struct {
	u       store.User
	fetched time.Time
}

func (c *userCache) get(id string, now time.Time, ttl time.Duration) (store.User, bool) {
	if ttl <= 0 {
		return store.User{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.Sub(e.fetched) >= ttl || now.Before(e.fetched) {
		return store.User{}, false
	}
	return e.u, true
}

func (c *userCache) put(u store.User, now time.Time, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	u.Groups = slices.Clone(u.Groups)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedUser{}
	}
	if _, ok := c.m[u.ID]; !ok && len(c.m) >= maxCachedUsers {
		for k, e := range c.m {
			if now.Sub(e.fetched) >= ttl {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxCachedUsers {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[u.ID] = cachedUser{u: u, fetched: now}
}

// maxCachedJWTs bounds the verified-token cache (a few hundred bytes each).
const maxCachedJWTs = 10000

// jwtCache remembers verified JWT access tokens until they expire.
type jwtCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]jwtEntry
}

type jwtEntry struct {
	claims claims
	// header and method are what Keyfunc needs to say whether the
	// signing key is still published.
	header map[string]any
	method jwt.SigningMethod
}

func (c *jwtCache) get(sum [sha256.Size]byte, now time.Time) (jwtEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[sum]
	if ok && !now.Before(e.claims.ExpiresAt.Time) {
		delete(c.m, sum)
		return jwtEntry{}, false
	}
	return e, ok
}

// put remembers e, making room first when full: expired entries go, then
// arbitrary ones (map order), which at worst costs a verification.
func (c *jwtCache) put(sum [sha256.Size]byte, e jwtEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[sha256.Size]byte]jwtEntry{}
	}
	if _, ok := c.m[sum]; !ok && len(c.m) >= maxCachedJWTs {
		for k, old := range c.m {
			if !now.Before(old.claims.ExpiresAt.Time) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxCachedJWTs {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[sum] = e
}
