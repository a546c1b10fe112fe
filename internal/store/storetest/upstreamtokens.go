package storetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
)

func newUpstreamToken(u store.User, upstream string) store.UpstreamToken {
	return store.UpstreamToken{
		UserID:              u.ID,
		Upstream:            upstream,
		KeyID:               "k1",
		Sealed:              []byte("sealed-" + upstream + "-" + u.ID),
		ExpiresAt:           ptr(t0.Add(8 * time.Hour)),
		Refreshable:         true,
		Scopes:              []string{"repo", "read:org"},
		MembershipCheckedAt: ptr(t0),
		CreatedAt:           t0,
		UpdatedAt:           t0,
	}
}

func putUpstreamToken(t *testing.T, s store.Store, ut store.UpstreamToken) store.UpstreamToken {
	t.Helper()
	must(t, s.PutUpstreamToken(t.Context(), ut), "PutUpstreamToken")
	return ut
}

// One row per (user, upstream): created, read, replaced (keeping
// CreatedAt), listed in order and deleted idempotently; nothing for an
// unknown user.
func testUpstreamTokenCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	_, err := s.GetUpstreamToken(ctx, u.ID, "github")
	wantErr(t, err, store.ErrNotFound, "GetUpstreamToken before Put")

	gh := putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	got, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	equal(t, "GetUpstreamToken", got, gh)

	// A row with no expiry, no scopes, never checked.
	bare := newUpstreamToken(u, "corp")
	bare.ExpiresAt, bare.Scopes, bare.MembershipCheckedAt, bare.Refreshable = nil, nil, nil, false
	bare.CreatedAt, bare.UpdatedAt = t0.Add(time.Second), t0.Add(time.Second)
	putUpstreamToken(t, s, bare)
	got, err = s.GetUpstreamToken(ctx, u.ID, "corp")
	must(t, err, "GetUpstreamToken of the bare row")
	equal(t, "bare row", got, bare)

	// Replacing keeps CreatedAt and clears what the new row clears.
	repl := newUpstreamToken(u, "github")
	repl.KeyID, repl.Sealed = "k2", []byte("resealed")
	repl.DeadAt = ptr(t0.Add(time.Minute))
	repl.CreatedAt, repl.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
	putUpstreamToken(t, s, repl)
	got, err = s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken after replace")
	want := repl
	want.CreatedAt = t0
	equal(t, "replaced row", got, want)

	list, err := s.ListUpstreamTokens(ctx, u.ID)
	must(t, err, "ListUpstreamTokens")
	if len(list) != 2 || list[0].Upstream != "github" || list[1].Upstream != "corp" {
		t.Fatalf("ListUpstreamTokens: got %s, want github then corp", show(list))
	}
	other, err := s.ListUpstreamTokens(ctx, user(t, s).ID)
	must(t, err, "ListUpstreamTokens of another user")
	if len(other) != 0 {
		t.Fatalf("ListUpstreamTokens of another user: got %d rows", len(other))
	}

	must(t, s.DeleteUpstreamToken(ctx, u.ID, "github"), "DeleteUpstreamToken")
	must(t, s.DeleteUpstreamToken(ctx, u.ID, "github"), "DeleteUpstreamToken again")
	_, err = s.GetUpstreamToken(ctx, u.ID, "github")
	wantErr(t, err, store.ErrNotFound, "GetUpstreamToken after delete")
	_, err = s.GetUpstreamToken(ctx, u.ID, "corp")
	must(t, err, "GetUpstreamToken of the other upstream after delete")

	nobody := newUpstreamToken(newUser(), "github")
	nobody.UserID = "no-such-user"
	if err := s.PutUpstreamToken(ctx, nobody); err == nil {
		t.Fatal("PutUpstreamToken for an unknown user succeeded")
	}
	empty := newUpstreamToken(u, "github")
	empty.Sealed = nil
	if err := s.PutUpstreamToken(ctx, empty); err == nil {
		t.Fatal("PutUpstreamToken without ciphertext succeeded")
	}
}

// UpdateUpstreamToken stores what the callback returns, nothing on nil or
// error, and refuses to move a row.
func testUpdateUpstreamToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	_, err := s.UpdateUpstreamToken(ctx, u.ID, "github", func(store.UpstreamToken) (*store.UpstreamToken, error) {
		t.Fatal("update called for an absent row")
		return nil, nil
	})
	wantErr(t, err, store.ErrNotFound, "UpdateUpstreamToken of an absent row")

	orig := putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	got, err := s.UpdateUpstreamToken(ctx, u.ID, "github", func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
		equal(t, "row handed to update", cur, orig)
		return nil, nil
	})
	must(t, err, "UpdateUpstreamToken returning nil")
	equal(t, "row after a nil update", got, orig)

	boom := errors.New("upstream down")
	_, err = s.UpdateUpstreamToken(ctx, u.ID, "github", func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
		cur.Sealed = []byte("half-written")
		return &cur, boom
	})
	wantErr(t, err, boom, "UpdateUpstreamToken whose update fails")
	stored, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	equal(t, "row after a failed update", stored, orig)

	_, err = s.UpdateUpstreamToken(ctx, u.ID, "github", func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
		cur.Upstream = "elsewhere"
		return &cur, nil
	})
	if err == nil {
		t.Fatal("UpdateUpstreamToken moved the row to another upstream")
	}

	next := orig
	next.KeyID, next.Sealed = "k2", []byte("refreshed")
	next.ExpiresAt = ptr(t0.Add(16 * time.Hour))
	next.Scopes = []string{"repo"}
	next.CreatedAt, next.UpdatedAt = t0.Add(time.Hour), t0.Add(8*time.Hour) // CreatedAt is kept
	got, err = s.UpdateUpstreamToken(ctx, u.ID, "github", func(store.UpstreamToken) (*store.UpstreamToken, error) {
		return &next, nil
	})
	must(t, err, "UpdateUpstreamToken")
	want := next
	want.CreatedAt = t0
	equal(t, "row returned by UpdateUpstreamToken", got, want)
	stored, err = s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken after update")
	equal(t, "row stored by UpdateUpstreamToken", stored, want)
}

// Of N concurrent updates of one row, the callbacks run one at a time and
// each sees the previous one's result: exactly one finds the token stale
// and "refreshes" it (a single-use refresh token is spent once).
func testConcurrentUpdateUpstreamToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	var inside, overlaps, refreshes atomic.Int32
	results := make([]store.UpstreamToken, racers)
	errs := make([]error, racers)
	race(racers, func(i int) {
		results[i], errs[i] = s.UpdateUpstreamToken(ctx, u.ID, "github", func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer inside.Add(-1)
			if cur.KeyID == "fresh" {
				return nil, nil // another racer refreshed it: use its result
			}
			refreshes.Add(1)
			time.Sleep(5 * time.Millisecond) // the upstream call, during which others must wait
			cur.KeyID, cur.Sealed = "fresh", []byte(fmt.Sprintf("refreshed by %d", i))
			return &cur, nil
		})
	})
	for i, err := range errs {
		must(t, err, fmt.Sprintf("racer %d", i))
	}
	if n := refreshes.Load(); n != 1 {
		t.Fatalf("%d racers refreshed, want exactly 1", n)
	}
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("update callbacks overlapped %d times; the row must be held exclusively", n)
	}
	for i := range results {
		if string(results[i].Sealed) != string(results[0].Sealed) || results[i].KeyID != "fresh" {
			t.Fatalf("racer %d got %q, racer 0 %q: all must get the one refreshed row", i, results[i].Sealed, results[0].Sealed)
		}
	}
}

// ClaimMembershipCheck claims a due check once, also under a race, and
// never for a dead or absent row.
func testClaimMembershipCheck(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	const every = 15 * time.Minute
	ok, err := s.ClaimMembershipCheck(ctx, u.ID, "github", t0, every)
	must(t, err, "ClaimMembershipCheck of an absent row")
	if ok {
		t.Fatal("claimed a check of an absent row")
	}
	ut := putUpstreamToken(t, s, newUpstreamToken(u, "github")) // checked at t0
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{t0.Add(every - us), false},
		{t0.Add(every), true},
		{t0.Add(every + time.Minute), false}, // claimed at t0+every
	} {
		ok, err := s.ClaimMembershipCheck(ctx, u.ID, "github", c.at, every)
		must(t, err, "ClaimMembershipCheck")
		if ok != c.want {
			t.Fatalf("ClaimMembershipCheck at t0+%v: got %v, want %v", c.at.Sub(t0), ok, c.want)
		}
	}
	got, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	timeEqual(t, "MembershipCheckedAt after a claim", got.MembershipCheckedAt, t0.Add(every))

	later := t0.Add(10 * every)
	wins := make([]bool, racers)
	race(racers, func(i int) {
		var err error
		wins[i], err = s.ClaimMembershipCheck(ctx, u.ID, "github", later, every)
		if err != nil {
			t.Errorf("racer %d: %v", i, err)
		}
	})
	n := 0
	for _, w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d racers claimed one due check, want exactly 1", n)
	}

	ut.DeadAt = ptr(t0)
	ut.MembershipCheckedAt = nil
	putUpstreamToken(t, s, ut)
	ok, err = s.ClaimMembershipCheck(ctx, u.ID, "github", later.Add(time.Hour), every)
	must(t, err, "ClaimMembershipCheck of a dead row")
	if ok {
		t.Fatal("claimed a check of a dead upstream grant")
	}
}

// DeferMembershipCheck moves the time of the last check and nothing else:
// the refresh lease and RefreshUnsettled of a refresh lost meanwhile stay
// (UpdateUpstreamToken would clear them). Not when checked since, nor for
// an absent row.
func testDeferMembershipCheck(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	const every = 15 * time.Minute
	ok, err := s.DeferMembershipCheck(ctx, u.ID, "github", t0, t0)
	must(t, err, "DeferMembershipCheck of an absent row")
	if ok {
		t.Fatal("deferred the check of an absent row")
	}
	putUpstreamToken(t, s, newUpstreamToken(u, "github")) // checked at t0
	_, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", t0, t0.Add(9*time.Hour), t0.Add(time.Minute))
	must(t, err, "ClaimUpstreamRefresh")
	if !claimed {
		t.Fatal("first ClaimUpstreamRefresh did not claim")
	}
	// The lease ran out without a result: the next claim is unsettled.
	lease := t0.Add(3 * time.Minute)
	_, claimed, err = s.ClaimUpstreamRefresh(ctx, u.ID, "github", t0.Add(2*time.Minute), t0.Add(9*time.Hour), lease)
	must(t, err, "ClaimUpstreamRefresh after the lease ran out")
	if !claimed {
		t.Fatal("ClaimUpstreamRefresh after the lease ran out did not claim")
	}
	now := t0.Add(time.Hour)
	ok, err = s.ClaimMembershipCheck(ctx, u.ID, "github", now, every)
	must(t, err, "ClaimMembershipCheck")
	if !ok {
		t.Fatal("ClaimMembershipCheck of a due check did not claim")
	}
	at := now.Add(time.Minute - every)
	ok, err = s.DeferMembershipCheck(ctx, u.ID, "github", now, at)
	must(t, err, "DeferMembershipCheck")
	if !ok {
		t.Fatal("DeferMembershipCheck of the check just claimed did nothing")
	}
	got, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	timeEqual(t, "MembershipCheckedAt after a deferral", got.MembershipCheckedAt, at)
	timeEqual(t, "RefreshLeaseUntil after a deferral", got.RefreshLeaseUntil, lease)
	if !got.RefreshUnsettled {
		t.Fatal("DeferMembershipCheck cleared RefreshUnsettled")
	}

	// Another replica checked after the claim at now: its time stays.
	later := now.Add(time.Hour)
	ok, err = s.ClaimMembershipCheck(ctx, u.ID, "github", later, every)
	must(t, err, "ClaimMembershipCheck")
	if !ok {
		t.Fatal("ClaimMembershipCheck of a due check did not claim")
	}
	ok, err = s.DeferMembershipCheck(ctx, u.ID, "github", now, at)
	must(t, err, "DeferMembershipCheck after a later check")
	if ok {
		t.Fatal("DeferMembershipCheck moved back the time of a later check")
	}
	got, err = s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	timeEqual(t, "MembershipCheckedAt after a refused deferral", got.MembershipCheckedAt, later)
}

// DisableUser deletes the user's upstream tokens (and nobody else's).
func testDisableUserDeletesUpstreamTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, other := user(t, s), user(t, s)
	putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	putUpstreamToken(t, s, newUpstreamToken(u, "corp"))
	putUpstreamToken(t, s, newUpstreamToken(other, "github"))
	_, err := s.DisableUser(ctx, u.ID, t0.Add(time.Minute))
	must(t, err, "DisableUser")
	list, err := s.ListUpstreamTokens(ctx, u.ID)
	must(t, err, "ListUpstreamTokens of the disabled user")
	if len(list) != 0 {
		t.Fatalf("a disabled user keeps %d upstream tokens", len(list))
	}
	_, err = s.GetUpstreamToken(ctx, other.ID, "github")
	must(t, err, "GetUpstreamToken of another user after DisableUser")
}

// DeleteUpstreamTokensExcept deletes, for every user, the rows of the
// upstreams not kept whose last write (UpdatedAt, or MembershipCheckedAt
// when later) is before the cutoff, and only those: a fresh row of an
// upstream another replica keeps survives, a kept upstream's rows always.
func testDeleteUpstreamTokensExcept(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, v, w := user(t, s), user(t, s), user(t, s)
	cutoff := t0.Add(7 * day)
	written := func(r store.UpstreamToken, updated time.Time, checked *time.Time) store.UpstreamToken {
		r.UpdatedAt, r.MembershipCheckedAt = updated, checked
		return r
	}
	rows := []struct {
		row  store.UpstreamToken
		kept bool
	}{
		{written(newUpstreamToken(u, "github"), t0, nil), true},                           // kept upstream, old
		{written(newUpstreamToken(v, "corp"), t0, ptr(t0)), true},                         // kept upstream, old
		{written(newUpstreamToken(u, "old"), t0, ptr(t0)), false},                         // old
		{written(newUpstreamToken(w, "gone"), cutoff.Add(-time.Microsecond), nil), false}, // just old enough
		{written(newUpstreamToken(v, "old"), cutoff, nil), true},                          // written at the cutoff
		{written(newUpstreamToken(w, "old"), t0, ptr(cutoff.Add(time.Hour))), true},       // checked since
		{written(newUpstreamToken(u, "new"), cutoff.Add(time.Minute), ptr(t0)), true},     // written since
	}
	for _, r := range rows {
		putUpstreamToken(t, s, r.row)
	}
	n, err := s.DeleteUpstreamTokensExcept(ctx, []string{"github", "corp"}, cutoff)
	must(t, err, "DeleteUpstreamTokensExcept")
	if n != 2 {
		t.Fatalf("deleted %d rows, want the 2 not kept and last written before the cutoff", n)
	}
	for _, r := range rows {
		_, err := s.GetUpstreamToken(ctx, r.row.UserID, r.row.Upstream)
		what := fmt.Sprintf("row %s (updated %s, checked %v)", r.row.Upstream, r.row.UpdatedAt, r.row.MembershipCheckedAt)
		if r.kept {
			must(t, err, "left "+what)
		} else {
			wantErr(t, err, store.ErrNotFound, "deleted "+what)
		}
	}
	// The same upstreams kept, a cutoff after every write: the 3 rows not
	// kept go, the kept upstreams' rows never do.
	n, err = s.DeleteUpstreamTokensExcept(ctx, []string{"github", "corp"}, cutoff.Add(day))
	must(t, err, "DeleteUpstreamTokensExcept(later)")
	if n != 3 {
		t.Fatalf("a later cutoff deleted %d rows, want the 3 left not kept", n)
	}
	for _, id := range []string{u.ID, v.ID} {
		list, err := s.ListUpstreamTokens(ctx, id)
		must(t, err, "ListUpstreamTokens")
		if len(list) != 1 {
			t.Fatalf("user %s has %d rows left, want the kept upstream's 1", id, len(list))
		}
	}
	n, err = s.DeleteUpstreamTokensExcept(ctx, nil, cutoff.Add(day))
	must(t, err, "DeleteUpstreamTokensExcept(nil)")
	if n != 2 {
		t.Fatalf("keeping nothing deleted %d rows, want the 2 left", n)
	}
}

// Purge deletes upstream tokens that can no longer be used: dead, or
// expired without a refresh token. Expired refreshable ones and ones
// without expiry stay.
func testPurgeUpstreamTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	now := t0.Add(day)
	rows := map[string]func(*store.UpstreamToken){
		"dead":              func(r *store.UpstreamToken) { r.DeadAt = ptr(t0) },
		"expired-final":     func(r *store.UpstreamToken) { r.Refreshable = false },
		"expired-refresh":   func(*store.UpstreamToken) {},
		"no-expiry-no-rt":   func(r *store.UpstreamToken) { r.ExpiresAt, r.Refreshable = nil, false },
		"live-final":        func(r *store.UpstreamToken) { r.ExpiresAt, r.Refreshable = ptr(now.Add(time.Hour)), false },
		"expires-now-no-rt": func(r *store.UpstreamToken) { r.ExpiresAt, r.Refreshable = ptr(now), false },
	}
	for name, edit := range rows {
		r := newUpstreamToken(u, name)
		edit(&r)
		putUpstreamToken(t, s, r)
	}
	res, err := s.Purge(ctx, now)
	must(t, err, "Purge")
	if res["upstream_tokens"] != 3 {
		t.Fatalf("Purge counted %d upstream tokens, want 3", res["upstream_tokens"])
	}
	for name := range rows {
		_, err := s.GetUpstreamToken(ctx, u.ID, name)
		gone := name == "dead" || name == "expired-final" || name == "expires-now-no-rt"
		if gone {
			wantErr(t, err, store.ErrNotFound, "purged row "+name)
		} else {
			must(t, err, "kept row "+name)
		}
	}
}

// The refresh lease: claimed once (also under a race) while the token is
// due and no lease is held; finished only by its holder; a failed attempt
// backs off and leaves the next claim unsettled; a sign-in (Put) clears
// it; never claimed for a fresh, dead or absent row.
func testUpstreamRefreshLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	_, _, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", t0, t0, t0.Add(time.Minute))
	wantErr(t, err, store.ErrNotFound, "ClaimUpstreamRefresh of an absent row")
	row := putUpstreamToken(t, s, newUpstreamToken(u, "github")) // expires at t0+8h
	_, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", t0, t0.Add(time.Hour), t0.Add(time.Minute))
	must(t, err, "ClaimUpstreamRefresh of a fresh token")
	if claimed {
		t.Fatal("claimed the refresh of a token that is not due")
	}

	now := t0.Add(9 * time.Hour)
	lease := now.Add(15 * time.Second)
	var wins atomic.Int32
	race(racers, func(int) {
		_, ok, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", now, now.Add(time.Minute), lease)
		must(t, err, "racing ClaimUpstreamRefresh")
		if ok {
			wins.Add(1)
		}
	})
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d racers claimed the refresh lease, want 1", n)
	}
	got, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	if got.RefreshLeaseUntil == nil || !got.RefreshLeaseUntil.Equal(lease) || got.RefreshUnsettled {
		t.Fatalf("after a first claim: lease %v unsettled %v, want %v false", got.RefreshLeaseUntil, got.RefreshUnsettled, lease)
	}
	ok, err := s.FinishUpstreamRefresh(ctx, u.ID, "github", lease.Add(time.Second), nil, now)
	must(t, err, "FinishUpstreamRefresh with another lease")
	if ok {
		t.Fatal("FinishUpstreamRefresh succeeded with a lease the row does not hold")
	}
	// A failed attempt backs off: the lease moves to retryAt, and the
	// next claim (after it) is unsettled.
	retry := now.Add(5 * time.Second)
	ok, err = s.FinishUpstreamRefresh(ctx, u.ID, "github", lease, nil, retry)
	must(t, err, "FinishUpstreamRefresh (failed)")
	if !ok {
		t.Fatal("the lease holder could not back off")
	}
	if _, claimed, _ := s.ClaimUpstreamRefresh(ctx, u.ID, "github", now.Add(time.Second), now.Add(time.Minute), lease); claimed {
		t.Fatal("claimed during the back-off")
	}
	lease2 := now.Add(30 * time.Second)
	got, claimed, err = s.ClaimUpstreamRefresh(ctx, u.ID, "github", retry, now.Add(time.Minute), lease2)
	must(t, err, "ClaimUpstreamRefresh after the back-off")
	if !claimed || !got.RefreshUnsettled {
		t.Fatalf("claim after a failed attempt: claimed %v unsettled %v, want true true", claimed, got.RefreshUnsettled)
	}
	next := row
	next.KeyID, next.Sealed, next.ExpiresAt, next.UpdatedAt = "k2", []byte("refreshed"), ptr(now.Add(8*time.Hour)), now
	ok, err = s.FinishUpstreamRefresh(ctx, u.ID, "github", lease2, &next, time.Time{})
	must(t, err, "FinishUpstreamRefresh")
	if !ok {
		t.Fatal("the lease holder could not write its result")
	}
	got, err = s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	if got.KeyID != "k2" || string(got.Sealed) != "refreshed" || got.RefreshLeaseUntil != nil || got.RefreshUnsettled ||
		!got.CreatedAt.Equal(row.CreatedAt) || got.MembershipCheckedAt == nil || !got.MembershipCheckedAt.Equal(t0) {
		t.Fatalf("after FinishUpstreamRefresh: %+v", got)
	}
	// A sign-in replaces the row mid-refresh: the lease is gone, the late
	// result is not written over it.
	later := now.Add(9 * time.Hour)
	_, claimed, err = s.ClaimUpstreamRefresh(ctx, u.ID, "github", later, later.Add(time.Minute), later.Add(time.Minute))
	must(t, err, "ClaimUpstreamRefresh")
	if !claimed {
		t.Fatal("could not claim a due refresh")
	}
	putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	ok, err = s.FinishUpstreamRefresh(ctx, u.ID, "github", later.Add(time.Minute), &next, time.Time{})
	must(t, err, "FinishUpstreamRefresh after a sign-in")
	if ok {
		t.Fatal("a refresh's result overwrote a newer sign-in")
	}
	// Dead rows are never claimed.
	dead := newUpstreamToken(u, "github")
	dead.DeadAt = ptr(t0)
	putUpstreamToken(t, s, dead)
	if _, claimed, _ := s.ClaimUpstreamRefresh(ctx, u.ID, "github", later, later.Add(time.Minute), later.Add(time.Minute)); claimed {
		t.Fatal("claimed the refresh of a dead grant")
	}
}

// testSettleUpstreamRefresh: the lease holder ends its lease with nothing
// else written: with another lease nothing changes; with its own the
// lease and RefreshUnsettled are cleared, the ciphertext as the row holds
// it (a reseal done meanwhile stays), and the next claim is settled.
func testSettleUpstreamRefresh(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	row := putUpstreamToken(t, s, newUpstreamToken(u, "github")) // expires at t0+8h
	now := t0.Add(9 * time.Hour)
	lease := now.Add(15 * time.Second)
	// A claim after a lost attempt: unsettled, which settling clears.
	if _, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", now, now.Add(time.Minute), now.Add(time.Second)); err != nil || !claimed {
		t.Fatalf("ClaimUpstreamRefresh = %v, %v; want claimed", claimed, err)
	}
	got, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", now.Add(2*time.Second), now.Add(time.Minute), lease)
	if err != nil || !claimed || !got.RefreshUnsettled {
		t.Fatalf("ClaimUpstreamRefresh after a lost attempt = %+v, %v, %v; want claimed, unsettled", got, claimed, err)
	}
	n, err := s.ResealUpstreamTokens(ctx, []store.UpstreamTokenReseal{{UserID: u.ID, Upstream: "github",
		OldKeyID: row.KeyID, OldSealed: row.Sealed, KeyID: "k-new", Sealed: []byte("resealed")}})
	if err != nil || n != 1 {
		t.Fatalf("ResealUpstreamTokens during the lease = %d, %v", n, err)
	}
	ok, err := s.SettleUpstreamRefresh(ctx, u.ID, "github", lease.Add(time.Second))
	must(t, err, "SettleUpstreamRefresh with another lease")
	if ok {
		t.Fatal("SettleUpstreamRefresh succeeded with a lease the row does not hold")
	}
	ok, err = s.SettleUpstreamRefresh(ctx, u.ID, "github", lease)
	must(t, err, "SettleUpstreamRefresh")
	if !ok {
		t.Fatal("the lease holder could not settle its lease")
	}
	got, err = s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	if got.RefreshLeaseUntil != nil || got.RefreshUnsettled || got.DeadAt != nil || got.KeyID != "k-new" || string(got.Sealed) != "resealed" ||
		!got.UpdatedAt.Equal(row.UpdatedAt) || got.ExpiresAt == nil || !got.ExpiresAt.Equal(*row.ExpiresAt) {
		t.Fatalf("after SettleUpstreamRefresh: %+v; want the lease ended, settled, the resealed row otherwise unchanged", got)
	}
	got, claimed, err = s.ClaimUpstreamRefresh(ctx, u.ID, "github", now.Add(3*time.Second), now.Add(time.Minute), lease.Add(time.Minute))
	if err != nil || !claimed || got.RefreshUnsettled {
		t.Fatalf("ClaimUpstreamRefresh after settling = %v unsettled %v, %v; want claimed at once, settled", claimed, got.RefreshUnsettled, err)
	}
	ok, err = s.SettleUpstreamRefresh(ctx, u.ID, "google", lease)
	must(t, err, "SettleUpstreamRefresh of an absent row")
	if ok {
		t.Fatal("SettleUpstreamRefresh of an absent row reported success")
	}
}
