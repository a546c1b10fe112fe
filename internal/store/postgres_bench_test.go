package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// BenchmarkPostgres times each store operation on the hot paths against a
// real Postgres (pgtest's: fsync off, so this is the cost of the statement
// and the round trip, not of the disk), with 8 goroutines per core as a
// busy server would have. Run with -bench Postgres -benchtime 2000x.
func BenchmarkPostgres(b *testing.B) {
	ctx := context.Background()
	s := pgtest.New(b)
	now := time.Now().UTC().Truncate(time.Microsecond)
	c := store.Client{ID: "bench-client", Source: store.SourceDynamic, SecretHash: "sha256$00",
		Metadata:  store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}},
		CreatedAt: now, UpdatedAt: now, LastUsedAt: now}
	if err := s.CreateClient(ctx, c); err != nil {
		b.Fatal(err)
	}
	u, err := s.UpsertUser(ctx, store.User{Provider: "dev", Subject: "bench", Login: "bench", CreatedAt: now, UpdatedAt: now, LastLoginAt: now})
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	id := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }
	grant := func() store.Grant {
		return store.Grant{ID: id("grant"), ClientID: c.ID, UserID: u.ID, Scopes: []string{"mcp:tools"},
			Resources: []string{"https://mcp.example.com/mcp"}, AuthTime: now, CreatedAt: now, LastUsedAt: now,
			ExpiresAt: now.Add(24 * time.Hour)}
	}
	code := func() store.AuthCode {
		return store.AuthCode{Digest: id("code"), ClientID: c.ID, UserID: u.ID, RedirectURI: "http://127.0.0.1/cb",
			Scopes: []string{"mcp:tools"}, CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
			CodeChallengeMethod: "S256", AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	}
	// One live grant with a refresh token, for the read benchmarks.
	g := grant()
	first := code()
	rt := store.RefreshToken{Digest: id("rt"), GrantID: g.ID, ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateAuthCode(ctx, first); err != nil {
		b.Fatal(err)
	}
	if _, err := s.RedeemAuthCode(ctx, first.Digest, now, g, &rt); err != nil {
		b.Fatal(err)
	}
	at := store.AccessToken{Digest: id("at"), ClientID: c.ID, UserID: u.ID, GrantID: g.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateAccessToken(ctx, at); err != nil {
		b.Fatal(err)
	}

	parallel := func(b *testing.B, op func() error) {
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	}
	b.Run("GetClient", func(b *testing.B) {
		parallel(b, func() error { _, err := s.GetClient(ctx, c.ID, now); return err })
	})
	b.Run("CreateClient", func(b *testing.B) {
		parallel(b, func() error {
			cc := c
			cc.ID = id("client")
			return s.CreateClient(ctx, cc)
		})
	})
	b.Run("IsJTIRevoked", func(b *testing.B) {
		parallel(b, func() error { _, err := s.IsJTIRevoked(ctx, "some-jti", now); return err })
	})
	b.Run("GetGrantUser", func(b *testing.B) {
		parallel(b, func() error { _, _, err := s.GetGrantUser(ctx, g.ID); return err })
	})
	b.Run("GetRefreshTokenGrant", func(b *testing.B) {
		parallel(b, func() error { _, _, _, err := s.GetRefreshTokenGrant(ctx, rt.Digest); return err })
	})
	b.Run("GetAccessToken", func(b *testing.B) {
		parallel(b, func() error { _, err := s.GetAccessToken(ctx, at.Digest); return err })
	})
	b.Run("CreateAccessToken", func(b *testing.B) {
		parallel(b, func() error {
			t := at
			t.Digest = id("at")
			return s.CreateAccessToken(ctx, t)
		})
	})
	b.Run("CreateClientCredentialsToken", func(b *testing.B) {
		// No grant: concurrent ones share statements (batch.go).
		parallel(b, func() error {
			return s.CreateAccessToken(ctx, store.AccessToken{Digest: id("cc"), ClientID: c.ID,
				Resources: []string{"https://mcp.example/"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		})
	})
	b.Run("CreateAuthCode", func(b *testing.B) {
		parallel(b, func() error { return s.CreateAuthCode(ctx, code()) })
	})
	b.Run("RedeemAuthCode", func(b *testing.B) {
		codes := make(chan string, b.N)
		for range b.N {
			ac := code()
			if err := s.CreateAuthCode(ctx, ac); err != nil {
				b.Fatal(err)
			}
			codes <- ac.Digest
		}
		b.ResetTimer()
		parallel(b, func() error {
			g := grant()
			rt := &store.RefreshToken{Digest: id("rt"), GrantID: g.ID, ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			_, err := s.RedeemAuthCode(ctx, <-codes, now, g, rt)
			return err
		})
	})
	b.Run("RotateRefreshToken", func(b *testing.B) {
		// Each goroutine rotates its own chain, as clients do.
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			g := grant()
			ac := code()
			cur := store.RefreshToken{Digest: id("rt"), GrantID: g.ID, ClientID: c.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateAuthCode(ctx, ac); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.RedeemAuthCode(ctx, ac.Digest, now, g, &cur); err != nil {
				b.Error(err)
				return
			}
			for pb.Next() {
				next := store.RefreshToken{Digest: id("rt"), GrantID: g.ID, ClientID: c.ID, Parent: cur.Digest, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if _, err := s.RotateRefreshToken(ctx, cur.Digest, now, next, 0); err != nil {
					b.Error(err)
					return
				}
				cur = next
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("UpsertUser", func(b *testing.B) {
		parallel(b, func() error {
			_, err := s.UpsertUser(ctx, store.User{Provider: "dev", Subject: id("user"), CreatedAt: now, UpdatedAt: now, LastLoginAt: now})
			return err
		})
	})
}
