package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
)

// retryWindow is the RotateRefreshToken retry window these cases pass.
const retryWindow = time.Minute

// unusedOf returns which of the given refresh tokens are still unused.
func unusedOf(t *testing.T, s store.Store, rts ...store.RefreshToken) []string {
	t.Helper()
	var unused []string
	for _, rt := range rts {
		got, err := s.GetRefreshToken(t.Context(), rt.Digest)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		must(t, err, "GetRefreshToken")
		if got.UsedAt == nil {
			unused = append(unused, rt.Digest)
		}
	}
	return unused
}

func wantRevoked(t *testing.T, s store.Store, g store.Grant, at time.Time, what string) {
	t.Helper()
	got, err := s.GetGrant(t.Context(), g.ID)
	must(t, err, "GetGrant")
	timeEqual(t, what, got.RevokedAt, at)
}

// A spent token presented again by its client within the window, before
// any successor is used, gets another successor; the first successor used
// supersedes the others, after which the family has one live token again
// and presenting the retried token or a superseded sibling is reuse.
func testRotateRefreshTokenRetry(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	g, rt1 := grant(t, s, c, u)

	now1 := t0.Add(time.Hour)
	rt2 := nextRefreshToken(rt1, now1)
	_, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, rt2, retryWindow)
	must(t, err, "RotateRefreshToken rt1")

	// The response was lost; the client retries with rt1.
	retryAt := now1.Add(retryWindow - time.Second)
	rt2b := nextRefreshToken(rt1, retryAt)
	gotG, err := s.RotateRefreshToken(ctx, rt1.Digest, retryAt, rt2b, retryWindow)
	must(t, err, "RotateRefreshToken rt1 again within the window")
	want := g
	want.LastUsedAt = retryAt
	equal(t, "grant returned by the retry", gotG, want)
	got, err := s.GetRefreshToken(ctx, rt1.Digest)
	must(t, err, "GetRefreshToken rt1")
	timeEqual(t, "UsedAt of rt1 after the retry (the first use)", got.UsedAt, now1)
	got, err = s.GetRefreshToken(ctx, rt2b.Digest)
	must(t, err, "GetRefreshToken rt2b")
	equal(t, "rt2b as inserted by the retry", got, rt2b)
	if n := len(unusedOf(t, s, rt1, rt2, rt2b)); n != 2 {
		t.Fatalf("after the retry %d of rt2, rt2b are unused, want both", n)
	}

	// rt2b is used first: rt2 is superseded, the chain goes on from rt2b.
	now2 := retryAt.Add(time.Second)
	rt3 := nextRefreshToken(rt2b, now2)
	_, err = s.RotateRefreshToken(ctx, rt2b.Digest, now2, rt3, retryWindow)
	must(t, err, "RotateRefreshToken rt2b")
	if live := unusedOf(t, s, rt1, rt2, rt2b, rt3); len(live) != 1 || live[0] != rt3.Digest {
		t.Fatalf("live tokens after rt2b was used: %v, want only rt3 %s", live, rt3.Digest)
	}
	got, err = s.GetRefreshToken(ctx, rt2.Digest)
	must(t, err, "GetRefreshToken rt2")
	timeEqual(t, "UsedAt of the superseded rt2", got.UsedAt, now2)

	// rt1 again, still within its window: the chain moved on, so it is
	// reuse and the family dies.
	now3 := now2.Add(time.Second)
	rtX := nextRefreshToken(rt1, now3)
	gotG, err = s.RotateRefreshToken(ctx, rt1.Digest, now3, rtX, retryWindow)
	wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of rt1 after its successor was used")
	timeEqual(t, "RevokedAt of the grant returned with ErrAlreadyUsed", gotG.RevokedAt, now3)
	wantRevoked(t, s, g, now3, "RevokedAt after replay of rt1")
	_, err = s.GetRefreshToken(ctx, rtX.Digest)
	wantErr(t, err, store.ErrNotFound, "successor of a replayed token")
	if live := unusedOf(t, s, rt3); len(live) != 0 {
		t.Fatal("rt3 outlived the revocation of its family")
	}

	t.Run("superseded sibling", func(t *testing.T) {
		g, rt1 := grant(t, s, c, u)
		rt2 := nextRefreshToken(rt1, now1)
		_, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, rt2, retryWindow)
		must(t, err, "RotateRefreshToken rt1")
		rt2b := nextRefreshToken(rt1, now1)
		_, err = s.RotateRefreshToken(ctx, rt1.Digest, now1, rt2b, retryWindow)
		must(t, err, "RotateRefreshToken rt1 again")
		_, err = s.RotateRefreshToken(ctx, rt2.Digest, now1, nextRefreshToken(rt2, now1), retryWindow)
		must(t, err, "RotateRefreshToken rt2")
		// rt2b was never rotated: it was superseded, and presenting it now,
		// however soon, is reuse.
		_, err = s.RotateRefreshToken(ctx, rt2b.Digest, now1, nextRefreshToken(rt2b, now1), retryWindow)
		wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of a superseded sibling")
		wantRevoked(t, s, g, now1, "RevokedAt after a superseded sibling was presented")
	})

	t.Run("window measured from the first use", func(t *testing.T) {
		g, rt1 := grant(t, s, c, u)
		_, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, nextRefreshToken(rt1, now1), retryWindow)
		must(t, err, "RotateRefreshToken rt1")
		late := now1.Add(retryWindow / 2)
		_, err = s.RotateRefreshToken(ctx, rt1.Digest, late, nextRefreshToken(rt1, late), retryWindow)
		must(t, err, "RotateRefreshToken rt1 within the window")
		end := now1.Add(retryWindow)
		_, err = s.RotateRefreshToken(ctx, rt1.Digest, end, nextRefreshToken(rt1, end), retryWindow)
		wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of rt1 at the end of its window")
		wantRevoked(t, s, g, end, "RevokedAt after a retry outside the window")
	})

	t.Run("another client", func(t *testing.T) {
		g, rt1 := grant(t, s, c, u)
		_, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, nextRefreshToken(rt1, now1), retryWindow)
		must(t, err, "RotateRefreshToken rt1")
		foreign := nextRefreshToken(rt1, now1)
		foreign.ClientID = client(t, s).ID
		_, err = s.RotateRefreshToken(ctx, rt1.Digest, now1, foreign, retryWindow)
		wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of a spent token for another client")
		wantRevoked(t, s, g, now1, "RevokedAt after another client presented a spent token")
		_, err = s.GetRefreshToken(ctx, foreign.Digest)
		wantErr(t, err, store.ErrNotFound, "the other client's successor")
	})

	t.Run("no window", func(t *testing.T) {
		g, rt1 := grant(t, s, c, u)
		_, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, nextRefreshToken(rt1, now1), 0)
		must(t, err, "RotateRefreshToken rt1")
		_, err = s.RotateRefreshToken(ctx, rt1.Digest, now1, nextRefreshToken(rt1, now1), 0)
		wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of a spent token with no window")
		wantRevoked(t, s, g, now1, "RevokedAt after a second use with no window")
	})

	t.Run("revoked token", func(t *testing.T) {
		// A token spent by a revocation was never rotated: no retry, and
		// the grant is revoked anyway.
		g, rt1 := grant(t, s, c, u)
		must(t, s.RevokeGrant(ctx, g.ID, now1), "RevokeGrant")
		_, err := s.RotateRefreshToken(ctx, rt1.Digest, now1, nextRefreshToken(rt1, now1), retryWindow)
		wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of a token of a revoked grant")
	})
}

// N concurrent rotations of one token by its client within the window all
// succeed (one rotation and N-1 retries); then whichever successor is used
// first carries the chain on, alone.
func testConcurrentRotateRefreshTokenRetry(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	g, rt := grant(t, s, c, u)
	now := t0.Add(time.Hour)

	next := make([]store.RefreshToken, racers)
	for i := range next {
		next[i] = nextRefreshToken(rt, now)
	}
	errs := make([]error, racers)
	race(racers, func(i int) {
		_, errs[i] = s.RotateRefreshToken(ctx, rt.Digest, now, next[i], retryWindow)
	})
	for i, err := range errs {
		must(t, err, fmt.Sprintf("racer %d rotating within the retry window", i))
	}
	if live := unusedOf(t, s, next...); len(live) != racers {
		t.Fatalf("%d of %d successors unused after the race, want all", len(live), racers)
	}

	// The last racer's successor is the one its client uses next.
	later := now.Add(time.Second)
	chosen := next[racers-1]
	after := nextRefreshToken(chosen, later)
	_, err := s.RotateRefreshToken(ctx, chosen.Digest, later, after, retryWindow)
	must(t, err, "RotateRefreshToken of one successor")
	if live := unusedOf(t, s, append(next, after)...); len(live) != 1 || live[0] != after.Digest {
		t.Fatalf("live tokens after one successor was used: %d, want only its successor", len(live))
	}
	got, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	if got.RevokedAt != nil {
		t.Fatal("the grant was revoked by concurrent refreshes within the window")
	}
	// The chain goes on.
	_, err = s.RotateRefreshToken(ctx, after.Digest, later, nextRefreshToken(after, later), retryWindow)
	must(t, err, "RotateRefreshToken after the siblings were superseded")
	// Another successor of the race, used now, is reuse.
	_, err = s.RotateRefreshToken(ctx, next[0].Digest, later, nextRefreshToken(next[0], later), retryWindow)
	wantErr(t, err, store.ErrAlreadyUsed, "RotateRefreshToken of a superseded successor")
	wantRevoked(t, s, g, later, "RevokedAt after a superseded successor was used")
}

// A retry of a spent token racing the rotation of its successor: either
// the rotation comes first (the chain moved on: the retry is reuse and
// the family is revoked) or the retry does (the rotation supersedes the
// retry's successor). Either way no more than one token of the family is
// live afterwards, which needs the rotation to see a successor the retry
// committed while the rotation waited for the grant.
func testConcurrentRetryAndRotate(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	now := t0.Add(time.Hour)
	orders := map[string]int{}
	for round := range 40 {
		g, rt1 := grant(t, s, c, u)
		rt2 := nextRefreshToken(rt1, now)
		_, err := s.RotateRefreshToken(ctx, rt1.Digest, now, rt2, retryWindow)
		must(t, err, "RotateRefreshToken rt1")

		retried, rotated := nextRefreshToken(rt1, now), nextRefreshToken(rt2, now)
		var retryErr, rotateErr error
		race(2, func(i int) {
			if i == 0 {
				_, retryErr = s.RotateRefreshToken(ctx, rt1.Digest, now, retried, retryWindow)
			} else {
				_, rotateErr = s.RotateRefreshToken(ctx, rt2.Digest, now, rotated, retryWindow)
			}
		})
		what := fmt.Sprintf("round %d: ", round)
		must(t, rotateErr, what+"RotateRefreshToken of rt2 racing a retry of rt1")
		gotG, err := s.GetGrant(ctx, g.ID)
		must(t, err, "GetGrant")
		live := unusedOf(t, s, rt1, rt2, retried, rotated)
		switch {
		case errors.Is(retryErr, store.ErrAlreadyUsed):
			orders["rotation first"]++
			if gotG.RevokedAt == nil || len(live) != 0 {
				t.Fatalf("%sretry refused as reuse, but the grant is not revoked or %d tokens live", what, len(live))
			}
		case retryErr == nil:
			orders["retry first"]++
			if gotG.RevokedAt != nil || len(live) != 1 || live[0] != rotated.Digest {
				t.Fatalf("%sretry then rotation: grant revoked %v, live tokens %d, want only rt2's successor",
					what, gotG.RevokedAt != nil, len(live))
			}
		default:
			t.Fatalf("%sretry of rt1 racing the rotation of rt2: %v", what, retryErr)
		}
	}
	t.Logf("orders seen: %v", orders)
}
