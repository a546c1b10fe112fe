package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
)

// ListUpstreamTokensAfter pages through every user's rows: however the
// pages are cut, each row comes exactly once, and a page starts after the
// row the previous one ended with.
func testListUpstreamTokensAfter(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.ListUpstreamTokensAfter(ctx, "", "", 0)
	if err == nil {
		t.Fatal("ListUpstreamTokensAfter with limit 0: no error")
	}
	page, err := s.ListUpstreamTokensAfter(ctx, "", "", 10)
	must(t, err, "ListUpstreamTokensAfter of an empty store")
	if len(page) != 0 {
		t.Fatalf("ListUpstreamTokensAfter of an empty store: %s", show(page))
	}
	want := map[string]store.UpstreamToken{}
	for range 3 {
		u := user(t, s)
		for _, up := range []string{"github", "corp", "google-2"} {
			r := putUpstreamToken(t, s, newUpstreamToken(u, up))
			want[u.ID+"/"+up] = r
		}
	}
	for _, limit := range []int{1, 2, 4, len(want), 100} {
		seen := map[string]bool{}
		afterUser, afterUpstream := "", ""
		for pages := 0; ; pages++ {
			if pages > len(want) {
				t.Fatalf("limit %d: more pages than rows", limit)
			}
			page, err := s.ListUpstreamTokensAfter(ctx, afterUser, afterUpstream, limit)
			must(t, err, "ListUpstreamTokensAfter")
			if len(page) > limit {
				t.Fatalf("limit %d: a page of %d rows", limit, len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				k := r.UserID + "/" + r.Upstream
				w, ok := want[k]
				if !ok {
					t.Fatalf("limit %d: unknown row %s", limit, k)
				}
				if seen[k] {
					t.Fatalf("limit %d: row %s on two pages", limit, k)
				}
				seen[k] = true
				equal(t, "row "+k, r, w)
			}
			last := page[len(page)-1]
			afterUser, afterUpstream = last.UserID, last.Upstream
		}
		if len(seen) != len(want) {
			t.Fatalf("limit %d: %d of %d rows listed", limit, len(seen), len(want))
		}
	}
}

// ResealUpstreamTokens replaces key id and ciphertext, and nothing else,
// where the row still holds the old ones: a row rewritten meanwhile (a
// refresh, a sign-in) keeps its new ciphertext; a refresh holding the
// lease finishes as if nothing happened. A malformed reseal writes nothing.
func testResealUpstreamTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, v := user(t, s), user(t, s)
	a := putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	b := putUpstreamToken(t, s, newUpstreamToken(v, "github"))
	c := putUpstreamToken(t, s, newUpstreamToken(v, "corp"))
	reseal := func(r store.UpstreamToken) store.UpstreamTokenReseal {
		return store.UpstreamTokenReseal{UserID: r.UserID, Upstream: r.Upstream, OldKeyID: r.KeyID, OldSealed: r.Sealed,
			KeyID: "k2", Sealed: []byte("resealed-" + r.Upstream + "-" + r.UserID)}
	}

	// a holds a refresh lease, left as it is.
	lease := t0.Add(time.Minute)
	_, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", t0, t0.Add(9*time.Hour), lease)
	must(t, err, "ClaimUpstreamRefresh")
	if !claimed {
		t.Fatal("ClaimUpstreamRefresh did not claim")
	}
	// c was rewritten after it was read: its reseal is stale.
	stale := reseal(c)
	fresh := newUpstreamToken(v, "corp")
	fresh.KeyID, fresh.Sealed, fresh.UpdatedAt = "k2", []byte("fresh from a sign-in"), t0.Add(time.Hour)
	putUpstreamToken(t, s, fresh)

	absent := store.UpstreamTokenReseal{UserID: user(t, s).ID, Upstream: "github", OldKeyID: "k1", OldSealed: []byte("x"), KeyID: "k2", Sealed: []byte("y")}
	bad := reseal(b)
	bad.KeyID = ""
	n, err := s.ResealUpstreamTokens(ctx, []store.UpstreamTokenReseal{reseal(a), bad})
	if err == nil {
		t.Fatal("ResealUpstreamTokens with an empty KeyID: no error")
	}
	if n != 0 {
		t.Fatalf("a refused batch wrote %d rows", n)
	}
	got, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	if got.KeyID != a.KeyID {
		t.Fatalf("a refused batch resealed a row: %s", show(got))
	}

	n, err = s.ResealUpstreamTokens(ctx, []store.UpstreamTokenReseal{reseal(a), reseal(b), stale, absent})
	must(t, err, "ResealUpstreamTokens")
	if n != 2 {
		t.Fatalf("ResealUpstreamTokens wrote %d rows, want 2 (a stale and an absent row are skipped)", n)
	}
	for _, w := range []struct {
		row  store.UpstreamToken
		what string
	}{{a, "leased row"}, {b, "row"}} {
		want := w.row
		want.KeyID, want.Sealed = "k2", reseal(w.row).Sealed
		if w.row.UserID == u.ID {
			want.RefreshLeaseUntil = ptr(lease)
		}
		got, err := s.GetUpstreamToken(ctx, w.row.UserID, w.row.Upstream)
		must(t, err, "GetUpstreamToken")
		equal(t, "resealed "+w.what, got, want)
	}
	got, err = s.GetUpstreamToken(ctx, v.ID, "corp")
	must(t, err, "GetUpstreamToken")
	equal(t, "row rewritten before its reseal", got, fresh)
	if _, err := s.GetUpstreamToken(ctx, absent.UserID, "github"); err == nil {
		t.Fatal("ResealUpstreamTokens created an absent row")
	}

	// The same reseal again: the row no longer holds the old ciphertext.
	n, err = s.ResealUpstreamTokens(ctx, []store.UpstreamTokenReseal{reseal(a)})
	must(t, err, "ResealUpstreamTokens again")
	if n != 0 {
		t.Fatalf("a repeated reseal wrote %d rows", n)
	}
	n, err = s.ResealUpstreamTokens(ctx, nil)
	if err != nil || n != 0 {
		t.Fatalf("ResealUpstreamTokens(nil): %d, %v", n, err)
	}

	// The refresh that held the lease still writes its result.
	next := newUpstreamToken(u, "github")
	next.KeyID, next.Sealed, next.UpdatedAt = "k2", []byte("refreshed"), t0.Add(2*time.Minute)
	ok, err := s.FinishUpstreamRefresh(ctx, u.ID, "github", lease, &next, t0.Add(3*time.Minute))
	must(t, err, "FinishUpstreamRefresh")
	if !ok {
		t.Fatal("a reseal took the refresh's lease")
	}
	got, err = s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	if string(got.Sealed) != "refreshed" {
		t.Fatalf("after the refresh: %s", show(got))
	}
}

// A reseal racing with UpdateUpstreamToken (a sign-in or refresh writing
// new tokens) never brings the old tokens back: whichever goes first, the
// row ends with the update's ciphertext.
func testConcurrentResealAndUpdateUpstreamToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range 10 {
		u := user(t, s)
		old := putUpstreamToken(t, s, newUpstreamToken(u, "github"))
		newSealed := fmt.Appendf(nil, "new tokens %d", i)
		var resealErr, updateErr error
		race(2, func(j int) {
			if j == 0 {
				_, resealErr = s.ResealUpstreamTokens(ctx, []store.UpstreamTokenReseal{{UserID: u.ID, Upstream: "github",
					OldKeyID: old.KeyID, OldSealed: old.Sealed, KeyID: "k2", Sealed: []byte("old tokens resealed")}})
				return
			}
			_, updateErr = s.UpdateUpstreamToken(ctx, u.ID, "github", func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
				n := cur
				n.KeyID, n.Sealed = "k2", newSealed
				return &n, nil
			})
		})
		must(t, resealErr, "ResealUpstreamTokens")
		must(t, updateErr, "UpdateUpstreamToken")
		got, err := s.GetUpstreamToken(ctx, u.ID, "github")
		must(t, err, "GetUpstreamToken")
		if string(got.Sealed) != string(newSealed) {
			t.Fatalf("round %d: the row holds %q after the race, want the update's %q", i, got.Sealed, newSealed)
		}
	}
}

// ResealSigningKeys replaces the encrypted private key, and nothing else,
// of keys that still hold the old one.
func testResealSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	active := newSigningKey(store.KeyActive, t0)
	next := newSigningKey(store.KeyNext, t0.Add(time.Hour))
	for _, k := range []store.SigningKey{active, next} {
		must(t, s.CreateSigningKey(ctx, k), "CreateSigningKey")
	}
	_, err := s.ResealSigningKeys(ctx, []store.SigningKeyReseal{{ID: active.ID, Old: active.EncryptedPrivateKey, New: []byte("a2")}, {ID: next.ID, Old: next.EncryptedPrivateKey}})
	if err == nil {
		t.Fatal("ResealSigningKeys with an empty New: no error")
	}
	n, err := s.ResealSigningKeys(ctx, []store.SigningKeyReseal{
		{ID: active.ID, Old: active.EncryptedPrivateKey, New: []byte("a2")},
		{ID: next.ID, Old: []byte("not what it holds"), New: []byte("n2")},
		{ID: "no-such-kid", Old: []byte("x"), New: []byte("y")},
	})
	must(t, err, "ResealSigningKeys")
	if n != 1 {
		t.Fatalf("ResealSigningKeys wrote %d keys, want 1", n)
	}
	keys, err := s.ListSigningKeys(ctx)
	must(t, err, "ListSigningKeys")
	if len(keys) != 2 {
		t.Fatalf("ListSigningKeys after ResealSigningKeys: %s", show(keys))
	}
	wantActive := active
	wantActive.EncryptedPrivateKey = []byte("a2")
	equal(t, "resealed key", keys[0], wantActive)
	equal(t, "key with a stale reseal", keys[1], next)
	n, err = s.ResealSigningKeys(ctx, nil)
	if err != nil || n != 0 {
		t.Fatalf("ResealSigningKeys(nil): %d, %v", n, err)
	}
}

// A refresh that ends the grant (the upstream refused its refresh token)
// marks the row dead and leaves its ciphertext alone: a reseal done while
// the refresh held the lease stays, so the row is not put back under the
// secret it was claimed under (which the operator may be about to drop).
func testFinishDeadKeepsReseal(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	old := putUpstreamToken(t, s, newUpstreamToken(u, "github"))
	lease := t0.Add(time.Minute)
	claimedRow, claimed, err := s.ClaimUpstreamRefresh(ctx, u.ID, "github", t0, t0.Add(9*time.Hour), lease)
	must(t, err, "ClaimUpstreamRefresh")
	if !claimed {
		t.Fatal("ClaimUpstreamRefresh did not claim")
	}
	n, err := s.ResealUpstreamTokens(ctx, []store.UpstreamTokenReseal{{UserID: u.ID, Upstream: "github",
		OldKeyID: old.KeyID, OldSealed: old.Sealed, KeyID: "k2", Sealed: []byte("resealed under k2")}})
	must(t, err, "ResealUpstreamTokens")
	if n != 1 {
		t.Fatalf("ResealUpstreamTokens of a leased row wrote %d rows, want 1", n)
	}
	dead := claimedRow // as the broker has it: the claim-time key id and ciphertext
	deadAt := t0.Add(2 * time.Minute)
	dead.DeadAt, dead.UpdatedAt = &deadAt, deadAt
	ok, err := s.FinishUpstreamRefresh(ctx, u.ID, "github", lease, &dead, time.Time{})
	must(t, err, "FinishUpstreamRefresh (dead)")
	if !ok {
		t.Fatal("FinishUpstreamRefresh (dead) lost a lease it holds")
	}
	got, err := s.GetUpstreamToken(ctx, u.ID, "github")
	must(t, err, "GetUpstreamToken")
	want := old
	want.KeyID, want.Sealed = "k2", []byte("resealed under k2")
	want.DeadAt, want.UpdatedAt = ptr(deadAt), deadAt
	equal(t, "row marked dead after a reseal under its lease", got, want)
}

// CountUpstreamTokensByKey counts every row, dead ones too, by the key id
// it is sealed under.
func testCountUpstreamTokensByKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	got, err := s.CountUpstreamTokensByKey(ctx)
	must(t, err, "CountUpstreamTokensByKey of an empty store")
	if len(got) != 0 {
		t.Fatalf("CountUpstreamTokensByKey of an empty store: %v", got)
	}
	u, v := user(t, s), user(t, s)
	putUpstreamToken(t, s, newUpstreamToken(u, "github")) // k1
	putUpstreamToken(t, s, newUpstreamToken(v, "github")) // k1
	r := newUpstreamToken(v, "corp")
	r.KeyID, r.DeadAt = "k2", ptr(t0)
	putUpstreamToken(t, s, r)
	got, err = s.CountUpstreamTokensByKey(ctx)
	must(t, err, "CountUpstreamTokensByKey")
	equal(t, "CountUpstreamTokensByKey", got, map[string]int{"k1": 2, "k2": 1})
}

// RecordEncryptionSecret keeps the first start of each fingerprint and
// moves the latest one on, never back; ListEncryptionSecrets lists the
// latest first.
func testEncryptionSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	got, err := s.ListEncryptionSecrets(ctx)
	must(t, err, "ListEncryptionSecrets of an empty store")
	if len(got) != 0 {
		t.Fatalf("ListEncryptionSecrets of an empty store: %s", show(got))
	}
	if err := s.RecordEncryptionSecret(ctx, "", t0); err == nil {
		t.Fatal("RecordEncryptionSecret with an empty fingerprint: no error")
	}
	must(t, s.RecordEncryptionSecret(ctx, "aaaa", t0), "RecordEncryptionSecret")
	must(t, s.RecordEncryptionSecret(ctx, "bbbb", t0.Add(time.Hour)), "RecordEncryptionSecret")
	must(t, s.RecordEncryptionSecret(ctx, "aaaa", t0.Add(2*time.Hour)), "RecordEncryptionSecret again")
	must(t, s.RecordEncryptionSecret(ctx, "aaaa", t0.Add(time.Minute)), "RecordEncryptionSecret earlier")
	got, err = s.ListEncryptionSecrets(ctx)
	must(t, err, "ListEncryptionSecrets")
	equal(t, "ListEncryptionSecrets", got, []store.EncryptionSecret{
		{Fingerprint: "aaaa", FirstSeenAt: t0, LastSeenAt: t0.Add(2 * time.Hour)},
		{Fingerprint: "bbbb", FirstSeenAt: t0.Add(time.Hour), LastSeenAt: t0.Add(time.Hour)},
	})
}
