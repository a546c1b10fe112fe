package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// The one-statement paths of RedeemAuthCode and RotateRefreshToken do the
// whole job in the common case, and decline (ErrNotFound, writing nothing)
// in every other, leaving those to the transaction.
func TestPostgresFastPaths(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := pgtest.New(t)
	c, u := pgFixtures(t, s)
	now := pgT0.Add(time.Second)

	code := store.AuthCode{
		Digest: "code-1", ClientID: c.ID, UserID: u.ID, RedirectURI: "http://127.0.0.1/cb", Scopes: []string{"a"},
		CodeChallenge: "challenge", CodeChallengeMethod: "S256", AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Minute),
	}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	g := store.Grant{ID: "grant-1", ClientID: c.ID, UserID: u.ID, Scopes: []string{"a"}, AuthTime: pgT0,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Digest: "rt-1", GrantID: g.ID, ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}

	// A refresh token of another grant is not the common case: declined,
	// and the code stays unused.
	bad := *rt
	bad.GrantID = "other"
	if _, err := store.RedeemFast(s, ctx, code.Digest, now, g, &bad); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("redeemFast with a foreign refresh token = %v, want ErrNotFound", err)
	}
	got, err := store.RedeemFast(s, ctx, code.Digest, now, g, rt)
	if err != nil || got.UsedAt == nil || !got.UsedAt.Equal(now) || got.GrantID != g.ID || got.UserID != u.ID {
		t.Fatalf("redeemFast = %+v, %v", got, err)
	}
	if _, err := s.GetGrant(ctx, g.ID); err != nil {
		t.Fatalf("grant not created: %v", err)
	}
	if r, err := s.GetRefreshToken(ctx, rt.Digest); err != nil || r.GrantID != g.ID {
		t.Fatalf("refresh token not created: %+v %v", r, err)
	}
	// A used code is declined and nothing more is written.
	g2 := g
	g2.ID = "grant-2"
	if _, err := store.RedeemFast(s, ctx, code.Digest, now, g2, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("redeemFast of a used code = %v, want ErrNotFound", err)
	}
	if _, err := s.GetGrant(ctx, g2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a declined redemption created a grant: %v", err)
	}
	// A duplicate grant id aborts the whole statement: the code stays unused.
	code2 := code
	code2.Digest = "code-2"
	if err := s.CreateAuthCode(ctx, code2); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RedeemFast(s, ctx, code2.Digest, now, g, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("redeemFast with a taken grant id = %v, want ErrConflict", err)
	}
	if c2, err := s.GetAuthCode(ctx, code2.Digest, now); err != nil || c2.UsedAt != nil {
		t.Fatalf("code after a conflicting redemption: %+v %v", c2, err)
	}

	later := now.Add(time.Minute)
	next := store.RefreshToken{Digest: "rt-2", GrantID: g.ID, ClientID: c.ID, Parent: rt.Digest, CreatedAt: later, ExpiresAt: later.Add(time.Hour)}
	foreign := next
	foreign.ClientID = "someone-else"
	if _, err := store.RotateFast(s, ctx, rt.Digest, later, foreign); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotateFast for another client = %v, want ErrNotFound", err)
	}
	rotated, err := store.RotateFast(s, ctx, rt.Digest, later, next)
	if err != nil || rotated.ID != g.ID || !rotated.LastUsedAt.Equal(later) {
		t.Fatalf("rotateFast = %+v, %v", rotated, err)
	}
	if old, err := s.GetRefreshToken(ctx, rt.Digest); err != nil || old.UsedAt == nil || !old.UsedAt.Equal(later) {
		t.Fatalf("old token after rotation: %+v %v", old, err)
	}
	if n, err := s.GetRefreshToken(ctx, next.Digest); err != nil || n.Parent != rt.Digest || n.UsedAt != nil {
		t.Fatalf("next token after rotation: %+v %v", n, err)
	}
	// The spent token is declined (the transaction then detects reuse).
	again := next
	again.Digest = "rt-3"
	if _, err := store.RotateFast(s, ctx, rt.Digest, later, again); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotateFast of a spent token = %v, want ErrNotFound", err)
	}
	if _, err := s.GetRefreshToken(ctx, again.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a declined rotation inserted a token")
	}
	// A revoked grant's live token is declined too.
	if err := s.RevokeGrant(ctx, g.ID, later); err != nil {
		t.Fatal(err)
	}
	fresh := store.RefreshToken{Digest: "rt-4", GrantID: g.ID, ClientID: c.ID, CreatedAt: later, ExpiresAt: later.Add(time.Hour)}
	if err := s.CreateRefreshToken(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	again.Digest, again.Parent = "rt-5", fresh.Digest
	if _, err := store.RotateFast(s, ctx, fresh.Digest, later, again); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotateFast in a revoked grant = %v, want ErrNotFound", err)
	}
}

// GetGrantUser, GetRefreshTokenGrant and CheckJWTGrant return exactly what
// the separate reads would, in both stores.
func TestJoinedReads(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) store.Store{
		"postgres": func(t *testing.T) store.Store { return pgtest.New(t) },
		"memory":   func(*testing.T) store.Store { return store.NewMemory() },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t)
			c := store.Client{ID: "c1", Source: store.SourceDynamic, CreatedAt: pgT0, UpdatedAt: pgT0, LastUsedAt: pgT0}
			if err := s.CreateClient(ctx, c); err != nil {
				t.Fatal(err)
			}
			u, err := s.UpsertUser(ctx, store.User{Provider: "github", Subject: "7", Login: "octo", Groups: []string{"g"},
				CreatedAt: pgT0, UpdatedAt: pgT0, LastLoginAt: pgT0})
			if err != nil {
				t.Fatal(err)
			}
			g := store.Grant{ID: "g1", ClientID: c.ID, UserID: u.ID, Scopes: []string{"a"}, Resources: []string{"https://r"},
				AuthTime: pgT0, CreatedAt: pgT0, LastUsedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour)}
			rt := store.RefreshToken{Digest: "rt1", GrantID: g.ID, ClientID: c.ID, CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour)}
			code := store.AuthCode{Digest: "ac1", ClientID: c.ID, UserID: u.ID, AuthTime: pgT0, CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Minute)}
			if err := s.CreateAuthCode(ctx, code); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RedeemAuthCode(ctx, code.Digest, pgT0, g, &rt); err != nil {
				t.Fatal(err)
			}
			wantG, _ := s.GetGrant(ctx, g.ID)
			wantU, _ := s.GetUser(ctx, u.ID)
			wantRT, _ := s.GetRefreshToken(ctx, rt.Digest)

			gotG, gotU, err := s.GetGrantUser(ctx, g.ID)
			if err != nil || !reflect.DeepEqual(gotG, wantG) || !reflect.DeepEqual(gotU, wantU) {
				t.Errorf("GetGrantUser = %+v, %+v, %v\nwant %+v, %+v", gotG, gotU, err, wantG, wantU)
			}
			gotRT, gotG, gotU, err := s.GetRefreshTokenGrant(ctx, rt.Digest)
			if err != nil || !reflect.DeepEqual(gotRT, wantRT) || !reflect.DeepEqual(gotG, wantG) || !reflect.DeepEqual(gotU, wantU) {
				t.Errorf("GetRefreshTokenGrant = %+v, %+v, %+v, %v\nwant %+v, %+v, %+v", gotRT, gotG, gotU, err, wantRT, wantG, wantU)
			}
			revoked, gotG, gotU, err := s.CheckJWTGrant(ctx, "jti-1", g.ID, pgT0)
			if err != nil || revoked || !reflect.DeepEqual(gotG, wantG) || !reflect.DeepEqual(gotU, wantU) {
				t.Errorf("CheckJWTGrant = %v, %+v, %+v, %v", revoked, gotG, gotU, err)
			}
			if err := s.RevokeJTI(ctx, "jti-1", pgT0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if revoked, _, _, err := s.CheckJWTGrant(ctx, "jti-1", g.ID, pgT0); err != nil || !revoked {
				t.Errorf("CheckJWTGrant of a revoked jti = %v, %v", revoked, err)
			}
			if revoked, _, _, err := s.CheckJWTGrant(ctx, "jti-1", g.ID, pgT0.Add(time.Hour)); err != nil || revoked {
				t.Errorf("CheckJWTGrant once the revocation expired = %v, %v", revoked, err)
			}
			if _, _, _, err := s.CheckJWTGrant(ctx, "jti-1", "unknown", pgT0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("CheckJWTGrant(unknown grant) = %v, want ErrNotFound", err)
			}
			if _, _, err := s.GetGrantUser(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetGrantUser(unknown) = %v, want ErrNotFound", err)
			}
			if _, _, _, err := s.GetRefreshTokenGrant(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetRefreshTokenGrant(unknown) = %v, want ErrNotFound", err)
			}
		})
	}
}
