package upstreamtokens_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstreamtokens"
)

// An expired upstream access token is refreshed with the kept refresh
// token; the new one works upstream, the spent refresh token is replaced.
func TestTokenRefreshesExpired(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), time.Hour)
			b := f.broker(t, nil)
			ctx := t.Context()
			if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatalf("Keep: %v", err)
			}
			f.advance(2 * time.Hour) // past the hour
			if _, st := f.githubLogin(t, f.ident.Grant.AccessToken); st != 401 {
				t.Fatalf("the fake accepted an expired token (%d)", st)
			}
			tok, err := b.Token(ctx, f.user.ID, "github")
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.AccessToken == f.ident.Grant.AccessToken {
				t.Fatal("Token handed out the expired token")
			}
			if login, st := f.githubLogin(t, tok.AccessToken); login != "octo" {
				t.Fatalf("refreshed token: the upstream answered %d %q", st, login)
			}
			if ok, refused := f.gh.Refreshes(); ok != 1 || refused != 0 {
				t.Fatalf("fake saw %d refreshes, %d refused; want 1, 0", ok, refused)
			}
			again, err := b.Token(ctx, f.user.ID, "github")
			if err != nil || again.AccessToken != tok.AccessToken {
				t.Fatalf("second Token: %v (same token: %v)", err, again.AccessToken == tok.AccessToken)
			}
			if ok, _ := f.gh.Refreshes(); ok != 1 {
				t.Fatalf("a fresh token was refreshed again (%d refreshes)", ok)
			}
			if strings.Contains(f.logBuf.String(), tok.AccessToken) || strings.Contains(f.logBuf.String(), f.ident.Grant.RefreshToken) {
				t.Fatal("a token reached the log")
			}
		})
	}
}

// Two replicas (two brokers on one database) need the expired token at
// the same moment: the upstream sees exactly one refresh (its refresh
// tokens are single-use), and both get the same new token.
func TestConcurrentRefreshAcrossReplicas(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), time.Hour)
			replicas := []*upstreamtokens.Broker{f.broker(t, nil), f.broker(t, nil)}
			if err := replicas[0].Keep(t.Context(), f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatalf("Keep: %v", err)
			}
			f.advance(2 * time.Hour)
			// Each refresh takes a while, so that a second one, had it
			// been sent, would overlap the first.
			f.gh.SetRefreshDelay(100 * time.Millisecond)

			const perReplica = 3
			toks := make([]upstreamtokens.Token, 2*perReplica)
			errs := make([]error, len(toks))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range toks {
				wg.Go(func() {
					<-start
					toks[i], errs[i] = replicas[i%2].Token(t.Context(), f.user.ID, "github")
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("caller %d (replica %d): %v", i, i%2, err)
				}
			}
			if ok, refused := f.gh.Refreshes(); ok != 1 || refused != 0 {
				t.Fatalf("the upstream saw %d refreshes (%d refused), want exactly 1", ok+refused, refused)
			}
			for i := range toks {
				if toks[i].AccessToken != toks[0].AccessToken {
					t.Fatalf("caller %d got another token than caller 0", i)
				}
			}
			if toks[0].AccessToken == f.ident.Grant.AccessToken {
				t.Fatal("the callers got the expired token")
			}
			if login, st := f.githubLogin(t, toks[0].AccessToken); login != "octo" {
				t.Fatalf("the shared refreshed token: upstream answered %d %q", st, login)
			}
		})
	}
}

// The upstream refuses the kept refresh token (the user revoked the app):
// the kept grant is dead, and the user's grants and sessions at authd end
// with it (revoke_on_upstream_revocation, default on), with an audit
// record. With the option off, they stay.
func TestUpstreamRevocationEndsGrants(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		for _, revoke := range []bool{true, false} {
			t.Run(name+map[bool]string{true: "/revoke", false: "/keep"}[revoke], func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, newStore(t), time.Hour)
				b := f.broker(t, nil)
				up := b.Upstreams["github"]
				up.RevokeOnUpstreamRevocation = revoke
				b.Upstreams["github"] = up
				ctx := t.Context()
				if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
					t.Fatalf("Keep: %v", err)
				}
				g := authdGrant(t, f.st, f.user)
				sess := session(t, f.st, f.user)

				f.gh.RevokeGrant("octo")
				f.advance(2 * time.Hour)
				_, err := b.Token(ctx, f.user.ID, "github")
				if !errors.Is(err, upstreamtokens.ErrGrantDead) {
					t.Fatalf("Token after the upstream revoked the grant: got %v, want ErrGrantDead", err)
				}
				if _, refused := f.gh.Refreshes(); refused != 1 {
					t.Fatalf("the upstream refused %d refreshes, want 1", refused)
				}
				row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
				if err != nil || row.DeadAt == nil {
					t.Fatalf("kept grant after invalid_grant: err %v, DeadAt %v; want marked dead", err, row.DeadAt)
				}
				// Dead stays dead: no second call upstream.
				if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
					t.Fatalf("second Token: got %v, want ErrGrantDead", err)
				}
				if ok, refused := f.gh.Refreshes(); ok+refused != 1 {
					t.Fatalf("a dead grant was refreshed again (%d calls)", ok+refused)
				}
				got, err := f.st.GetGrant(ctx, g.ID)
				if err != nil {
					t.Fatal(err)
				}
				if revoke && got.RevokedAt == nil {
					t.Fatal("the user's authd grant survived the upstream's revocation")
				}
				if !revoke && got.RevokedAt != nil {
					t.Fatal("revoke_on_upstream_revocation: false, yet the authd grant was revoked")
				}
				// With the grants, the sign-in at authd ends: the next
				// authorization goes to the upstream.
				_, err = f.st.GetSession(ctx, sess.IDDigest, time.Now())
				if revoke && !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("the user's authd session outlived the upstream's revocation: %v", err)
				}
				if !revoke && err != nil {
					t.Fatalf("revoke_on_upstream_revocation: false, yet the session ended: %v", err)
				}
				logs := f.logBuf.String()
				if !strings.Contains(logs, `"event":"upstream_grant_revoked"`) {
					t.Fatalf("no audit record of the upstream revocation in %s", logs)
				}
				if revoke && !strings.Contains(logs, `"event":"grants_revoked"`) {
					t.Fatalf("no audit record of the revoked grants in %s", logs)
				}
				// A new sign-in brings the grant back.
				fresh := signIn(t, f.gh.Client(), f.conn)
				if err := b.Keep(ctx, f.user.ID, "github", fresh.Grant); err != nil {
					t.Fatalf("Keep after a new sign-in: %v", err)
				}
				if tok, err := b.Token(ctx, f.user.ID, "github"); err != nil || tok.AccessToken != fresh.Grant.AccessToken {
					t.Fatalf("Token after a new sign-in: %v", err)
				}
			})
		}
	}
}

// An expired token without a refresh token (an upstream that issued
// none) is dead for the caller, but nothing is revoked: it simply ran out.
func TestExpiredWithoutRefreshToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewMemory(), time.Hour)
	b := f.broker(t, nil)
	g := *f.ident.Grant
	g.RefreshToken = ""
	if err := b.Keep(t.Context(), f.user.ID, "github", &g); err != nil {
		t.Fatal(err)
	}
	ag := authdGrant(t, f.st, f.user)
	f.advance(2 * time.Hour)
	if _, err := b.Token(t.Context(), f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
		t.Fatalf("got %v, want ErrGrantDead", err)
	}
	if ok, refused := f.gh.Refreshes(); ok+refused != 0 {
		t.Fatal("a refresh was attempted without a refresh token")
	}
	if got, _ := f.st.GetGrant(t.Context(), ag.ID); got.RevokedAt != nil {
		t.Fatal("an expired upstream token revoked the authd grant")
	}
}

// authdGrant gives the user a live grant at authd (an MCP client's).
func authdGrant(t *testing.T, st store.Store, u store.User) store.Grant {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	c := store.Client{ID: "client-" + oauth.RandomString(8), Source: store.SourceConfig,
		Metadata:  store.ClientMetadata{RedirectURIs: []string{"https://app.example/cb"}, ClientName: "App"},
		CreatedAt: now, UpdatedAt: now, LastUsedAt: now}
	if err := st.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	code := store.AuthCode{Digest: oauth.Digest(oauth.NewToken("c_")), ClientID: c.ID, UserID: u.ID,
		RedirectURI: "https://app.example/cb", CodeChallenge: "x", CodeChallengeMethod: "S256",
		AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := st.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	g := store.Grant{ID: "g-" + oauth.RandomString(12), ClientID: c.ID, UserID: u.ID, AuthTime: now,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	if _, err := st.RedeemAuthCode(ctx, code.Digest, now, g, nil); err != nil {
		t.Fatal(err)
	}
	return g
}

// A caller that gives up while the upstream is refreshing does not throw
// the refreshed (and the spent single-use) token away: the refresh
// completes and is kept, so the next caller uses it without a refresh.
func TestRefreshOutlivesCancelledCaller(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewMemory(), time.Hour)
	b := f.broker(t, nil)
	if err := b.Keep(t.Context(), f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatal(err)
	}
	f.advance(2 * time.Hour)
	f.gh.SetRefreshDelay(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, _ = b.Token(ctx, f.user.ID, "github") // the caller's deadline passes mid-refresh
	tok, err := b.Token(t.Context(), f.user.ID, "github")
	if err != nil {
		t.Fatalf("Token after a cancelled caller's refresh: %v", err)
	}
	if ok, refused := f.gh.Refreshes(); ok != 1 || refused != 0 {
		t.Fatalf("the upstream saw %d refreshes, %d refused; want the one of the cancelled caller, kept", ok, refused)
	}
	if login, _ := f.githubLogin(t, tok.AccessToken); login != "octo" {
		t.Fatal("the kept refreshed token does not work")
	}
}
