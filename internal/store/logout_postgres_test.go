package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// pgSignedIn gives the fixture user a session and n grants (redeemed
// codes), on a store over dsn.
func pgSignedIn(t *testing.T, s *store.Postgres, n int) (store.User, store.Session, []store.Grant) {
	t.Helper()
	ctx := context.Background()
	c, u := pgFixtures(t, s)
	sess := store.Session{IDDigest: "sess-" + u.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	var gs []store.Grant
	for i := range n {
		code := fmt.Sprintf("code-%d", i)
		if err := s.CreateAuthCode(ctx, store.AuthCode{Digest: code, ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		g := store.Grant{ID: fmt.Sprintf("g%d", i), ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0.Add(time.Duration(i) * time.Second),
			LastUsedAt: pgT0, ExpiresAt: pgT0.Add(24 * time.Hour)}
		if _, err := s.RedeemAuthCode(ctx, code, pgT0, g, nil); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	return u, sess, gs
}

// A database failure in the middle of LogoutUpstreamUser (here: revoking
// the second grant) records nothing: not the jti, not the end of the
// session or of the first grant. The same token then goes through.
func TestPostgresLogoutUpstreamUserAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	u, sess, gs := pgSignedIn(t, s, 2)
	fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", fmt.Sprintf("NEW.id = '%s' AND NEW.revoked_at IS NOT NULL", gs[1].ID))
	l := store.UpstreamLogout{Upstream: u.Provider, Subject: u.Subject, JTI: "jti-1", Expiry: pgT0.Add(time.Minute), RevokeGrants: true}
	if _, err := s.LogoutUpstreamUser(ctx, l, pgT0); !errors.Is(err, store.ErrUnavailable) || !fired() {
		t.Fatalf("LogoutUpstreamUser with the database failing midway = %v (fired %v), want ErrUnavailable", err, fired())
	}
	if _, err := s.GetSession(ctx, sess.IDDigest, pgT0); err != nil {
		t.Fatalf("the failed logout ended the session: %v", err)
	}
	if g, _ := s.GetGrant(ctx, gs[0].ID); g.RevokedAt != nil {
		t.Fatal("the failed logout revoked the first grant")
	}
	res, err := s.LogoutUpstreamUser(ctx, l, pgT0)
	if err != nil || res.UserID != u.ID || res.Sessions != 1 || len(res.Grants) != 2 {
		t.Fatalf("the same token after the failure = %+v, %v; want the user logged out with both grants", res, err)
	}
	if _, err := s.LogoutUpstreamUser(ctx, l, pgT0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("replay after success = %v, want ErrConflict", err)
	}
}

// LogoutUser and RevokeUserAccess revoke every grant of the user and end
// the session, or, when the database fails midway, nothing.
func TestPostgresRevokeUserAllOrNothing(t *testing.T) {
	t.Parallel()
	for name, revoke := range map[string]func(*store.Postgres, string) (store.UserLogout, error){
		"LogoutUser": func(s *store.Postgres, id string) (store.UserLogout, error) {
			return s.LogoutUser(context.Background(), id, pgT0, true)
		},
		"RevokeUserAccess": func(s *store.Postgres, id string) (store.UserLogout, error) {
			return s.RevokeUserAccess(context.Background(), id, pgT0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := pgtest.DSN(t)
			s, err := store.OpenPostgres(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			u, sess, gs := pgSignedIn(t, s, 3)
			fired := pgtest.FailOnce(t, dsn, "grants", "UPDATE", fmt.Sprintf("NEW.id = '%s' AND NEW.revoked_at IS NOT NULL", gs[1].ID))
			if _, err := revoke(s, u.ID); !errors.Is(err, store.ErrUnavailable) || !fired() {
				t.Fatalf("with the database failing midway = %v, want ErrUnavailable", err)
			}
			for _, g := range gs {
				if got, _ := s.GetGrant(ctx, g.ID); got.RevokedAt != nil {
					t.Fatalf("the failed call revoked grant %s", g.ID)
				}
			}
			if _, err := s.GetSession(ctx, sess.IDDigest, pgT0); err != nil {
				t.Fatalf("the failed call ended the session: %v", err)
			}
			if l, err := revoke(s, u.ID); err != nil || len(l.Grants) != 3 || l.Sessions != 1 {
				t.Fatalf("again = %+v, %v; want 3 grants and the session", l, err)
			}
		})
	}
}
