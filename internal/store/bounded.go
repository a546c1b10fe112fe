package store

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Bounded is a Store that keeps a sick database from taking the server
// down with it. Every operation gets a deadline, and only so many may be
// in flight (running, or waiting for a connection) at once:
//
//   - past its deadline an operation is abandoned and answers
//     ErrUnavailable (503 temporarily_unavailable with Retry-After at the
//     HTTP layer). The context is cancelled, which the Postgres store turns
//     into a cancel request for the running statement, so the database
//     stops working for a client that was told to retry.
//   - beyond maxInFlight an operation is refused at once with
//     ErrUnavailable instead of joining a queue that a frozen database
//     would grow without bound (goroutines, memory, client time-outs).
//
// The time limit is the request's database budget (WithBudget), shared by
// all the operations of one request, or else the timeout per operation.
type Bounded struct {
	s       Store
	timeout time.Duration
	slots   chan struct{}
	// OnRefused, when set, is told of every operation refused because
	// maxInFlight were in flight ("overloaded") or given up at its deadline
	// ("deadline"), for metrics.
	OnRefused func(reason string)
}

var _ Store = (*Bounded)(nil)

// Errors Bounded returns, wrapped in Unavailable.
var (
	ErrDeadline   = errors.New("store: the database did not answer in time")
	ErrOverloaded = errors.New("store: too many requests waiting for the database")
)

// NewBounded bounds s: timeout limits operations whose context carries no
// request budget (WithBudget); maxInFlight <= 0 means no limit.
func NewBounded(s Store, timeout time.Duration, maxInFlight int) *Bounded {
	b := &Bounded{s: s, timeout: timeout}
	if maxInFlight > 0 {
		b.slots = make(chan struct{}, maxInFlight)
	}
	return b
}

type budgetKey struct{}

// budget is what is left of a request's database time.
type budget struct{ left atomic.Int64 } // nanoseconds

// WithBudget returns ctx carrying d as the database time of everything
// done with it (all of one request's operations together): each operation
// may take what the earlier ones left. Time spent elsewhere (waiting for
// an upstream provider) does not count.
func WithBudget(ctx context.Context, d time.Duration) context.Context {
	b := &budget{}
	b.left.Store(int64(d))
	return context.WithValue(ctx, budgetKey{}, b)
}

// run runs op within the bounds.
func (b *Bounded) run(ctx context.Context, op func(context.Context) error) error {
	spend, _ := ctx.Value(budgetKey{}).(*budget)
	limit := b.timeout
	if spend != nil {
		limit = time.Duration(spend.left.Load())
		if limit <= 0 {
			b.refused("deadline")
			return Unavailable(ErrDeadline)
		}
	}
	if b.slots != nil {
		select {
		case b.slots <- struct{}{}:
			defer func() { <-b.slots }()
		default:
			b.refused("overloaded")
			return Unavailable(ErrOverloaded)
		}
	}
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, limit, ErrDeadline)
		defer cancel()
	}
	if spend != nil {
		start := time.Now()
		defer func() { spend.left.Add(-int64(time.Since(start))) }()
	}
	err := op(ctx)
	if err != nil && errors.Is(context.Cause(ctx), ErrDeadline) {
		// The answer came too late (or never): whatever the driver made of
		// the cancellation, the caller should retry.
		b.refused("deadline")
		if !errors.Is(err, ErrUnavailable) {
			return Unavailable(ErrDeadline)
		}
	}
	return err
}

func (b *Bounded) refused(reason string) {
	if b.OnRefused != nil {
		b.OnRefused(reason)
	}
}

func run1[A any](b *Bounded, ctx context.Context, op func(context.Context) (A, error)) (A, error) {
	var a A
	err := b.run(ctx, func(ctx context.Context) (err error) {
		a, err = op(ctx)
		return err
	})
	return a, err
}

func run2[A, B any](b *Bounded, ctx context.Context, op func(context.Context) (A, B, error)) (A, B, error) {
	var a A
	var bb B
	err := b.run(ctx, func(ctx context.Context) (err error) {
		a, bb, err = op(ctx)
		return err
	})
	return a, bb, err
}

func run3[A, B, C any](b *Bounded, ctx context.Context, op func(context.Context) (A, B, C, error)) (A, B, C, error) {
	var a A
	var bb B
	var c C
	err := b.run(ctx, func(ctx context.Context) (err error) {
		a, bb, c, err = op(ctx)
		return err
	})
	return a, bb, c, err
}

// Close closes the underlying store.
func (b *Bounded) Close() { b.s.Close() }

// The Store methods, each run within the bounds.

func (b *Bounded) Ping(ctx context.Context) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.Ping(ctx) })
}

func (b *Bounded) CreateClient(ctx context.Context, c Client) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateClient(ctx, c) })
}

func (b *Bounded) GetClient(ctx context.Context, id string, now time.Time) (Client, error) {
	return run1(b, ctx, func(ctx context.Context) (Client, error) { return b.s.GetClient(ctx, id, now) })
}

func (b *Bounded) FindClientByFingerprint(ctx context.Context, fingerprint string, now time.Time) (Client, error) {
	return run1(b, ctx, func(ctx context.Context) (Client, error) { return b.s.FindClientByFingerprint(ctx, fingerprint, now) })
}

func (b *Bounded) UpdateClient(ctx context.Context, c Client) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.UpdateClient(ctx, c) })
}

func (b *Bounded) UpdateClientIf(ctx context.Context, c Client, ratHash string) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.UpdateClientIf(ctx, c, ratHash) })
}

func (b *Bounded) UpdateClientIfForgetConsents(ctx context.Context, c Client, ratHash string) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.UpdateClientIfForgetConsents(ctx, c, ratHash) })
}

func (b *Bounded) TouchClientIf(ctx context.Context, id, fingerprint string, now time.Time, idle time.Duration) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.TouchClientIf(ctx, id, fingerprint, now, idle) })
}

func (b *Bounded) UpsertClient(ctx context.Context, c Client) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.UpsertClient(ctx, c) })
}

func (b *Bounded) DeleteClient(ctx context.Context, id string) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.DeleteClient(ctx, id) })
}

func (b *Bounded) TouchClient(ctx context.Context, id string, now time.Time, idle time.Duration) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.TouchClient(ctx, id, now, idle) })
}

func (b *Bounded) ListClients(ctx context.Context, f ClientFilter) ([]Client, error) {
	return run1(b, ctx, func(ctx context.Context) ([]Client, error) { return b.s.ListClients(ctx, f) })
}

func (b *Bounded) CountClients(ctx context.Context, source ClientSource) (int64, error) {
	return run1(b, ctx, func(ctx context.Context) (int64, error) { return b.s.CountClients(ctx, source) })
}

func (b *Bounded) UpsertUser(ctx context.Context, u User) (User, error) {
	return run1(b, ctx, func(ctx context.Context) (User, error) { return b.s.UpsertUser(ctx, u) })
}

func (b *Bounded) GetUser(ctx context.Context, id string) (User, error) {
	return run1(b, ctx, func(ctx context.Context) (User, error) { return b.s.GetUser(ctx, id) })
}

func (b *Bounded) FindUser(ctx context.Context, provider, subject string) (User, error) {
	return run1(b, ctx, func(ctx context.Context) (User, error) { return b.s.FindUser(ctx, provider, subject) })
}

func (b *Bounded) ListUsers(ctx context.Context, f UserFilter) ([]User, error) {
	return run1(b, ctx, func(ctx context.Context) ([]User, error) { return b.s.ListUsers(ctx, f) })
}

func (b *Bounded) SetUserDisabled(ctx context.Context, id string, disabled bool) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.SetUserDisabled(ctx, id, disabled) })
}

func (b *Bounded) DisableUser(ctx context.Context, id string, now time.Time) (UserRevocation, error) {
	return run1(b, ctx, func(ctx context.Context) (UserRevocation, error) { return b.s.DisableUser(ctx, id, now) })
}

func (b *Bounded) LogoutUser(ctx context.Context, id string, now time.Time, revokeGrants bool) (UserLogout, error) {
	return run1(b, ctx, func(ctx context.Context) (UserLogout, error) { return b.s.LogoutUser(ctx, id, now, revokeGrants) })
}

func (b *Bounded) LogoutUpstreamUser(ctx context.Context, l UpstreamLogout, now time.Time) (UserLogout, error) {
	return run1(b, ctx, func(ctx context.Context) (UserLogout, error) { return b.s.LogoutUpstreamUser(ctx, l, now) })
}

func (b *Bounded) RevokeUserAccess(ctx context.Context, id string, now time.Time) (UserLogout, error) {
	return run1(b, ctx, func(ctx context.Context) (UserLogout, error) { return b.s.RevokeUserAccess(ctx, id, now) })
}

func (b *Bounded) UseLogoutToken(ctx context.Context, upstream, jti string, exp time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.UseLogoutToken(ctx, upstream, jti, exp) })
}

func (b *Bounded) CreateAuthRequest(ctx context.Context, r AuthRequest) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateAuthRequest(ctx, r) })
}

func (b *Bounded) GetAuthRequest(ctx context.Context, idDigest string, now time.Time) (AuthRequest, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthRequest, error) { return b.s.GetAuthRequest(ctx, idDigest, now) })
}

func (b *Bounded) GetAuthRequestByUpstreamState(ctx context.Context, stateDigest string, now time.Time) (AuthRequest, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthRequest, error) {
		return b.s.GetAuthRequestByUpstreamState(ctx, stateDigest, now)
	})
}

func (b *Bounded) UpdateAuthRequest(ctx context.Context, r AuthRequest) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.UpdateAuthRequest(ctx, r) })
}

func (b *Bounded) ConsumeAuthRequest(ctx context.Context, idDigest string, now time.Time) (AuthRequest, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthRequest, error) { return b.s.ConsumeAuthRequest(ctx, idDigest, now) })
}

func (b *Bounded) ClaimAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time) (AuthRequest, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthRequest, error) {
		return b.s.ClaimAuthRequest(ctx, idDigest, stateDigest, now)
	})
}

func (b *Bounded) SettleAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time, signIn *SignIn) (AuthRequest, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthRequest, error) {
		return b.s.SettleAuthRequest(ctx, idDigest, stateDigest, now, signIn)
	})
}

func (b *Bounded) CreateSession(ctx context.Context, s Session) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateSession(ctx, s) })
}

func (b *Bounded) GetSession(ctx context.Context, idDigest string, now time.Time) (Session, error) {
	return run1(b, ctx, func(ctx context.Context) (Session, error) { return b.s.GetSession(ctx, idDigest, now) })
}

func (b *Bounded) GetSessionUser(ctx context.Context, idDigest string, now time.Time) (Session, User, error) {
	return run2(b, ctx, func(ctx context.Context) (Session, User, error) { return b.s.GetSessionUser(ctx, idDigest, now) })
}

func (b *Bounded) DeleteSession(ctx context.Context, idDigest string) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.DeleteSession(ctx, idDigest) })
}

func (b *Bounded) GetConsent(ctx context.Context, userID, clientID string) (Consent, error) {
	return run1(b, ctx, func(ctx context.Context) (Consent, error) { return b.s.GetConsent(ctx, userID, clientID) })
}

func (b *Bounded) AddConsent(ctx context.Context, c Consent) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.AddConsent(ctx, c) })
}

func (b *Bounded) ListConsents(ctx context.Context, userID string) ([]Consent, error) {
	return run1(b, ctx, func(ctx context.Context) ([]Consent, error) { return b.s.ListConsents(ctx, userID) })
}

func (b *Bounded) DeleteConsent(ctx context.Context, userID, clientID string, now time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.DeleteConsent(ctx, userID, clientID, now) })
}

func (b *Bounded) ForgetClientConsents(ctx context.Context, clientID string) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.ForgetClientConsents(ctx, clientID) })
}

func (b *Bounded) CreateAuthCode(ctx context.Context, c AuthCode) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateAuthCode(ctx, c) })
}

func (b *Bounded) GetAuthCode(ctx context.Context, digest string, now time.Time) (AuthCode, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthCode, error) { return b.s.GetAuthCode(ctx, digest, now) })
}

func (b *Bounded) GetAuthCodeUser(ctx context.Context, digest string, now time.Time) (AuthCode, User, error) {
	return run2(b, ctx, func(ctx context.Context) (AuthCode, User, error) { return b.s.GetAuthCodeUser(ctx, digest, now) })
}

func (b *Bounded) RedeemAuthCode(ctx context.Context, digest string, now time.Time, g Grant, rt *RefreshToken) (AuthCode, error) {
	return run1(b, ctx, func(ctx context.Context) (AuthCode, error) { return b.s.RedeemAuthCode(ctx, digest, now, g, rt) })
}

func (b *Bounded) GetGrant(ctx context.Context, id string) (Grant, error) {
	return run1(b, ctx, func(ctx context.Context) (Grant, error) { return b.s.GetGrant(ctx, id) })
}

func (b *Bounded) GetGrantUser(ctx context.Context, id string) (Grant, User, error) {
	return run2(b, ctx, func(ctx context.Context) (Grant, User, error) { return b.s.GetGrantUser(ctx, id) })
}

func (b *Bounded) ListGrants(ctx context.Context, userID string) ([]Grant, error) {
	return run1(b, ctx, func(ctx context.Context) ([]Grant, error) { return b.s.ListGrants(ctx, userID) })
}

func (b *Bounded) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.RevokeGrant(ctx, id, now) })
}

func (b *Bounded) CreateRefreshToken(ctx context.Context, rt RefreshToken) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateRefreshToken(ctx, rt) })
}

func (b *Bounded) GetRefreshToken(ctx context.Context, digest string) (RefreshToken, error) {
	return run1(b, ctx, func(ctx context.Context) (RefreshToken, error) { return b.s.GetRefreshToken(ctx, digest) })
}

func (b *Bounded) GetRefreshTokenGrant(ctx context.Context, digest string) (RefreshToken, Grant, User, error) {
	return run3(b, ctx, func(ctx context.Context) (RefreshToken, Grant, User, error) {
		return b.s.GetRefreshTokenGrant(ctx, digest)
	})
}

func (b *Bounded) RotateRefreshToken(ctx context.Context, old string, now time.Time, next RefreshToken, retryWindow time.Duration) (Grant, error) {
	return run1(b, ctx, func(ctx context.Context) (Grant, error) {
		return b.s.RotateRefreshToken(ctx, old, now, next, retryWindow)
	})
}

func (b *Bounded) CreateAccessToken(ctx context.Context, t AccessToken) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateAccessToken(ctx, t) })
}

func (b *Bounded) GetAccessToken(ctx context.Context, digest string) (AccessToken, error) {
	return run1(b, ctx, func(ctx context.Context) (AccessToken, error) { return b.s.GetAccessToken(ctx, digest) })
}

func (b *Bounded) RevokeAccessToken(ctx context.Context, digest string, now time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.RevokeAccessToken(ctx, digest, now) })
}

func (b *Bounded) RevokeJTI(ctx context.Context, jti string, exp time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.RevokeJTI(ctx, jti, exp) })
}

func (b *Bounded) IsJTIRevoked(ctx context.Context, jti string, now time.Time) (bool, error) {
	return run1(b, ctx, func(ctx context.Context) (bool, error) { return b.s.IsJTIRevoked(ctx, jti, now) })
}

func (b *Bounded) CheckJWTGrant(ctx context.Context, jti, grantID string, now time.Time) (bool, Grant, User, error) {
	return run3(b, ctx, func(ctx context.Context) (bool, Grant, User, error) { return b.s.CheckJWTGrant(ctx, jti, grantID, now) })
}

func (b *Bounded) ListSigningKeys(ctx context.Context) ([]SigningKey, error) {
	return run1(b, ctx, func(ctx context.Context) ([]SigningKey, error) { return b.s.ListSigningKeys(ctx) })
}

func (b *Bounded) CreateSigningKey(ctx context.Context, k SigningKey) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.CreateSigningKey(ctx, k) })
}

func (b *Bounded) ActivateSigningKey(ctx context.Context, kid string, now, retireExpiry time.Time) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.ActivateSigningKey(ctx, kid, now, retireExpiry) })
}

func (b *Bounded) GetMetadataDocument(ctx context.Context, url string) (MetadataDocument, error) {
	return run1(b, ctx, func(ctx context.Context) (MetadataDocument, error) { return b.s.GetMetadataDocument(ctx, url) })
}

func (b *Bounded) PutMetadataDocument(ctx context.Context, d MetadataDocument) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.PutMetadataDocument(ctx, d) })
}

func (b *Bounded) PutUpstreamToken(ctx context.Context, t UpstreamToken) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.PutUpstreamToken(ctx, t) })
}

func (b *Bounded) GetUpstreamToken(ctx context.Context, userID, upstream string) (UpstreamToken, error) {
	return run1(b, ctx, func(ctx context.Context) (UpstreamToken, error) { return b.s.GetUpstreamToken(ctx, userID, upstream) })
}

func (b *Bounded) ListUpstreamTokens(ctx context.Context, userID string) ([]UpstreamToken, error) {
	return run1(b, ctx, func(ctx context.Context) ([]UpstreamToken, error) { return b.s.ListUpstreamTokens(ctx, userID) })
}

func (b *Bounded) DeleteUpstreamToken(ctx context.Context, userID, upstream string) error {
	return b.run(ctx, func(ctx context.Context) error { return b.s.DeleteUpstreamToken(ctx, userID, upstream) })
}

// UpdateUpstreamToken's callback runs inside the bound: an upstream call
// made there spends the same deadline. The broker (internal/upstreamtokens)
// uses the unbounded store with a time limit of its own.
func (b *Bounded) UpdateUpstreamToken(ctx context.Context, userID, upstream string, update func(UpstreamToken) (*UpstreamToken, error)) (UpstreamToken, error) {
	return run1(b, ctx, func(ctx context.Context) (UpstreamToken, error) {
		return b.s.UpdateUpstreamToken(ctx, userID, upstream, update)
	})
}

func (b *Bounded) ClaimUpstreamRefresh(ctx context.Context, userID, upstream string, now, expiresBefore, until time.Time) (UpstreamToken, bool, error) {
	return run2(b, ctx, func(ctx context.Context) (UpstreamToken, bool, error) {
		return b.s.ClaimUpstreamRefresh(ctx, userID, upstream, now, expiresBefore, until)
	})
}

func (b *Bounded) FinishUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time, next *UpstreamToken, retryAt time.Time) (bool, error) {
	return run1(b, ctx, func(ctx context.Context) (bool, error) {
		return b.s.FinishUpstreamRefresh(ctx, userID, upstream, lease, next, retryAt)
	})
}

func (b *Bounded) FinishUpstreamRefreshRevoked(ctx context.Context, userID, upstream string, lease, now time.Time) (bool, UserLogout, error) {
	return run2(b, ctx, func(ctx context.Context) (bool, UserLogout, error) {
		return b.s.FinishUpstreamRefreshRevoked(ctx, userID, upstream, lease, now)
	})
}

func (b *Bounded) SettleUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time) (bool, error) {
	return run1(b, ctx, func(ctx context.Context) (bool, error) {
		return b.s.SettleUpstreamRefresh(ctx, userID, upstream, lease)
	})
}

func (b *Bounded) DeleteUpstreamTokensExcept(ctx context.Context, keep []string, writtenBefore time.Time) (int64, error) {
	return run1(b, ctx, func(ctx context.Context) (int64, error) {
		return b.s.DeleteUpstreamTokensExcept(ctx, keep, writtenBefore)
	})
}

func (b *Bounded) ClaimMembershipCheck(ctx context.Context, userID, upstream string, now time.Time, interval time.Duration) (bool, error) {
	return run1(b, ctx, func(ctx context.Context) (bool, error) {
		return b.s.ClaimMembershipCheck(ctx, userID, upstream, now, interval)
	})
}

func (b *Bounded) DeferMembershipCheck(ctx context.Context, userID, upstream string, now, at time.Time) (bool, error) {
	return run1(b, ctx, func(ctx context.Context) (bool, error) {
		return b.s.DeferMembershipCheck(ctx, userID, upstream, now, at)
	})
}

func (b *Bounded) Purge(ctx context.Context, now time.Time) (PurgeResult, error) {
	return run1(b, ctx, func(ctx context.Context) (PurgeResult, error) { return b.s.Purge(ctx, now) })
}

func (b *Bounded) Stats(ctx context.Context, now time.Time) (Stats, error) {
	return run1(b, ctx, func(ctx context.Context) (Stats, error) { return b.s.Stats(ctx, now) })
}

func (b *Bounded) ListUpstreamTokensAfter(ctx context.Context, afterUser, afterUpstream string, limit int) ([]UpstreamToken, error) {
	return run1(b, ctx, func(ctx context.Context) ([]UpstreamToken, error) {
		return b.s.ListUpstreamTokensAfter(ctx, afterUser, afterUpstream, limit)
	})
}

func (b *Bounded) ResealUpstreamTokens(ctx context.Context, rs []UpstreamTokenReseal) (int, error) {
	return run1(b, ctx, func(ctx context.Context) (int, error) { return b.s.ResealUpstreamTokens(ctx, rs) })
}

func (b *Bounded) ResealSigningKeys(ctx context.Context, rs []SigningKeyReseal) (int, error) {
	return run1(b, ctx, func(ctx context.Context) (int, error) { return b.s.ResealSigningKeys(ctx, rs) })
}
