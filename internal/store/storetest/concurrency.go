package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// racers is how many goroutines contend for one value. It stays below the
// Postgres store's default pool size so that every racer holds a
// connection at once and the race is real.
const racers = 16

// The heart of the code flow (fosite #778): of N concurrent redemptions of
// one code exactly one creates a grant; the others see ErrAlreadyUsed with
// the winner's grant id, and none of their grants or tokens exist.
func testConcurrentRedeemAuthCode(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	code := createCode(t, s, c, u)
	now := t0.Add(time.Minute)

	grants := make([]store.Grant, racers)
	tokens := make([]store.RefreshToken, racers)
	for i := range racers {
		grants[i] = newGrant(code)
		tokens[i] = newRefreshToken(grants[i])
	}
	results := make([]store.AuthCode, racers)
	errs := make([]error, racers)
	race(racers, func(i int) {
		results[i], errs[i] = s.RedeemAuthCode(ctx, code.Digest, now, grants[i], &tokens[i])
	})

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("RedeemAuthCode succeeded twice (racers %d and %d)", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrAlreadyUsed):
			t.Fatalf("racer %d: got %v, want ErrAlreadyUsed", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer redeemed the code")
	}
	winning := grants[winner].ID
	for i, r := range results {
		if r.GrantID != winning {
			t.Fatalf("racer %d got a code with GrantID %q, want the winner's %q", i, r.GrantID, winning)
		}
	}
	for i := range racers {
		_, gErr := s.GetGrant(ctx, grants[i].ID)
		_, tErr := s.GetRefreshToken(ctx, tokens[i].Digest)
		if i == winner {
			must(t, gErr, "GetGrant of the winner's grant")
			must(t, tErr, "GetRefreshToken of the winner's token")
			continue
		}
		wantErr(t, gErr, store.ErrNotFound, fmt.Sprintf("GetGrant of loser %d's grant", i))
		wantErr(t, tErr, store.ErrNotFound, fmt.Sprintf("GetRefreshToken of loser %d's token", i))
	}
	got, err := s.GetAuthCode(ctx, code.Digest, now)
	must(t, err, "GetAuthCode")
	if got.GrantID != winning || got.UsedAt == nil {
		t.Fatalf("code after the race: %s, want used with GrantID %s", show(got), winning)
	}
}

// Of N concurrent rotations of one refresh token exactly one succeeds. The
// others are reuse (ErrAlreadyUsed, which revokes the grant) or, once the
// grant is revoked, ErrNotFound; either way the family ends up revoked.
func testConcurrentRotateRefreshToken(t *testing.T, s store.Store) {
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
		_, errs[i] = s.RotateRefreshToken(ctx, rt.Digest, now, next[i], 0)
	})

	winner, reused := -1, 0
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("RotateRefreshToken succeeded twice (racers %d and %d)", winner, i)
			}
			winner = i
		case errors.Is(err, store.ErrAlreadyUsed):
			reused++
		case !errors.Is(err, store.ErrNotFound):
			t.Fatalf("racer %d: got %v, want ErrAlreadyUsed or ErrNotFound", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer rotated the token")
	}
	if reused == 0 {
		t.Fatal("no loser reported reuse (ErrAlreadyUsed)")
	}
	for i := range racers {
		_, err := s.GetRefreshToken(ctx, next[i].Digest)
		if i == winner {
			must(t, err, "GetRefreshToken of the winner's successor")
		} else {
			wantErr(t, err, store.ErrNotFound, fmt.Sprintf("GetRefreshToken of loser %d's successor", i))
		}
	}
	gotG, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt of the grant after concurrent reuse", gotG.RevokedAt, now)
	w := next[winner]
	_, err = s.RotateRefreshToken(ctx, w.Digest, now, nextRefreshToken(w, now), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of the winner's successor after reuse")
}

// Of N concurrent consumptions of one pending request exactly one gets it.
func testConcurrentConsumeAuthRequest(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	r := newAuthRequest(c)
	must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")

	results := make([]store.AuthRequest, racers)
	errs := make([]error, racers)
	race(racers, func(i int) {
		results[i], errs[i] = s.ConsumeAuthRequest(ctx, r.IDDigest, t0)
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("ConsumeAuthRequest succeeded twice (racers %d and %d)", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrNotFound):
			t.Fatalf("racer %d: got %v, want ErrNotFound", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer consumed the request")
	}
	equal(t, "the consumed request", results[winner], r)
}

// Of N concurrent claims of one upstream answer (callbacks of a reload or a
// double submit) exactly one succeeds; the others are refused
// (ErrConflict), and the request waits for no answer. Then, of N
// concurrent settles of the claimed request (some signing different users
// in, some ending it), exactly one succeeds and the request is as the
// winner left it.
func testConcurrentClaimAuthRequest(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	for round := range 4 {
		r := newAuthRequest(c)
		r.Upstream, r.UpstreamStateDigest = "github", digest()
		must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")
		errs := make([]error, racers)
		race(racers, func(i int) {
			_, errs[i] = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
		})
		claims := 0
		for i, err := range errs {
			switch {
			case err == nil:
				claims++
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("round %d: claim %d: got %v, want ErrConflict", round, i, err)
			}
		}
		if claims != 1 {
			t.Fatalf("round %d: %d of %d concurrent claims succeeded, want 1", round, claims, racers)
		}
		claimed := r
		claimed.UpstreamStateDigest = store.ClaimedState(r.UpstreamStateDigest)

		settles := make([]*store.SignIn, racers)
		for i := range settles {
			if (i+round)%4 != 0 { // a quarter of the racers delete
				settles[i] = &store.SignIn{UserID: user(t, s).ID, AuthTime: t0.Add(time.Duration(i) * time.Second)}
			}
		}
		results := make([]store.AuthRequest, racers)
		race(racers, func(i int) {
			results[i], errs[i] = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, settles[i])
		})
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: SettleAuthRequest succeeded twice (racers %d and %d)", round, winner, i)
				}
				winner = i
			case !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("round %d: racer %d: got %v, want ErrConflict or ErrNotFound", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer settled the request", round)
		}
		got, err := s.GetAuthRequest(ctx, r.IDDigest, t0)
		if w := settles[winner]; w == nil {
			wantErr(t, err, store.ErrNotFound, "GetAuthRequest after a delete won")
			equal(t, "the deleted request", results[winner], claimed)
			continue
		}
		must(t, err, "GetAuthRequest")
		want := claimed
		want.UpstreamStateDigest, want.UserID, want.AuthTime = "", settles[winner].UserID, &settles[winner].AuthTime
		equal(t, "the request after the race", got, want)
		equal(t, "the winner's result", results[winner], want)
	}
}

// Replicas starting together each try to create the first active key:
// exactly one succeeds, the rest get ErrConflict and write nothing.
func testConcurrentCreateActiveSigningKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	keys := make([]store.SigningKey, racers)
	for i := range keys {
		keys[i] = newSigningKey(store.KeyActive, t0)
	}
	errs := make([]error, racers)
	race(racers, func(i int) {
		errs[i] = s.CreateSigningKey(ctx, keys[i])
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("two active keys were created (racers %d and %d)", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("racer %d: got %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer created the active key")
	}
	list, err := s.ListSigningKeys(ctx)
	must(t, err, "ListSigningKeys")
	if len(list) != 1 {
		t.Fatalf("ListSigningKeys after the race: %d keys, want 1", len(list))
	}
	equal(t, "the one active key", list[0], keys[winner])
}

// A refresh racing a revocation must not leave a usable token behind: once
// RevokeGrant has returned, no refresh token of the grant rotates, whoever
// won. Several rounds, so that both orders are likely to occur.
func testConcurrentRefreshAndRevokeGrant(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	const rounds = 8
	for round := range rounds {
		g, rt := grant(t, s, c, u)
		now := t0.Add(time.Hour)
		next := nextRefreshToken(rt, now)
		rotErr, revErr := rotateRacing(s, rt, now, next, func() error { return s.RevokeGrant(ctx, g.ID, now) })
		must(t, revErr, fmt.Sprintf("round %d: RevokeGrant", round))
		if rotErr != nil && !errors.Is(rotErr, store.ErrNotFound) {
			t.Fatalf("round %d: RotateRefreshToken racing RevokeGrant: %v, want success or ErrNotFound", round, rotErr)
		}
		gotG, err := s.GetGrant(ctx, g.ID)
		must(t, err, "GetGrant")
		if gotG.RevokedAt == nil {
			t.Fatalf("round %d: grant not revoked after RevokeGrant", round)
		}
		later := now.Add(time.Minute)
		for _, d := range []store.RefreshToken{rt, next} {
			_, err := s.RotateRefreshToken(ctx, d.Digest, later, nextRefreshToken(d, later), 0)
			if err == nil {
				t.Fatalf("round %d: a refresh token of a revoked grant still rotates (rotation error in the race: %v)", round, rotErr)
			}
			wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: RotateRefreshToken after the race", round))
		}
		if rotErr == nil {
			// The rotation won, so it wrote its successor (which may or may
			// not be marked used: it can land after RevokeGrant's update,
			// and the revoked grant is what stops it, checked above).
			_, err := s.GetRefreshToken(ctx, next.Digest)
			must(t, err, fmt.Sprintf("round %d: GetRefreshToken of the successor of a successful rotation", round))
		} else {
			_, err := s.GetRefreshToken(ctx, next.Digest)
			wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: successor of a refused rotation", round))
		}
	}
}

// AddConsent merges atomically: concurrent approvals of different scopes
// for one user and client lose none of them, per resource too. Even racers
// approve their scope for one shared resource, odd ones for one of their
// own as well.
func testConcurrentAddConsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	const shared = "https://mcp.example/"
	want := make([]string, racers)
	errs := make([]error, racers)
	for i := range racers {
		want[i] = fmt.Sprintf("scope:%d", i)
	}
	own := func(i int) string { return fmt.Sprintf("https://r%d.example/", i) }
	wantApprovals := map[string][]string{}
	wantResources := []string{shared}
	for i := range racers {
		wantApprovals[shared] = append(wantApprovals[shared], want[i])
		if i%2 == 1 {
			wantApprovals[own(i)] = []string{want[i]}
			wantResources = append(wantResources, own(i))
		}
	}
	race(racers, func(i int) {
		resources := []string{shared}
		if i%2 == 1 {
			resources = append(resources, own(i))
		}
		errs[i] = s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: c.ID,
			Scopes: []string{want[i]}, Resources: resources,
			Approvals: store.ApprovalsFor(resources, []string{want[i]}),
			CreatedAt: t0, UpdatedAt: t0})
	})
	for i, err := range errs {
		must(t, err, fmt.Sprintf("racer %d: AddConsent", i))
	}
	got, err := s.GetConsent(ctx, u.ID, c.ID)
	must(t, err, "GetConsent")
	sameSet(t, "scopes after concurrent AddConsent", got.Scopes, want)
	sameSet(t, "resources after concurrent AddConsent", got.Resources, wantResources)
	if len(got.Approvals) != len(wantApprovals) {
		t.Fatalf("approvals after concurrent AddConsent: %s, want %s", show(got.Approvals), show(wantApprovals))
	}
	for r, scopes := range wantApprovals {
		sameSet(t, "approvals for "+r+" after concurrent AddConsent", got.Approvals[r], scopes)
	}
}

// Two first logins of one person at once (two tabs) yield one user.
func testConcurrentUpsertUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := newUser()
	ids := make([]string, racers)
	errs := make([]error, racers)
	race(racers, func(i int) {
		var u store.User
		u, errs[i] = s.UpsertUser(ctx, in)
		ids[i] = u.ID
	})
	// A second user row would show as a different ID (or, with a unique
	// index, as an error for some racer).
	for i, err := range errs {
		must(t, err, fmt.Sprintf("racer %d: UpsertUser", i))
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("concurrent UpsertUser of one identity returned IDs %q", ids)
		}
	}
	if _, err := s.GetUser(ctx, ids[0]); err != nil {
		t.Fatalf("GetUser of the upserted user: %v", err)
	}
}

// Opaque access tokens created while their grant is being revoked never
// outlive it: each either fails (ErrNotFound: the grant was revoked first)
// or is revoked along with the grant. Several rounds, so that both orders
// are likely to occur.
func testConcurrentCreateAccessTokenAndRevokeGrant(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	const rounds, creators = 8, 4
	for round := range rounds {
		g, _ := grant(t, s, c, u)
		now := t0.Add(time.Hour)
		tokens := make([]store.AccessToken, creators)
		errs := make([]error, creators+1)
		race(creators+1, func(i int) {
			if i == creators {
				errs[i] = s.RevokeGrant(ctx, g.ID, now)
				return
			}
			tokens[i] = newAccessToken(g)
			errs[i] = s.CreateAccessToken(ctx, tokens[i])
		})
		must(t, errs[creators], fmt.Sprintf("round %d: RevokeGrant", round))
		for i, at := range tokens {
			got, err := s.GetAccessToken(ctx, at.Digest)
			switch {
			case errs[i] != nil:
				wantErr(t, errs[i], store.ErrNotFound, fmt.Sprintf("round %d: CreateAccessToken racing RevokeGrant", round))
				wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: a refused token", round))
			case err != nil:
				t.Fatalf("round %d: GetAccessToken of a created token: %v", round, err)
			case got.RevokedAt == nil:
				t.Fatalf("round %d: an access token created during RevokeGrant is live in the revoked grant", round)
			}
		}
	}
	// After the revocation, creating is refused outright and stores nothing.
	g, _ := grant(t, s, c, u)
	must(t, s.RevokeGrant(ctx, g.ID, t0), "RevokeGrant")
	at := newAccessToken(g)
	wantErr(t, s.CreateAccessToken(ctx, at), store.ErrNotFound, "CreateAccessToken in a revoked grant")
	_, err := s.GetAccessToken(ctx, at.Digest)
	wantErr(t, err, store.ErrNotFound, "GetAccessToken of a token refused for a revoked grant")
	at = newAccessToken(store.Grant{ID: uuid.NewString(), ClientID: c.ID, UserID: u.ID})
	wantErr(t, s.CreateAccessToken(ctx, at), store.ErrNotFound, "CreateAccessToken in an unknown grant")
}

// DisableUser is one transaction: a reader never sees the user disabled
// with a grant still live, or a grant revoked with the user still enabled,
// and tokens rotated or created while it runs are either refused or
// revoked with the rest. Several rounds, so that the orders vary.
func testConcurrentDisableUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	const rounds, creators, readers = 8, 4, 4
	for round := range rounds {
		u := user(t, s)
		g, rt := grant(t, s, c, u)
		now := t0.Add(time.Hour)
		next := nextRefreshToken(rt, now)
		tokens := make([]store.AccessToken, creators)
		errs := make([]error, creators)
		var rotateErr, disableErr error
		torn := make([]string, readers)
		race(creators+readers+2, func(i int) {
			switch {
			case i < creators:
				tokens[i] = newAccessToken(g)
				errs[i] = s.CreateAccessToken(ctx, tokens[i])
			case i < creators+readers:
				for range 20 {
					gg, uu, err := s.GetGrantUser(ctx, g.ID)
					if err != nil {
						torn[i-creators] = err.Error()
						return
					}
					if uu.Disabled != (gg.RevokedAt != nil) {
						torn[i-creators] = fmt.Sprintf("user disabled %v, grant revoked at %v", uu.Disabled, gg.RevokedAt)
						return
					}
				}
			case i == creators+readers:
				_, rotateErr = s.RotateRefreshToken(ctx, rt.Digest, now, next, 0)
			default:
				_, disableErr = s.DisableUser(ctx, u.ID, now)
			}
		})
		what := fmt.Sprintf("round %d: ", round)
		must(t, disableErr, what+"DisableUser")
		for _, msg := range torn {
			if msg != "" {
				t.Fatalf("%sa read during DisableUser saw a half-done state: %s", what, msg)
			}
		}
		for i, at := range tokens {
			got, err := s.GetAccessToken(ctx, at.Digest)
			switch {
			case errs[i] != nil:
				wantErr(t, errs[i], store.ErrNotFound, what+"CreateAccessToken racing DisableUser")
			case err != nil:
				t.Fatalf("%sGetAccessToken of a created token: %v", what, err)
			case got.RevokedAt == nil:
				t.Fatalf("%san access token created during DisableUser is live", what)
			}
		}
		digests := []string{rt.Digest}
		if rotateErr == nil {
			digests = append(digests, next.Digest)
		} else {
			wantErr(t, rotateErr, store.ErrNotFound, what+"RotateRefreshToken racing DisableUser")
		}
		for _, d := range digests {
			got, err := s.GetRefreshToken(ctx, d)
			must(t, err, what+"GetRefreshToken")
			if got.UsedAt == nil {
				t.Fatalf("%sa refresh token is live after DisableUser (rotation succeeded: %v)", what, rotateErr == nil)
			}
		}
	}
}

// Deleting a client while one of its refresh tokens rotates neither fails
// nor deadlocks (the delete locks the client's grants first, in the order
// rotation does), and nothing of the client survives the delete.
func testConcurrentRotateAndDeleteClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	for round := range 8 {
		c := client(t, s)
		_, rt := grant(t, s, c, u)
		now := t0.Add(time.Hour)
		next := nextRefreshToken(rt, now)
		rotErr, delErr := rotateRacing(s, rt, now, next, func() error { return s.DeleteClient(ctx, c.ID) })
		must(t, delErr, fmt.Sprintf("round %d: DeleteClient racing RotateRefreshToken", round))
		if rotErr != nil && !errors.Is(rotErr, store.ErrNotFound) {
			t.Fatalf("round %d: RotateRefreshToken racing DeleteClient: %v, want success or ErrNotFound", round, rotErr)
		}
		for _, d := range []string{rt.Digest, next.Digest} {
			_, err := s.GetRefreshToken(ctx, d)
			wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: a refresh token of the deleted client", round))
		}
	}
}

// Deleting a client while one of its codes is redeemed neither fails nor
// deadlocks, and nothing of the client survives the delete.
func testConcurrentRedeemAndDeleteClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	for round := range 8 {
		c := client(t, s)
		code := createCode(t, s, c, u)
		g := newGrant(code)
		rt := newRefreshToken(g)
		var redeemErr, delErr error
		race(2, func(i int) {
			if i == 0 {
				_, redeemErr = s.RedeemAuthCode(ctx, code.Digest, t0, g, &rt)
			} else {
				delErr = s.DeleteClient(ctx, c.ID)
			}
		})
		must(t, delErr, fmt.Sprintf("round %d: DeleteClient racing RedeemAuthCode", round))
		if redeemErr != nil && !errors.Is(redeemErr, store.ErrNotFound) && !errors.Is(redeemErr, store.ErrConflict) {
			t.Fatalf("round %d: RedeemAuthCode racing DeleteClient: %v", round, redeemErr)
		}
		_, err := s.GetGrant(ctx, g.ID)
		wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: a grant of the deleted client", round))
		_, err = s.GetRefreshToken(ctx, rt.Digest)
		wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: a refresh token of the deleted client", round))
	}
}

// Deleting a client while tokens of it are created (client_credentials
// tokens, which a store may write together, and a token of its grant)
// neither fails nor deadlocks, and no token of it survives the delete:
// each is either refused with ErrNotFound or deleted with the client.
func testConcurrentCreateAccessTokenAndDeleteClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	for round := range 8 {
		c := client(t, s)
		g, _ := grant(t, s, c, u)
		tokens := make([]store.AccessToken, racers)
		for i := range tokens {
			tokens[i] = clientCredentialsToken(c)
		}
		tokens[0] = newAccessToken(g)
		errs := make([]error, racers)
		var delErr error
		race(racers+1, func(i int) {
			if i == racers {
				delErr = s.DeleteClient(ctx, c.ID)
				return
			}
			errs[i] = s.CreateAccessToken(ctx, tokens[i])
		})
		must(t, delErr, fmt.Sprintf("round %d: DeleteClient racing CreateAccessToken", round))
		for i, err := range errs {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("round %d: CreateAccessToken %d racing DeleteClient: %v, want success or ErrNotFound", round, i, err)
			}
			_, err := s.GetAccessToken(ctx, tokens[i].Digest)
			wantErr(t, err, store.ErrNotFound, fmt.Sprintf("round %d: access token %d of the deleted client", round, i))
		}
	}
}

// rotateRacing rotates rt to next while other runs, both released by one
// barrier, and returns both errors.
func rotateRacing(s store.Store, rt store.RefreshToken, now time.Time, next store.RefreshToken, other func() error) (rotErr, otherErr error) {
	race(2, func(i int) {
		if i == 0 {
			_, rotErr = s.RotateRefreshToken(context.Background(), rt.Digest, now, next, 0)
		} else {
			otherErr = other()
		}
	})
	return rotErr, otherErr
}

// Registrations and client_credentials tokens created at the same moment
// (which a store may write together, as Postgres does) each get their own
// outcome: a taken client id or token digest is ErrConflict and leaves the
// first row as it was, a token of an unknown client is ErrNotFound and is
// not stored, and every other row is stored as given.
func testConcurrentCreates(t *testing.T, s store.Store) {
	ctx := t.Context()
	owner := client(t, s)
	taken := createAccessToken(t, s, clientCredentialsToken(owner))
	const n = racers
	clients := make([]store.Client, n)
	tokens := make([]store.AccessToken, n)
	for i := range n {
		clients[i] = newClient()
		tokens[i] = clientCredentialsToken(owner)
	}
	clients[3].ID = owner.ID        // taken
	tokens[5].Digest = taken.Digest // taken
	tokens[7].ClientID = uuid.NewString()
	clientErrs, tokenErrs := make([]error, n), make([]error, n)
	race(2*n, func(i int) {
		if i < n {
			clientErrs[i] = s.CreateClient(ctx, clients[i])
		} else {
			tokenErrs[i-n] = s.CreateAccessToken(ctx, tokens[i-n])
		}
	})

	for i, err := range clientErrs {
		if i == 3 {
			wantErr(t, err, store.ErrConflict, "CreateClient with a taken id, among others")
			continue
		}
		must(t, err, fmt.Sprintf("CreateClient %d, among others", i))
		got, err := s.GetClient(ctx, clients[i].ID, t0)
		must(t, err, "GetClient")
		equal(t, "client created among others", got, clients[i])
	}
	got, err := s.GetClient(ctx, owner.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client whose id another create took", got, owner)

	for i, err := range tokenErrs {
		switch i {
		case 5:
			wantErr(t, err, store.ErrConflict, "CreateAccessToken with a taken digest, among others")
		case 7:
			wantErr(t, err, store.ErrNotFound, "CreateAccessToken of an unknown client, among others")
			_, err := s.GetAccessToken(ctx, tokens[i].Digest)
			wantErr(t, err, store.ErrNotFound, "GetAccessToken of a token refused for an unknown client")
		default:
			must(t, err, fmt.Sprintf("CreateAccessToken %d, among others", i))
			got, err := s.GetAccessToken(ctx, tokens[i].Digest)
			must(t, err, "GetAccessToken")
			equal(t, "access token created among others", got, tokens[i])
		}
	}
	gotToken, err := s.GetAccessToken(ctx, taken.Digest)
	must(t, err, "GetAccessToken")
	equal(t, "access token whose digest another create took", gotToken, taken)
}
