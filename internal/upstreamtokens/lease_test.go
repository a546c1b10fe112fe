package upstreamtokens_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstreamtokens"
)

// slowRefresher delays every refresh by delay (ignoring the context, as a
// hung upstream does) and counts calls; failing: it then fails.
type slowRefresher struct {
	next    upstream.Refresher
	delay   time.Duration
	failing atomic.Bool
	calls   atomic.Int32
}

func (s *slowRefresher) Refresh(ctx context.Context, rt string) (*upstream.Grant, error) {
	s.calls.Add(1)
	time.Sleep(s.delay)
	if s.failing.Load() {
		return nil, errors.New("upstream answered 502")
	}
	return s.next.Refresh(ctx, rt)
}

// A burst of callers needing a refresh from a slow upstream, on two
// replicas over a 3-connection pool, holds no database connection while
// the upstream answers: an unrelated query still answers, and callers
// that hung up return at once. Both stores (the memory store shows the
// second half).
func TestRefreshBurstHoldsNoConnection(t *testing.T) {
	t.Parallel()
	for name, newStore := range map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return store.NewMemory() },
		"postgres": func(t *testing.T) store.Store {
			s, err := store.OpenPostgres(context.Background(), pgtest.DSN(t)+"&pool_max_conns=3")
			if err != nil {
				t.Fatalf("opening the store: %v", err)
			}
			t.Cleanup(s.Close)
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), time.Hour)
			slow := &slowRefresher{next: f.conn.(upstream.Refresher), delay: 1500 * time.Millisecond}
			var replicas []*upstreamtokens.Broker
			for range 2 {
				b := f.broker(t, nil)
				up := b.Upstreams["github"]
				up.Refresher = slow
				b.Upstreams["github"] = up
				replicas = append(replicas, b)
			}
			if err := replicas[0].Keep(t.Context(), f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatalf("Keep: %v", err)
			}
			f.advance(2 * time.Hour)

			const callers = 8
			var wg sync.WaitGroup
			returned := make([]time.Duration, callers)
			start := time.Now()
			for i := range callers {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
					defer cancel()
					_, _ = replicas[i%2].Token(ctx, f.user.ID, "github")
					returned[i] = time.Since(start)
				})
			}
			time.Sleep(400 * time.Millisecond) // all callers have hung up; the upstream still works
			qctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			_, err := f.st.GetUser(qctx, f.user.ID)
			cancel()
			if err != nil {
				t.Errorf("an unrelated query during the refresh burst: %v", err)
			}
			wg.Wait()
			for i, d := range returned {
				if d > time.Second {
					t.Errorf("caller %d hung up after 200ms but returned after %v", i, d)
				}
			}
			// The refresh completes in the background and is kept: exactly
			// one upstream call for the whole burst.
			tok, err := replicas[1].Token(t.Context(), f.user.ID, "github")
			if err != nil {
				t.Fatalf("Token after the burst: %v", err)
			}
			if n := slow.calls.Load(); n != 1 {
				t.Fatalf("the upstream was called %d times for one expired token, want 1", n)
			}
			if login, _ := f.githubLogin(t, tok.AccessToken); login != "octo" {
				t.Fatal("the refreshed token does not work")
			}
		})
	}
}

// A failing upstream is called once, not once per waiting caller: the
// failure is remembered briefly (back-off), in this process and, through
// the lease, by the other replica.
func TestFailedRefreshBacksOff(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), time.Hour)
			slow := &slowRefresher{next: f.conn.(upstream.Refresher), delay: 100 * time.Millisecond}
			slow.failing.Store(true)
			var replicas []*upstreamtokens.Broker
			for range 2 {
				b := f.broker(t, nil)
				up := b.Upstreams["github"]
				up.Refresher = slow
				b.Upstreams["github"] = up
				b.RefreshTimeout = 2 * time.Second
				replicas = append(replicas, b)
			}
			if err := replicas[0].Keep(t.Context(), f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatalf("Keep: %v", err)
			}
			f.advance(2 * time.Hour)
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(t.Context(), time.Second)
					defer cancel()
					_, errs[i] = replicas[i%2].Token(ctx, f.user.ID, "github")
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err == nil {
					t.Fatalf("caller %d got a token from a failing upstream", i)
				}
			}
			if n := slow.calls.Load(); n != 1 {
				t.Fatalf("a failing upstream was called %d times by 6 callers, want 1", n)
			}
		})
	}
}

// A refresh whose outcome was lost (the call cut off after the upstream
// spent the single-use refresh token) followed by the upstream's refusal
// does not end the user's grants at authd: the kept grant is dead (the
// user must sign in at the upstream again) and the uncertainty is logged.
func TestRefusalAfterLostRefreshKeepsGrants(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), time.Hour)
			b := f.broker(t, nil)
			b.RefreshTimeout = 100 * time.Millisecond
			if err := b.Keep(t.Context(), f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatalf("Keep: %v", err)
			}
			g := authdGrant(t, f.st, f.user)
			f.advance(2 * time.Hour)
			f.gh.SetRefreshDelay(400 * time.Millisecond) // the answer comes after the call was given up
			if _, err := b.Token(t.Context(), f.user.ID, "github"); err == nil {
				t.Fatal("Token succeeded although the refresh was cut off")
			}
			f.gh.SetRefreshDelay(0)
			time.Sleep(500 * time.Millisecond) // the fake has spent the refresh token
			f.advance(time.Minute)             // past the back-off
			_, err := b.Token(t.Context(), f.user.ID, "github")
			if !errors.Is(err, upstreamtokens.ErrGrantDead) {
				t.Fatalf("Token after the lost refresh: %v, want ErrGrantDead", err)
			}
			if _, refused := f.gh.Refreshes(); refused != 1 {
				t.Fatalf("the upstream refused %d refreshes, want 1", refused)
			}
			got, err := f.st.GetGrant(t.Context(), g.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.RevokedAt != nil {
				t.Fatal("a refusal after a lost refresh revoked the user's grants at authd")
			}
			if !strings.Contains(f.logBuf.String(), "upstream_grant_uncertain") {
				t.Fatalf("no upstream_grant_uncertain audit record; log: %s", f.logBuf.String())
			}
		})
	}
}

// hookRefresher runs during before answering with err, or with next's
// answer when next is set: an upstream whose answer arrives after
// something else happened.
type hookRefresher struct {
	during func()
	next   upstream.Refresher
	err    error
}

func (h *hookRefresher) Refresh(ctx context.Context, rt string) (*upstream.Grant, error) {
	h.during()
	if h.next != nil {
		return h.next.Refresh(ctx, rt)
	}
	return nil, h.err
}

// A sign-in that replaces the kept grant while a refresh of the old one is
// under way wins: the upstream's refusal of the old refresh token neither
// marks the new grant dead nor revokes the grant the user just made at
// authd.
func TestRefusalAfterSignInKeepsNewGrant(t *testing.T) {
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
			var fresh store.Grant
			up := b.Upstreams["github"]
			up.RevokeOnUpstreamRevocation = true
			up.Refresher = &hookRefresher{err: upstream.ErrGrantRevoked, during: func() {
				// The user signs in again meanwhile and consents anew.
				if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
					t.Errorf("Keep during the refresh: %v", err)
				}
				fresh = authdGrant(t, f.st, f.user)
			}}
			b.Upstreams["github"] = up
			f.advance(2 * time.Hour)
			if _, err := b.Token(ctx, f.user.ID, "github"); !errors.Is(err, upstreamtokens.ErrGrantDead) {
				t.Fatalf("Token refused by the upstream: %v, want ErrGrantDead", err)
			}
			got, err := f.st.GetGrant(ctx, fresh.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.RevokedAt != nil {
				t.Fatal("the refusal of the replaced refresh token revoked the grant made after the new sign-in")
			}
			row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
			if err != nil {
				t.Fatal(err)
			}
			if row.DeadAt != nil {
				t.Fatal("the refusal of the replaced refresh token marked the new kept grant dead")
			}
			if strings.Contains(f.logBuf.String(), "upstream_grant_revoked") {
				t.Fatal("an upstream_grant_revoked audit record for a grant that was replaced")
			}
		})
	}
}

// The write of a refresh's result is not refused for good by a store at
// its in-flight limit: the upstream has spent the single-use refresh
// token, so the rotated one must be kept. Bounded with one slot, held by
// another operation when the answer arrives.
func TestRefreshResultKeptUnderLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewBounded(store.NewMemory(), time.Minute, 1), time.Hour)
	b := f.broker(t, nil)
	ctx := t.Context()
	if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatalf("Keep: %v", err)
	}
	before, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
	if err != nil {
		t.Fatal(err)
	}
	busy := make(chan struct{})
	up := b.Upstreams["github"]
	up.Refresher = &hookRefresher{next: f.conn.(upstream.Refresher), during: func() {
		entered := make(chan struct{})
		go func() {
			defer close(busy)
			// Holds the one slot for a while.
			_, _ = f.st.UpdateUpstreamToken(context.Background(), f.user.ID, "github", func(store.UpstreamToken) (*store.UpstreamToken, error) {
				close(entered)
				time.Sleep(300 * time.Millisecond)
				return nil, nil
			})
		}()
		<-entered
	}}
	b.Upstreams["github"] = up
	f.advance(2 * time.Hour)
	tok, err := b.Token(ctx, f.user.ID, "github")
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	<-busy
	row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
	if err != nil {
		t.Fatal(err)
	}
	if row.RefreshLeaseUntil != nil || string(row.Sealed) == string(before.Sealed) {
		t.Fatal("the refreshed token was not kept: the write of the result was refused while the store was busy")
	}
	if tok2, err := b.Token(ctx, f.user.ID, "github"); err != nil || tok2.AccessToken != tok.AccessToken {
		t.Fatalf("Token after the refresh: %v; want the refreshed token again", err)
	}
	if n, _ := f.gh.Refreshes(); n != 1 {
		t.Fatalf("the upstream was asked for %d refreshes, want 1", n)
	}
}

// The refresh one process shares runs on the database time of its own,
// not of the request that happened to start it: a caller joining the
// refresh gets the token the other replica refreshed even though the
// first caller's request spent its whole budget meanwhile.
func TestSharedRefreshHasItsOwnBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewBounded(store.NewMemory(), time.Minute, 0), time.Hour)
	slow := &slowRefresher{next: f.conn.(upstream.Refresher), delay: 900 * time.Millisecond}
	var replicas []*upstreamtokens.Broker
	for range 2 {
		b := f.broker(t, nil)
		up := b.Upstreams["github"]
		up.Refresher = slow
		b.Upstreams["github"] = up
		replicas = append(replicas, b)
	}
	ctx := t.Context()
	if err := replicas[0].Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatalf("Keep: %v", err)
	}
	f.advance(2 * time.Hour)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = replicas[1].Token(ctx, f.user.ID, "github") }) // holds the lease
	for slow.calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	// The first caller on replica 0 starts the shared refresh, which polls
	// while replica 1 refreshes; it hangs up soon.
	budget := store.WithBudget(ctx, 300*time.Millisecond)
	wg.Go(func() {
		first, cancel := context.WithTimeout(budget, 150*time.Millisecond)
		defer cancel()
		_, _ = replicas[0].Token(first, f.user.ID, "github")
	})
	time.Sleep(50 * time.Millisecond)
	var tok upstreamtokens.Token
	var err error
	wg.Go(func() { tok, err = replicas[0].Token(ctx, f.user.ID, "github") })
	// The first request spends its database time elsewhere.
	_, _ = f.st.UpdateUpstreamToken(budget, f.user.ID, "github", func(store.UpstreamToken) (*store.UpstreamToken, error) {
		time.Sleep(400 * time.Millisecond)
		return nil, nil
	})
	wg.Wait()
	if err != nil {
		t.Fatalf("a caller joining a shared refresh failed with the budget of the request that started it: %v", err)
	}
	if login, _ := f.githubLogin(t, tok.AccessToken); login != "octo" {
		t.Fatal("the token from the shared refresh does not work")
	}
	if n := slow.calls.Load(); n != 1 {
		t.Fatalf("the upstream was called %d times, want 1", n)
	}
}

// A caller that waited its whole time for another replica's refresh gets
// an unavailable error (503 temporarily_unavailable at /token and /verify,
// with Retry-After), not a server error: nothing is wrong but the timing.
func TestWaitForAnotherReplicaIsUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.NewMemory(), time.Hour)
	b := f.broker(t, nil)
	b.RefreshTimeout = 10 * time.Millisecond
	ctx := t.Context()
	if err := b.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
		t.Fatalf("Keep: %v", err)
	}
	f.advance(2 * time.Hour)
	// Another replica holds the refresh and never writes its result.
	now := f.now()
	if _, claimed, err := f.st.ClaimUpstreamRefresh(ctx, f.user.ID, "github", now, now.Add(time.Hour), now.Add(time.Hour)); err != nil || !claimed {
		t.Fatalf("the other replica's claim: claimed %v, %v", claimed, err)
	}
	_, err := b.Token(ctx, f.user.ID, "github")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Token while another replica holds the refresh: %v, want an unavailable error", err)
	}
}
