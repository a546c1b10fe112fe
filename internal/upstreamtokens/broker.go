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
// An expired access token is refreshed with the kept refresh token. No
// database connection or row lock is held while the upstream answers (a
// burst of refreshes once held every pooled connection): callers in one
// process share one refresh per (user, upstream) (single-flight), and each
// waits for it only as long as its own context allows. Across replicas,
// the refresh is claimed with a compare-and-set lease on the row
// (store.ClaimUpstreamRefresh); the holder calls the upstream and writes
// the result, guarded by its lease, in one statement; the others poll the
// row briefly for that result instead of calling again, so that of
// several replicas needing the token at once exactly one calls the
// upstream (refresh tokens of GitHub Apps and many OIDC providers are
// single-use). A failed refresh is remembered for FailureBackoff (in the
// process, and as the lease across replicas), so that waiters do not each
// call a failing upstream.
//
// Once the lease is held, the upstream call and the write of its result
// get budgets of their own, detached from the caller: an answer for which
// the upstream spent the single-use refresh token must reach the
// database. An upstream refusal (invalid_grant) marks the grant dead and,
// unless configured otherwise, revokes the user's grants and ends their
// sessions at authd, all in one transaction
// (store.FinishUpstreamRefreshRevoked): if it fails, nothing of it is
// written, the kept grant's lease ends as a settled attempt, and the next
// use asks the upstream again and, refused again, tries again. But if
// the previous attempt ended without a written result (cut off, lost
// write), the refusal may be caused by that attempt having spent the
// token: the kept grant is marked dead, the user's grants at authd stay,
// and an "upstream_grant_uncertain" audit record says so.
package upstreamtokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

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
	ClaimUpstreamRefresh(ctx context.Context, userID, upstream string, now, expiresBefore, until time.Time) (store.UpstreamToken, bool, error)
	FinishUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time, next *store.UpstreamToken, retryAt time.Time) (bool, error)
	FinishUpstreamRefreshRevoked(ctx context.Context, userID, upstream string, lease, now time.Time) (bool, store.UserLogout, error)
	SettleUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time) (bool, error)
	ClaimMembershipCheck(ctx context.Context, userID, upstream string, now time.Time, interval time.Duration) (bool, error)
	DeferMembershipCheck(ctx context.Context, userID, upstream string, now, at time.Time) (bool, error)
	LogoutUser(ctx context.Context, id string, now time.Time, revokeGrants bool) (store.UserLogout, error)
	RevokeUserAccess(ctx context.Context, id string, now time.Time) (store.UserLogout, error)
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
	// Store goes through the same bounds as requests (store.Bounded): no
	// database connection is held across an upstream call.
	Store     Store
	Keys      *Keyring
	Upstreams map[string]Upstream // by upstream id; only upstreams that keep tokens
	// Allowed is the allowlist as the sign-in applies it (providerType,
	// the user with re-read memberships); nil: membership checks only
	// log.
	Allowed func(providerType string, u store.User) error
	// RefreshTimeout bounds one upstream refresh call (default 10s); a
	// replica waits at most about as long for another's refresh.
	RefreshTimeout time.Duration
	// FailureBackoff: after a refresh failed (upstream unreachable, 5xx),
	// callers get its error for this long instead of calling again
	// (default 5s); other replicas wait for the lease to pass.
	FailureBackoff time.Duration
	// Leeway: an access token expiring within it is refreshed first, so
	// that the caller gets one it can still use; default 1m.
	Leeway time.Duration
	// RevokeTimeout bounds ending a user's access at authd (a failed
	// membership check, an upstream's refusal), detached from the
	// caller's request; default 10s.
	RevokeTimeout time.Duration
	Now           func() time.Time
	Log           *slog.Logger

	flight singleflight.Group // one refresh per (user, upstream) in this process
	mu     sync.Mutex
	failed map[string]failure // recent failed refreshes, by flight key
}

const (
	defaultRefreshTimeout = 10 * time.Second
	defaultFailureBackoff = 5 * time.Second
	// writeTimeout bounds writing a refresh's result, with a budget of
	// its own (the upstream may have spent a single-use refresh token).
	writeTimeout = 5 * time.Second
	// pollInterval: how often a replica waiting for another's refresh
	// looks at the row; pollSlack: how long past the lease it waits.
	pollInterval  = 100 * time.Millisecond
	pollSlack     = time.Second
	defaultLeeway = time.Minute
	// defaultRevokeTimeout bounds revoking a user's grants after the
	// upstream revoked theirs; it runs even if the caller's request was
	// cancelled.
	defaultRevokeTimeout = 10 * time.Second
)

func (b *Broker) revokeTimeout() time.Duration {
	if b.RevokeTimeout > 0 {
		return b.RevokeTimeout
	}
	return defaultRevokeTimeout
}

// detached is ctx without its cancellation and with a database budget
// and deadline of d of its own: for writes that must happen whatever
// became of the caller's request or of an earlier write's budget.
func detached(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(store.WithBudget(context.WithoutCancel(ctx), d), d)
}

// retryOverloaded runs op, and again while the store refuses it for being
// at its in-flight limit (which it does at once) and ctx allows: for
// writes that cannot wait for the user to retry.
func retryOverloaded[T any](ctx context.Context, op func() (T, error)) (T, error) {
	v, err := op()
	for wait := 10 * time.Millisecond; errors.Is(err, store.ErrOverloaded) && sleep(ctx, wait); wait = min(2*wait, 200*time.Millisecond) {
		v, err = op()
	}
	return v, err
}

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
	return b.refresh(ctx, up, userID)
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

// refresh renews the access token; see the package comment. Callers of
// one process share one refresh (single-flight per user and upstream) and
// each waits for it only as long as its own context allows: the refresh
// itself runs on, detached, so that a spent single-use refresh token's
// answer is kept.
func (b *Broker) refresh(ctx context.Context, up Upstream, userID string) (Token, error) {
	key := userID + "\x00" + up.ID
	if err := b.backedOff(key); err != nil {
		return Token{}, err
	}
	bg := context.WithoutCancel(ctx)
	ch := b.flight.DoChan(key, func() (any, error) {
		t, err := b.refreshShared(bg, up, userID)
		if err != nil && !errors.Is(err, ErrGrantDead) && !errors.Is(err, ErrNotStored) {
			b.backOff(key, err)
		}
		return t, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Token{}, r.Err
		}
		return r.Val.(Token), nil
	case <-ctx.Done():
		return Token{}, ctx.Err()
	}
}

// backedOff returns the error of a refresh of key that failed less than
// the back-off ago, so that callers do not each call a failing upstream.
func (b *Broker) backedOff(key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.failed[key]
	if ok && b.now().Before(f.until) {
		return f.err
	}
	delete(b.failed, key)
	return nil
}

func (b *Broker) backOff(key string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed == nil {
		b.failed = map[string]failure{}
	}
	b.failed[key] = failure{until: b.now().Add(b.backoff()), err: err}
}

type failure struct {
	until time.Time
	err   error
}

func (b *Broker) backoff() time.Duration {
	if b.FailureBackoff > 0 {
		return b.FailureBackoff
	}
	return defaultFailureBackoff
}

func (b *Broker) callTimeout() time.Duration {
	if b.RefreshTimeout > 0 {
		return b.RefreshTimeout
	}
	return defaultRefreshTimeout
}

// refreshShared claims the refresh lease of the row, or waits (short
// polls, bounded) for the replica holding it to write its result. No
// database connection is held across the upstream call.
func (b *Broker) refreshShared(ctx context.Context, up Upstream, userID string) (Token, error) {
	call := b.callTimeout()
	giveUp := time.Now().Add(call + writeTimeout + pollSlack)
	for {
		now := b.now()
		lease := now.Add(call + writeTimeout).Truncate(time.Microsecond)
		row, claimed, err := b.claim(ctx, up, userID, now, lease)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return Token{}, ErrNotStored
		case err != nil:
			return Token{}, err
		case row.DeadAt != nil:
			return Token{}, ErrGrantDead
		}
		s, err := b.Keys.open(row.KeyID, userID, up.ID, row.Sealed)
		if err != nil {
			if claimed {
				b.release(ctx, up, userID, lease, nil)
			}
			return Token{}, err
		}
		if claimed {
			return b.refreshLeased(ctx, up, userID, row, s, lease)
		}
		if b.usable(row, b.now()) {
			return token(row, s), nil // another replica refreshed it
		}
		if time.Now().After(giveUp) {
			return Token{}, store.Unavailable(fmt.Errorf("upstreamtokens: the %s token is being refreshed by another replica; try again", up.ID))
		}
		select {
		case <-time.After(pollInterval):
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
}

// claim is one claim or poll of the lease, with a budget of its own: ctx
// is the detached context of whichever caller started the shared refresh,
// whose request's database time (store.WithBudget) must not pay for, nor
// cut short, a refresh that others wait for too.
func (b *Broker) claim(ctx context.Context, up Upstream, userID string, now, lease time.Time) (store.UpstreamToken, bool, error) {
	ctx, cancel := context.WithTimeout(store.WithBudget(ctx, writeTimeout), writeTimeout)
	defer cancel()
	return b.Store.ClaimUpstreamRefresh(ctx, userID, up.ID, now, now.Add(b.leeway()), lease)
}

// refreshLeased calls the upstream holding the lease ending at lease. The
// call and the write get budgets of their own, not what is left of the
// caller's: once the upstream has spent a single-use refresh token, its
// answer must reach the database.
func (b *Broker) refreshLeased(ctx context.Context, up Upstream, userID string, cur store.UpstreamToken, s secrets, lease time.Time) (Token, error) {
	if s.RefreshToken == "" || up.Refresher == nil {
		b.release(ctx, up, userID, lease, nil)
		return Token{}, ErrGrantDead
	}
	callCtx, cancel := context.WithTimeout(ctx, b.callTimeout())
	g, err := up.Refresher.Refresh(callCtx, s.RefreshToken)
	cancel()
	now := b.now()
	if errors.Is(err, upstream.ErrGrantRevoked) {
		if up.RevokeOnUpstreamRevocation && !cur.RefreshUnsettled {
			return Token{}, b.refused(ctx, up, userID, lease, now, err)
		}
		dead := cur
		dead.DeadAt, dead.UpdatedAt = &now, now
		if !b.release(ctx, up, userID, lease, &dead) {
			// The lease was lost (a sign-in replaced the row meanwhile,
			// or another replica took over) or the write failed: the
			// refused token may no longer be the kept one, so the grants
			// at authd, perhaps just made, stay.
			b.log().WarnContext(ctx, "the upstream refused a refresh token no longer kept, or its end could not be written; grants at authd kept", "upstream", up.ID, "user_id", userID)
			return Token{}, ErrGrantDead
		}
		if cur.RefreshUnsettled {
			// The previous attempt may have spent the refresh token and
			// lost the answer: the refusal may be our own doing, not the
			// user's or the upstream's. The kept grant is unusable either
			// way; the user's grants at authd stay.
			b.log().WarnContext(ctx, "audit", "event", "upstream_grant_uncertain", "upstream", up.ID, "user_id", userID,
				"reason", "the upstream refused the refresh token after an earlier refresh ended without a result; grants at authd kept")
			return Token{}, ErrGrantDead
		}
		// revoke_on_upstream_revocation is off: an audit record only.
		b.log().InfoContext(ctx, "audit", "event", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID, "reason", err.Error())
		return Token{}, ErrGrantDead
	}
	if err != nil {
		b.release(ctx, up, userID, lease, nil)
		return Token{}, fmt.Errorf("upstreamtokens: refreshing the %s token: %w", up.ID, err)
	}
	out := secrets{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenType: g.TokenType}
	if out.RefreshToken == "" {
		out.RefreshToken = s.RefreshToken // the upstream keeps the old one valid
	}
	scopes := g.Scopes
	if scopes == nil {
		scopes = cur.Scopes // RFC 6749 §5.1: unchanged when not sent
	}
	next, err := b.row(userID, up.ID, out, expiry(g, now), scopes, now)
	if err != nil {
		b.release(ctx, up, userID, lease, nil)
		return Token{}, err
	}
	if !b.release(ctx, up, userID, lease, next) {
		// Not kept (the lease was lost, or the write failed): the token
		// is good, hand it out; the next refresh finds the row unsettled.
		b.log().WarnContext(ctx, "a refreshed upstream token could not be kept", "upstream", up.ID, "user_id", userID)
	} else {
		b.log().DebugContext(ctx, "upstream token refreshed", "upstream", up.ID, "user_id", userID)
	}
	return token(*next, out), nil
}

// release ends the lease: writes next, or (nil) backs the next attempt
// off. It runs whatever happened to the caller, with a budget of its own.
func (b *Broker) release(ctx context.Context, up Upstream, userID string, lease time.Time, next *store.UpstreamToken) bool {
	ctx, cancel := detached(ctx, writeTimeout)
	defer cancel()
	// This write cannot wait for the user to retry (the upstream may have
	// spent the single-use refresh token): an overloaded store is asked
	// again within the budget.
	ok, err := retryOverloaded(ctx, func() (bool, error) {
		return b.Store.FinishUpstreamRefresh(ctx, userID, up.ID, lease, next, b.now().Add(b.backoff()))
	})
	if err != nil {
		b.log().ErrorContext(ctx, "writing an upstream refresh's result", "upstream", up.ID, "user_id", userID, "err", err)
		return false
	}
	return ok
}

// errRevokeFailed: the upstream refused the kept refresh token, and
// ending the user's access for it failed (a database error, wrapped too).
var errRevokeFailed = errors.New("revoking the user's grants failed")

// refused handles the upstream's settled refusal of the kept refresh
// token under revoke_on_upstream_revocation: the kept grant is marked
// dead and the user's grants and sessions at authd end, in one
// transaction (store.FinishUpstreamRefreshRevoked), so that a failure
// cannot leave the kept grant dead (and so never refreshed again) with
// the grants it stood for alive. If that transaction fails, the row's
// lease ends settled and nothing else of it changes
// (store.SettleUpstreamRefresh): the next use
// refreshes again at once (after the in-process back-off), is refused
// again, and tries again; an error other than ErrGrantDead tells the
// caller to retry.
func (b *Broker) refused(ctx context.Context, up Upstream, userID string, lease, now time.Time, cause error) error {
	rctx, cancel := detached(ctx, b.revokeTimeout())
	defer cancel()
	var l store.UserLogout
	done, err := retryOverloaded(rctx, func() (ok bool, err error) {
		ok, l, err = b.Store.FinishUpstreamRefreshRevoked(rctx, userID, up.ID, lease, now)
		return ok, err
	})
	if err != nil {
		b.log().ErrorContext(ctx, "the upstream refused the refresh token; revoking the user's grants failed, the next use tries again",
			"upstream", up.ID, "user_id", userID, "err", err)
		wctx, cancel := detached(ctx, writeTimeout)
		defer cancel()
		settled, serr := retryOverloaded(wctx, func() (bool, error) { return b.Store.SettleUpstreamRefresh(wctx, userID, up.ID, lease) })
		if serr != nil || !settled {
			b.log().ErrorContext(ctx, "the upstream refused the refresh token; neither its end nor the lease's could be written", "upstream", up.ID, "user_id", userID, "err", serr)
		}
		return fmt.Errorf("upstreamtokens: the %s grant was revoked upstream; %w: %w", up.ID, errRevokeFailed, err)
	}
	if !done {
		// The lease was lost (a sign-in replaced the row meanwhile, or
		// another replica took over): the refused token may no longer
		// be the kept one, so the grants at authd, perhaps just made,
		// stay.
		b.log().WarnContext(ctx, "the upstream refused a refresh token no longer kept; grants at authd kept", "upstream", up.ID, "user_id", userID)
		return ErrGrantDead
	}
	b.log().InfoContext(ctx, "audit", "event", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID, "reason", cause.Error())
	b.log().InfoContext(ctx, "audit", "event", "grants_revoked", "reason", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID,
		"grants", len(l.Grants), "sessions", l.Sessions)
	return ErrGrantDead
}

// sleep waits d, or less if ctx ends first (then false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// revokeAccess ends the user's grants and sessions at authd after the
// upstream revoked their grant there (revoke_on_upstream_revocation): they
// were given on the strength of that upstream grant, and the next
// authorization must go to the upstream. One transaction
// (store.RevokeUserAccess): all of it or none, and then an error wrapping
// errRevokeFailed. A deleted user has nothing left to revoke.
func (b *Broker) revokeAccess(ctx context.Context, up Upstream, userID string, now time.Time) error {
	ctx, cancel := detached(ctx, b.revokeTimeout())
	defer cancel()
	l, err := retryOverloaded(ctx, func() (store.UserLogout, error) { return b.Store.RevokeUserAccess(ctx, userID, now) })
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		b.log().ErrorContext(ctx, "revoking the grants of a user whose upstream grant was revoked; the next use tries again", "upstream", up.ID, "user_id", userID, "err", err)
		return fmt.Errorf("upstreamtokens: the %s grant was revoked upstream; %w: %w", up.ID, errRevokeFailed, err)
	}
	b.log().InfoContext(ctx, "audit", "event", "grants_revoked", "reason", "upstream_grant_revoked", "upstream", up.ID, "user_id", userID,
		"grants", len(l.Grants), "sessions", l.Sessions)
	return nil
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
