package upstreamtokens_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstreamtokens"
)

// revocationRecorder is a store that records the calls that revoke a
// user's grants or end their sign-in.
type revocationRecorder struct {
	store.Store
	mu    sync.Mutex
	calls []string
}

func (r *revocationRecorder) record(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, name)
}

func (r *revocationRecorder) recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *revocationRecorder) ListGrants(ctx context.Context, userID string) ([]store.Grant, error) {
	r.record("ListGrants")
	return r.Store.ListGrants(ctx, userID)
}

func (r *revocationRecorder) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	r.record("RevokeGrant")
	return r.Store.RevokeGrant(ctx, id, now)
}

func (r *revocationRecorder) DeleteUpstreamToken(ctx context.Context, userID, upstream string) error {
	r.record("DeleteUpstreamToken")
	return r.Store.DeleteUpstreamToken(ctx, userID, upstream)
}

func (r *revocationRecorder) LogoutUser(ctx context.Context, id string, now time.Time, revokeGrants bool) (store.UserLogout, error) {
	r.record(fmt.Sprintf("LogoutUser(revokeGrants=%v)", revokeGrants))
	return r.Store.LogoutUser(ctx, id, now, revokeGrants)
}

func (r *revocationRecorder) RevokeUserAccess(ctx context.Context, id string, now time.Time) (store.UserLogout, error) {
	r.record("RevokeUserAccess")
	return r.Store.RevokeUserAccess(ctx, id, now)
}

// session gives u a browser session at authd.
func session(t *testing.T, st store.Store, u store.User) store.Session {
	t.Helper()
	now := time.Now()
	s := store.Session{IDDigest: oauth.Digest(oauth.NewToken(oauth.PrefixSession)), UserID: u.ID, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	if err := st.CreateSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDeprovisionEndsSignIn: a user removed from the org loses, in one
// store call, every grant (with its tokens), the kept upstream grant, and
// their sessions at authd: they must sign in at the upstream again, where
// the allowlist applies, instead of walking through /authorize on the old
// session cookie.
func TestDeprovisionEndsSignIn(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			b, g1 := recheckFixture(t, f, true)
			g2 := authdGrant(t, f.st, f.user)
			sess := session(t, f.st, f.user)
			rec := &revocationRecorder{Store: f.st}
			b.Store = rec
			ctx := t.Context()

			f.gh.SetMemberships("octo", nil, nil)
			f.advance(16 * time.Minute)
			if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
				t.Fatalf("RecheckMemberships after removal from the org: %v, want ErrNoLongerAllowed", err)
			}
			for _, g := range []store.Grant{g1, g2} {
				if got, err := f.st.GetGrant(ctx, g.ID); err != nil || got.RevokedAt == nil {
					t.Fatalf("grant %s after removal from the org: err %v, RevokedAt %v; want revoked", g.ID, err, got.RevokedAt)
				}
			}
			if _, err := f.st.GetSession(ctx, sess.IDDigest, time.Now()); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the user's authd session after removal from the org: %v, want it ended", err)
			}
			if _, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the kept upstream grant after removal from the org: %v, want it deleted", err)
			}
			if got, want := rec.recorded(), []string{"LogoutUser(revokeGrants=true)"}; !slices.Equal(got, want) {
				t.Fatalf("revoking store calls %q, want %q (one transaction)", got, want)
			}
		})
	}
}

// TestDeprovisionAllOrNothing: the database fails while the second of
// three grants is being revoked. Nothing is revoked then (not the first
// grant alone, nor the session): the caller is refused, and the next use
// checks again at once, instead of a whole membership_check_interval
// later, and revokes everything.
func TestDeprovisionAllOrNothing(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	st, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	f := newFixture(t, st, 8*time.Hour)
	b, g1 := recheckFixture(t, f, true)
	g2 := authdGrant(t, f.st, f.user)
	g3 := authdGrant(t, f.st, f.user)
	sess := session(t, f.st, f.user)
	ctx := t.Context()
	fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", fmt.Sprintf("NEW.id = '%s' AND NEW.revoked_at IS NOT NULL", g2.ID))

	f.gh.SetMemberships("octo", nil, nil)
	f.advance(16 * time.Minute)
	if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) || !fired() {
		t.Fatalf("RecheckMemberships with the database failing midway: %v (failure injected: %v), want ErrNoLongerAllowed", err, fired())
	}
	var revoked []string
	for _, g := range []store.Grant{g1, g2, g3} {
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt != nil {
			revoked = append(revoked, g.ID)
		}
	}
	if len(revoked) != 0 {
		t.Fatalf("a revocation that failed midway revoked %q of %q, %q, %q: want all or nothing", revoked, g1.ID, g2.ID, g3.ID)
	}
	if _, err := f.st.GetSession(ctx, sess.IDDigest, time.Now()); err != nil {
		t.Fatalf("a revocation that failed ended the session anyway: %v", err)
	}

	// The next use, a minute later, well within the interval.
	f.advance(time.Minute)
	if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("RecheckMemberships after a failed revocation: %v, want ErrNoLongerAllowed", err)
	}
	for _, g := range []store.Grant{g1, g2, g3} {
		if got, _ := f.st.GetGrant(ctx, g.ID); got.RevokedAt == nil {
			t.Fatalf("grant %s outlived the second check", g.ID)
		}
	}
	if _, err := f.st.GetSession(ctx, sess.IDDigest, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the session outlived the second check: %v", err)
	}
}

// TestDeprovisionTimeoutChecksAgain: the revocation fails because it
// waited out its deadline and budget for a lock (another transaction
// holds the user's row), the way a slow or overloaded database fails it.
// Making the next check due at once must not depend on what that wait
// left of the budget: once the lock is gone, the next use, well within
// membership_check_interval, revokes.
func TestDeprovisionTimeoutChecksAgain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pg, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	f := newFixture(t, pg, 8*time.Hour)
	b, g := recheckFixture(t, f, true)
	b.Store = store.NewBounded(pg, 200*time.Millisecond, 0)
	b.RevokeTimeout = 300 * time.Millisecond
	ctx := t.Context()

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, f.user.ID); err != nil {
		t.Fatal(err)
	}

	f.gh.SetMemberships("octo", nil, nil)
	f.advance(16 * time.Minute)
	if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("RecheckMemberships while the user's row is locked: %v, want ErrNoLongerAllowed", err)
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("the revocation that timed out revoked the grant anyway")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	f.advance(time.Minute)
	if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("RecheckMemberships a minute after a revocation that timed out: %v, want ErrNoLongerAllowed", err)
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt == nil {
		t.Fatal("the grant outlived the check after a revocation that timed out")
	}
}

// TestUpstreamRevocationRevokeRetried: the upstream refuses the kept
// refresh token, and the database fails while the user's grants at authd
// are being revoked for it (revoke_on_upstream_revocation). The refusal
// must not be lost with the failed transaction: the kept grant is not
// left dead with the user's grants alive, and the next use (after the
// back-off) asks the upstream again and, refused again, revokes them.
func TestUpstreamRevocationRevokeRetried(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pg, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	f := newFixture(t, pg, time.Hour)
	b := f.broker(t, nil) // revoke_on_upstream_revocation
	ctx := t.Context()
	if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatal(err)
	}
	g := authdGrant(t, pg, f.user)
	sess := session(t, pg, f.user)
	fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", fmt.Sprintf("NEW.id = '%s' AND NEW.revoked_at IS NOT NULL", g.ID))

	f.gh.RevokeGrant("octo")
	f.advance(2 * time.Hour)
	if _, err := b.Token(ctx, f.user.ID, "github"); err == nil || !fired() {
		t.Fatalf("Token with the revocation failing: %v (failure injected: %v), want an error", err, fired())
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("the failed revocation revoked the grant anyway")
	}
	if row, err := pg.GetUpstreamToken(ctx, f.user.ID, "github"); err != nil || row.DeadAt != nil || row.RefreshLeaseUntil != nil || row.RefreshUnsettled {
		t.Fatalf("kept grant after the failed revocation: %+v, %v; want live, its lease ended, settled", row, err)
	}

	f.advance(time.Minute) // past the back-off
	if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
		t.Fatalf("Token after a failed revocation: %v, want ErrGrantDead", err)
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt == nil {
		t.Fatal("the user's grant outlived the upstream's refusal: the revocation that failed was never retried")
	}
	if _, err := pg.GetSession(ctx, sess.IDDigest, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the user's session outlived the upstream's refusal: %v", err)
	}
	if row, err := pg.GetUpstreamToken(ctx, f.user.ID, "github"); err != nil || row.DeadAt == nil {
		t.Fatalf("kept grant after the refusal: err %v, DeadAt %v; want marked dead", err, row.DeadAt)
	}
}

// TestRecheckRefusalRevokeFails: a due membership check refreshes the
// expired kept token, the upstream refuses it, and revoking the user's
// grants for that fails. The check is not inconclusive (the upstream
// answered): it fails with the database's error (503, the grant kept),
// and the next use checks again at once and revokes.
func TestRecheckRefusalRevokeFails(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pg, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	f := newFixture(t, pg, time.Hour)
	b, g := recheckFixture(t, f, true)
	ctx := t.Context()
	fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", fmt.Sprintf("NEW.id = '%s' AND NEW.revoked_at IS NOT NULL", g.ID))

	f.gh.RevokeGrant("octo")
	f.advance(2 * time.Hour) // the check is due and the token expired
	err = b.RecheckMemberships(ctx, f.user)
	if err == nil || errors.Is(err, upstreamtokens.ErrNoLongerAllowed) || !fired() {
		t.Fatalf("RecheckMemberships with the revocation failing: %v (failure injected: %v), want the database's error", err, fired())
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("the failed revocation revoked the grant anyway")
	}

	f.advance(time.Minute) // past the back-off, well within the interval
	if err := b.RecheckMemberships(ctx, f.user); !errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
		t.Fatalf("RecheckMemberships after a failed revocation: %v, want ErrNoLongerAllowed", err)
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt == nil {
		t.Fatal("the grant outlived the upstream's refusal")
	}
}

// TestRecheckRejectedRevokeRetried: the user revoked authd at GitHub (a
// 401 on the membership read) and is allowlisted by login, so no
// deprovisioning follows: revoke_on_upstream_revocation alone ends their
// grants. When that revocation fails, the kept grant must not be left
// dead with the grants alive: the check fails with the database's error
// and the next use checks again and revokes.
func TestRecheckRejectedRevokeRetried(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pg, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	f := newFixture(t, pg, 0) // GitHub OAuth App tokens: no expiry, no refresh
	b, g := recheckFixture(t, f, true)
	b.Allowed = allowlist.Policy{GitHubUsers: []string{"octo"}}.Check
	ctx := t.Context()
	fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", fmt.Sprintf("NEW.id = '%s' AND NEW.revoked_at IS NOT NULL", g.ID))

	f.gh.RevokeGrant("octo")
	f.advance(16 * time.Minute)
	if err := b.RecheckMemberships(ctx, f.user); err == nil || !fired() {
		t.Fatalf("RecheckMemberships with the revocation failing: %v (failure injected: %v), want the database's error", err, fired())
	}
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt != nil {
		t.Fatal("the failed revocation revoked the grant anyway")
	}

	f.advance(time.Minute) // well within the interval
	_ = b.RecheckMemberships(ctx, f.user)
	if got, _ := pg.GetGrant(ctx, g.ID); got.RevokedAt == nil {
		t.Fatal("the grant outlived the upstream's rejection of the kept token: the failed revocation was never retried")
	}
	if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
		t.Fatalf("Token after the upstream rejected the kept token: %v, want ErrGrantDead", err)
	}
}
