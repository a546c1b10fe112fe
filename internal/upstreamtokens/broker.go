// Package upstreamtokens keeps users' grants at upstream identity
// providers (upstreams[].store_tokens) and hands out their current access
// token: the broker half of issue 18. Token exchange (/token) and /verify
// call Broker.Token; the sign-in callback calls Keep; /apps lists and
// disconnects.
//
// # At rest
//
// The access and refresh token are sealed with AES-256-GCM under a key
// derived (HKDF-SHA256, its own info label) from keys.encryption_secret.
// Each row names its key by an id derived from the same secret under
// another label, so that the secret can be rotated: rows sealed with a
// previous secret still open while it is configured as one. The additional
// data binds a ciphertext to its (user, upstream). Expiry, granted scopes
// and whether a refresh token exists are stored in clear: refresh and
// purge decide on them, and they are no credential.
//
// # Refresh
//
// An expired access token is refreshed with the kept refresh token while
// the row is held (store.UpdateUpstreamToken: SELECT ... FOR UPDATE in
// Postgres). The expiry is checked again once the row is held, so that of
// several replicas needing the token at once exactly one calls the
// upstream (refresh tokens of GitHub Apps and many OIDC providers are
// single-use) and the others use its result. An upstream refusal
// (invalid_grant) marks the grant dead and, unless configured otherwise,
// revokes the user's grants at authd.
package upstreamtokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// Errors of Token, tested with errors.Is.
var (
	// ErrNotStored: no upstream grant is kept for this user and upstream
	// (the upstream does not keep tokens, the user never signed in with
	// it since, or disconnected it). A new sign-in may help.
	ErrNotStored = errors.New("upstreamtokens: no upstream token is kept for this user and upstream")
	// ErrGrantDead: the kept grant can no longer be used: the upstream
	// refused its refresh token (revoked, expired, used), or the access
	// token expired and there is no refresh token. Only a new sign-in
	// at the upstream helps.
	ErrGrantDead = errors.New("upstreamtokens: the upstream grant was revoked or has expired; the user must sign in again")
)

// Token is a user's current access token at an upstream. It never prints
// the token (String, LogValue).
type Token struct {
	AccessToken string
	TokenType   string    // as the upstream spelled it, "Bearer" if it did not say
	Expiry      time.Time // zero: the upstream did not say it expires
	Scopes      []string  // what the upstream granted
}

func (t Token) String() string   { return "upstreamtokens.Token{access token redacted}" }
func (t Token) GoString() string { return t.String() }

// LogValue keeps the token out of structured logs.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expiry", t.Expiry), slog.Any("scopes", t.Scopes))
}

// Store is what the broker persists through.
type Store interface {
	PutUpstreamToken(ctx context.Context, t store.UpstreamToken) error
	GetUpstreamToken(ctx context.Context, userID, upstream string) (store.UpstreamToken, error)
	ListUpstreamTokens(ctx context.Context, userID string) ([]store.UpstreamToken, error)
	DeleteUpstreamToken(ctx context.Context, userID, upstream string) error
	UpdateUpstreamToken(ctx context.Context, userID, upstream string, update func(store.UpstreamToken) (*store.UpstreamToken, error)) (store.UpstreamToken, error)
	ClaimMembershipCheck(ctx context.Context, userID, upstream string, now time.Time, interval time.Duration) (bool, error)
	ListGrants(ctx context.Context, userID string) ([]store.Grant, error)
	RevokeGrant(ctx context.Context, id string, now time.Time) error
}

// Upstream is one upstream that keeps tokens (store_tokens: true).
type Upstream struct {
	ID   string
	Type string // upstream.TypeGitHub, ...
	// Refresher renews expired access tokens; nil: they are not renewed.
	Refresher upstream.Refresher
	// Memberships re-reads what the allowlist depends on; nil: no checks.
	Memberships upstream.MembershipReader
	// RevokeOnUpstreamRevocation revokes the user's grants at authd when
	// the upstream refuses the refresh token.
	RevokeOnUpstreamRevocation bool
	// MembershipCheckInterval: memberships are read again at most this
	// often (0: upstream.DefaultMembershipCheckInterval).
	MembershipCheckInterval time.Duration
}

// Broker keeps and hands out upstream tokens. Build it once in the
// composition root; it is safe for concurrent use.
type Broker struct {
	// Store should not be store.Bounded's request budget: a refresh
	// holds the row while it calls the upstream. RefreshTimeout bounds it.
	Store     Store
	Keys      *Keyring
	Upstreams map[string]Upstream // by upstream id; only upstreams that keep tokens
	// Allowed is the allowlist as the sign-in applies it (providerType,
	// the user with re-read memberships); nil: membership checks only
	// log.
	Allowed func(providerType string, u store.User) error
	// RefreshTimeout bounds one refresh, waiting for another replica's
	// included; default 30s.
	RefreshTimeout time.Duration
	// Leeway: an access token expiring within it is refreshed first, so
	// that the caller gets one it can still use; default 1m.
	Leeway time.Duration
	Now    func() time.Time
	Log    *slog.Logger
}

const (
	defaultRefreshTimeout = 30 * time.Second
	defaultLeeway         = time.Minute
	// revokeTimeout bounds revoking a user's grants after the upstream
	// revoked theirs; it runs even if the caller's request was cancelled.
	revokeTimeout = 10 * time.Second
)

func (b *Broker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Broker) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (b *Broker) leeway() time.Duration {
	if b.Leeway > 0 {
		return b.Leeway
	}
	return defaultLeeway
}

// Keeps reports whether tokens of upstream id are kept.
func (b *Broker) Keeps(id string) bool {
	if b == nil {
		return false
	}
	_, ok := b.Upstreams[id]
	return ok
}

// Keep stores g, the grant a sign-in at upstream id just returned, for
// userID, replacing what was kept (a dead grant comes back to life). When
// the upstream sent no refresh token this time (Google sends one only at
// the first consent), the kept one stays. The memberships were just read,
// so the next check is due an interval from now. Upstreams that do not
// keep tokens, and a nil g, are ignored.
func (b *Broker) Keep(ctx context.Context, userID, id string, g *upstream.Grant) error {
	if !b.Keeps(id) || g == nil || g.AccessToken == "" {
		return nil
	}
	now := b.now()
	build := func(prev *store.UpstreamToken) (*store.UpstreamToken, error) {
		s := secrets{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenType: g.TokenType}
		if s.RefreshToken == "" && prev != nil && prev.DeadAt == nil && prev.Refreshable {
			old, err := b.Keys.open(prev.KeyID, userID, id, prev.Sealed)
			if err == nil {
				s.RefreshToken = old.RefreshToken
			}
		}
		return b.row(userID, id, s, expiry(g, now), g.Scopes, now)
	}
	_, err := b.Store.UpdateUpstreamToken(ctx, userID, id, func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
		return build(&cur)
	})
	if errors.Is(err, store.ErrNotFound) {
		var row *store.UpstreamToken
		if row, err = build(nil); err == nil {
			err = b.Store.PutUpstreamToken(ctx, *row)
		}
	}
	if err != nil {
		return fmt.Errorf("upstreamtokens: keeping the %s grant: %w", id, err)
	}
	return nil
}

// row seals s into a fresh row for (userID, id) as of now.
func (b *Broker) row(userID, id string, s secrets, expiry time.Time, scopes []string, now time.Time) (*store.UpstreamToken, error) {
	kid, sealed, err := b.Keys.seal(userID, id, s)
	if err != nil {
		return nil, err
	}
	r := &store.UpstreamToken{
		UserID:              userID,
		Upstream:            id,
		KeyID:               kid,
		Sealed:              sealed,
		Refreshable:         s.RefreshToken != "",
		Scopes:              slices.Clone(scopes),
		MembershipCheckedAt: &now,
		CreatedAt:           now,
		UpdatedAt:           now,
	}
	if !expiry.IsZero() {
		r.ExpiresAt = &expiry
	}
	return r, nil
}

// expiry is when g's access token expires on the broker's clock: what the
// provider's expires_in says counted from now (the connector counted it on
// its own clock).
func expiry(g *upstream.Grant, now time.Time) time.Time {
	if g.ExpiresIn > 0 {
		return now.Add(g.ExpiresIn)
	}
	return g.Expiry
}

// usable reports whether r's access token can still be handed out at now.
func (b *Broker) usable(r store.UpstreamToken, now time.Time) bool {
	return r.ExpiresAt == nil || now.Add(b.leeway()).Before(*r.ExpiresAt)
}

// Token returns userID's current access token at upstream id, refreshing
// it first when it has expired (or is about to). Errors: ErrNotStored,
// ErrGrantDead, ErrDecrypt, or a failure to reach the upstream or the
// database (then the kept grant is unchanged and a later call may
// succeed).
func (b *Broker) Token(ctx context.Context, userID, id string) (Token, error) {
	up, ok := b.Upstreams[id]
	if !ok {
		return Token{}, fmt.Errorf("%w (upstream %q does not keep tokens)", ErrNotStored, id)
	}
	row, err := b.Store.GetUpstreamToken(ctx, userID, id)
	if errors.Is(err, store.ErrNotFound) {
		return Token{}, ErrNotStored
	}
	if err != nil {
		return Token{}, err
	}
	if row.DeadAt != nil {
		return Token{}, ErrGrantDead
	}
	now := b.now()
	if b.usable(row, now) {
		s, err := b.Keys.open(row.KeyID, userID, id, row.Sealed)
		if err != nil {
			return Token{}, err
		}
		return token(row, s), nil
	}
	return b.refresh(ctx, up, userID, now)
}

func token(r store.UpstreamToken, s secrets) Token {
	t := Token{AccessToken: s.AccessToken, TokenType: s.TokenType, Scopes: slices.Clone(r.Scopes)}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	if r.ExpiresAt != nil {
		t.Expiry = *r.ExpiresAt
	}
	return t
}

// refresh renews the access token while holding the row; see the package
// comment.
func (b *Broker) refresh(ctx context.Context, up Upstream, userID string, now time.Time) (Token, error) {
	timeout := b.RefreshTimeout
	if timeout <= 0 {
		timeout = defaultRefreshTimeout
	}
	// Not cancelled with the caller: a single-use refresh token spent at
	// the upstream whose answer is then thrown away (the client hung up)
	// would leave the kept grant dead at the next refresh.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var (
		out      secrets
		refused  error // the upstream's refusal, once the row is marked dead
		expired  bool  // nothing to refresh with
		refreshd bool
	)
	row, err := b.Store.UpdateUpstreamToken(ctx, userID, up.ID, func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
		if cur.DeadAt != nil {
			return nil, ErrGrantDead
		}
		s, err := b.Keys.open(cur.KeyID, userID, up.ID, cur.Sealed)
		if err != nil {
			return nil, err
		}
		if b.usable(cur, b.now()) {
			out = s // another caller (replica) refreshed it while we waited
			return nil, nil
		}
		if s.RefreshToken == "" || up.Refresher == nil {
			expired = true
			return nil, nil
		}
		g, err := up.Refresher.Refresh(ctx, s.RefreshToken)
		if errors.Is(err, upstream.ErrGrantRevoked) {
			refused = err
			dead := cur
			dead.DeadAt, dead.UpdatedAt = &now, now
			return &dead, nil
		}
		if err != nil {
			return nil, fmt.Errorf("upstreamtokens: refreshing the %s token: %w", up.ID, err)
		}
		out = secrets{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenType: g.TokenType}
		if out.RefreshToken == "" {
			out.RefreshToken = s.RefreshToken // the upstream keeps the old one valid
		}
		scopes := g.Scopes
		if scopes == nil {
			scopes = cur.Scopes // RFC 6749 §5.1: unchanged when not sent
		}
		next, err := b.row(userID, up.ID, out, expiry(g, now), scopes, now)
		if err != nil {
			return nil, err
		}
		next.MembershipCheckedAt = cur.MembershipCheckedAt // a refresh checks no membership
		refreshd = true
		return next, nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Token{}, ErrNotStored
	case err != nil:
		return Token{}, err
	case refused != nil:
		b.upstreamRevoked(ctx, up, userID, now, refused)
		return Token{}, ErrGrantDead
	case expired:
		return Token{}, ErrGrantDead
	}
	if refreshd {
		b.log().DebugContext(ctx, "upstream token refreshed", "upstream", up.ID, "user_id", userID)
	}
	return token(row, out), nil
}

// upstreamRevoked handles the upstream's refusal of a kept refresh token:
// an audit record and, when configured, the end of the user's grants at
// authd, which were given on the strength of that upstream grant.
func (b *Broker) upstreamRevoked(ctx context.Context, up Upstream, userID string, now time.Time, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	b.log().InfoContext(ctx, "audit", "event", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID, "reason", cause.Error())
	if !up.RevokeOnUpstreamRevocation {
		return
	}
	n, err := b.revokeGrants(ctx, userID, now)
	if err != nil {
		b.log().ErrorContext(ctx, "revoking the grants of a user whose upstream grant was revoked", "upstream", up.ID, "user_id", userID, "err", err)
	}
	b.log().InfoContext(ctx, "audit", "event", "grants_revoked", "reason", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID, "grants", n)
}

// revokeGrants revokes every live grant of userID (with its tokens).
func (b *Broker) revokeGrants(ctx context.Context, userID string, now time.Time) (int, error) {
	gs, err := b.Store.ListGrants(ctx, userID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range gs {
		if g.RevokedAt != nil {
			continue
		}
		if err := b.Store.RevokeGrant(ctx, g.ID, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}

// Covers reports whether a grant usable now (unexpired, or refreshable)
// with every one of scopes is kept for userID at upstream id. It is true
// for an upstream that keeps no tokens: there is nothing to cover. The
// sign-in sends a user whose grant does not cover what a resource needs
// to the upstream again (incremental authorization).
func (b *Broker) Covers(ctx context.Context, userID, id string, scopes []string) (bool, error) {
	if !b.Keeps(id) {
		return true, nil
	}
	row, err := b.Store.GetUpstreamToken(ctx, userID, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if row.DeadAt != nil || (!row.Refreshable && !b.usable(row, b.now())) || !b.Keys.Knows(row.KeyID) {
		// Dead, run out, or sealed under a secret no longer configured:
		// a new sign-in replaces it.
		return false, nil
	}
	for _, s := range scopes {
		if !slices.Contains(row.Scopes, s) {
			return false, nil
		}
	}
	return true, nil
}

// Connection is a kept upstream grant as /apps shows it: no secret.
type Connection struct {
	Upstream string
	Scopes   []string
	Since    time.Time
	Dead     bool
}

// Connections lists userID's kept upstream grants.
func (b *Broker) Connections(ctx context.Context, userID string) ([]Connection, error) {
	rows, err := b.Store.ListUpstreamTokens(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Connection, 0, len(rows))
	for _, r := range rows {
		out = append(out, Connection{Upstream: r.Upstream, Scopes: r.Scopes, Since: r.CreatedAt, Dead: r.DeadAt != nil})
	}
	return out, nil
}

// Disconnect forgets userID's grant at upstream id (the user's choice on
// /apps). Idempotent. The upstream grant itself stays until the user
// revokes it there; authd can no longer use it.
func (b *Broker) Disconnect(ctx context.Context, userID, id string) error {
	if err := b.Store.DeleteUpstreamToken(ctx, userID, id); err != nil {
		return err
	}
	b.log().InfoContext(ctx, "audit", "event", "upstream_disconnected", "upstream", id, "user_id", userID)
	return nil
}
