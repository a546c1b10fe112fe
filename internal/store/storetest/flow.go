package storetest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// Pending requests: create, read by id and by upstream state, update only
// the mutable fields, consume once.
func testAuthRequestCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	u := user(t, s)
	r := newAuthRequest(c)
	must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")

	got, err := s.GetAuthRequest(ctx, r.IDDigest, t0)
	must(t, err, "GetAuthRequest")
	equal(t, "GetAuthRequest", got, r)

	dup := newAuthRequest(c)
	dup.IDDigest = r.IDDigest
	wantErr(t, s.CreateAuthRequest(ctx, dup), store.ErrConflict, "CreateAuthRequest with a duplicate id")

	// No upstream state yet: the empty state must not find it.
	_, err = s.GetAuthRequestByUpstreamState(ctx, "", t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequestByUpstreamState of the empty state")

	upd := r
	upd.Upstream = "github"
	upd.UpstreamStateDigest = digest()
	upd.UserID = u.ID
	upd.AuthTime = ptr(t0.Add(time.Minute))
	upd.Scopes = []string{"mcp:read", "mcp:write"}
	upd.Resources = []string{"https://mcp.example/", "https://other.example/"}
	// Immutable fields: UpdateAuthRequest must ignore these.
	upd.ClientID = client(t, s).ID
	upd.RedirectURI = "https://evil.example/cb"
	upd.RedirectURIProvided = false
	upd.State = "changed"
	upd.CodeChallenge = "changed"
	upd.CodeChallengeMethod = "plain"
	upd.Nonce = "changed"
	upd.Prompt = nil
	upd.MaxAge = nil
	upd.LoginHint = ""
	upd.CreatedAt = t0.Add(time.Hour)
	upd.ExpiresAt = t0.Add(365 * day)
	must(t, s.UpdateAuthRequest(ctx, upd), "UpdateAuthRequest")
	want := r
	want.Upstream, want.UpstreamStateDigest, want.UserID = upd.Upstream, upd.UpstreamStateDigest, upd.UserID
	want.AuthTime, want.Scopes, want.Resources = upd.AuthTime, upd.Scopes, upd.Resources
	got, err = s.GetAuthRequest(ctx, r.IDDigest, t0)
	must(t, err, "GetAuthRequest after UpdateAuthRequest")
	equal(t, "GetAuthRequest after UpdateAuthRequest", got, want)
	got, err = s.GetAuthRequestByUpstreamState(ctx, upd.UpstreamStateDigest, t0)
	must(t, err, "GetAuthRequestByUpstreamState")
	equal(t, "GetAuthRequestByUpstreamState", got, want)

	// The upstream state is unique among requests.
	other := newAuthRequest(c)
	other.UpstreamStateDigest = upd.UpstreamStateDigest
	wantErr(t, s.CreateAuthRequest(ctx, other), store.ErrConflict, "CreateAuthRequest with a used upstream state")
	other.UpstreamStateDigest = ""
	must(t, s.CreateAuthRequest(ctx, other), "CreateAuthRequest")
	other.UpstreamStateDigest = upd.UpstreamStateDigest
	wantErr(t, s.UpdateAuthRequest(ctx, other), store.ErrConflict, "UpdateAuthRequest to a used upstream state")
	got, err = s.GetAuthRequestByUpstreamState(ctx, upd.UpstreamStateDigest, t0)
	must(t, err, "GetAuthRequestByUpstreamState")
	equal(t, "request owning the upstream state after the conflict", got, want)

	unknown := newAuthRequest(c)
	wantErr(t, s.UpdateAuthRequest(ctx, unknown), store.ErrNotFound, "UpdateAuthRequest of an unknown request")
	_, err = s.GetAuthRequest(ctx, unknown.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest after UpdateAuthRequest of an unknown request")

	consumed, err := s.ConsumeAuthRequest(ctx, r.IDDigest, t0)
	must(t, err, "ConsumeAuthRequest")
	equal(t, "ConsumeAuthRequest", consumed, want)
	_, err = s.ConsumeAuthRequest(ctx, r.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "ConsumeAuthRequest twice")
	_, err = s.GetAuthRequest(ctx, r.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest after ConsumeAuthRequest")
	_, err = s.GetAuthRequestByUpstreamState(ctx, upd.UpstreamStateDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequestByUpstreamState after ConsumeAuthRequest")
	if _, err := s.GetAuthRequest(ctx, other.IDDigest, t0); err != nil {
		t.Fatalf("consuming one request affected another: %v", err)
	}
}

// An expired pending request cannot be read, found by state, or consumed.
func testAuthRequestExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	r := newAuthRequest(c)
	r.UpstreamStateDigest = digest()
	must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")
	before, at := r.ExpiresAt.Add(-us), r.ExpiresAt

	if _, err := s.GetAuthRequest(ctx, r.IDDigest, before); err != nil {
		t.Fatalf("GetAuthRequest 1µs before expiry: %v", err)
	}
	if _, err := s.GetAuthRequestByUpstreamState(ctx, r.UpstreamStateDigest, before); err != nil {
		t.Fatalf("GetAuthRequestByUpstreamState 1µs before expiry: %v", err)
	}
	_, err := s.GetAuthRequest(ctx, r.IDDigest, at)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest at ExpiresAt")
	_, err = s.GetAuthRequestByUpstreamState(ctx, r.UpstreamStateDigest, at)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequestByUpstreamState at ExpiresAt")
	_, err = s.ConsumeAuthRequest(ctx, r.IDDigest, at)
	wantErr(t, err, store.ErrNotFound, "ConsumeAuthRequest at ExpiresAt")
}

// ClaimAuthRequest matches only a request that still waits for the given
// upstream answer and makes it wait for none (state, user and auth time
// cleared, an earlier sign-in included); a request waiting for another
// answer or for none (claimed or signed in already), expired or unknown
// is refused and left as it is. SettleAuthRequest then matches only a
// request as a claim left it: it signs it in or deletes it; refused for a
// request a newer upstream sign-in took over or that is signed in.
func testClaimAuthRequest(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	waiting := func() store.AuthRequest {
		t.Helper()
		r := newAuthRequest(c)
		r.Upstream, r.UpstreamStateDigest = "github", digest()
		must(t, s.CreateAuthRequest(ctx, r), "CreateAuthRequest")
		return r
	}
	unchanged := func(what string, r store.AuthRequest) {
		t.Helper()
		got, err := s.GetAuthRequest(ctx, r.IDDigest, t0)
		must(t, err, what+": GetAuthRequest")
		equal(t, what+": the request", got, r)
	}
	authTime := t0.Add(-time.Minute)
	in := &store.SignIn{UserID: u.ID, AuthTime: authTime}

	// Claimed: returned and stored waiting for no answer, no longer
	// found by its upstream state; then signed in.
	r := waiting()
	got, err := s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	must(t, err, "ClaimAuthRequest")
	claimed := r
	claimed.UpstreamStateDigest = store.ClaimedState(r.UpstreamStateDigest)
	equal(t, "ClaimAuthRequest's result", got, claimed)
	unchanged("after the claim", claimed)
	_, err = s.GetAuthRequestByUpstreamState(ctx, r.UpstreamStateDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequestByUpstreamState of a claimed request")

	// A second claim of the same answer: refused with the request as it
	// is (claimed), which stays.
	cur, err := s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	wantErr(t, err, store.ErrConflict, "a second claim")
	equal(t, "the request a second claim reports", cur, claimed)
	unchanged("after a refused claim", claimed)

	got, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, in)
	must(t, err, "SettleAuthRequest")
	want := claimed
	want.UpstreamStateDigest, want.UserID, want.AuthTime = "", u.ID, &authTime
	equal(t, "SettleAuthRequest's result", got, want)
	unchanged("after the sign-in", want)

	// A second settle, signing in or deleting, and a claim of the spent
	// answer: refused with the request as it is (signed in), which stays.
	other := user(t, s)
	cur, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, &store.SignIn{UserID: other.ID, AuthTime: t0})
	wantErr(t, err, store.ErrConflict, "a second sign-in settle")
	equal(t, "the request a second settle reports", cur, want)
	_, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, nil)
	wantErr(t, err, store.ErrConflict, "a delete settle after the sign-in")
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	wantErr(t, err, store.ErrConflict, "a claim after the sign-in")
	unchanged("after refused settles", want)

	// Signed in again: the user started another upstream sign-in for the
	// signed-in request (UpdateAuthRequest keeps its user meanwhile); its
	// claim clears the earlier sign-in, and its settle records the new one.
	again := want
	again.UpstreamStateDigest = digest()
	must(t, s.UpdateAuthRequest(ctx, again), "UpdateAuthRequest")
	later := t0.Add(time.Minute)
	got, err = s.ClaimAuthRequest(ctx, r.IDDigest, again.UpstreamStateDigest, later)
	must(t, err, "ClaimAuthRequest of a sign-in started again")
	claimedAgain := claimed
	claimedAgain.UpstreamStateDigest = store.ClaimedState(again.UpstreamStateDigest)
	equal(t, "the request claimed again", got, claimedAgain)
	got, err = s.SettleAuthRequest(ctx, r.IDDigest, again.UpstreamStateDigest, later, &store.SignIn{UserID: other.ID, AuthTime: later})
	must(t, err, "SettleAuthRequest of a sign-in started again")
	want.UserID, want.AuthTime = other.ID, &later
	equal(t, "the request signed in again", got, want)
	unchanged("after the sign-in started again", want)

	// Replaced by a newer upstream sign-in before the claim: the older
	// answer is refused, the request reported waiting (no user),
	// unchanged.
	r = waiting()
	newer := r
	newer.UpstreamStateDigest = digest()
	must(t, s.UpdateAuthRequest(ctx, newer), "UpdateAuthRequest")
	cur, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	wantErr(t, err, store.ErrConflict, "a claim of a replaced answer")
	equal(t, "the request a claim of a replaced answer reports", cur, newer)
	unchanged("after a claim of a replaced answer", newer)

	// Replaced after the claim: the settle is refused, whatever it does,
	// with the request as the newer sign-in left it.
	r = waiting()
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	must(t, err, "ClaimAuthRequest")
	newer = r
	newer.UpstreamStateDigest = digest()
	must(t, s.UpdateAuthRequest(ctx, newer), "UpdateAuthRequest")
	for _, settle := range []*store.SignIn{in, nil} {
		cur, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, settle)
		wantErr(t, err, store.ErrConflict, "a settle of a request replaced after its claim")
		equal(t, "the request a refused settle reports", cur, newer)
	}
	unchanged("after settles of a replaced request", newer)

	// Replaced after the claim, and the newer answer claimed too: only
	// the newer claim's settle matches; the older callback's settle,
	// signing in or ending the request, is refused and changes nothing.
	newerClaimed := newer
	newerClaimed.UpstreamStateDigest = store.ClaimedState(newer.UpstreamStateDigest)
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, newer.UpstreamStateDigest, t0)
	must(t, err, "ClaimAuthRequest of the newer answer")
	for _, settle := range []*store.SignIn{in, nil} {
		cur, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, settle)
		wantErr(t, err, store.ErrConflict, "the older claim's settle after a newer claim")
		equal(t, "the request the older claim's settle reports", cur, newerClaimed)
	}
	unchanged("after the older claim's settles", newerClaimed)
	_, err = s.SettleAuthRequest(ctx, r.IDDigest, "", t0, nil)
	wantErr(t, err, store.ErrConflict, "a settle with the empty state")
	got, err = s.SettleAuthRequest(ctx, r.IDDigest, newer.UpstreamStateDigest, t0, in)
	must(t, err, "the newer claim's settle")
	want = newerClaimed
	want.UpstreamStateDigest, want.UserID, want.AuthTime = "", u.ID, &authTime
	equal(t, "the request the newer claim signed in", got, want)

	// The empty state matches nothing, not even a request without one.
	plain := newAuthRequest(c)
	must(t, s.CreateAuthRequest(ctx, plain), "CreateAuthRequest")
	_, err = s.ClaimAuthRequest(ctx, plain.IDDigest, "", t0)
	wantErr(t, err, store.ErrConflict, "a claim with the empty state")
	unchanged("after a claim with the empty state", plain)

	// A sign-in for an unknown user fails and changes nothing.
	r = waiting()
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	must(t, err, "ClaimAuthRequest")
	claimed = r
	claimed.UpstreamStateDigest = store.ClaimedState(r.UpstreamStateDigest)
	if _, err := s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, &store.SignIn{UserID: uuid.NewString(), AuthTime: t0}); err == nil {
		t.Fatal("SettleAuthRequest signed a request in for an unknown user")
	}
	unchanged("after a sign-in for an unknown user", claimed)

	// Deleted: returned as it was, gone afterwards.
	got, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, nil)
	must(t, err, "SettleAuthRequest (delete)")
	equal(t, "the deleted request", got, claimed)
	_, err = s.GetAuthRequest(ctx, r.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthRequest after a delete settle")
	_, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0, in)
	wantErr(t, err, store.ErrNotFound, "a settle of a deleted request")
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, t0)
	wantErr(t, err, store.ErrNotFound, "a claim of a deleted request")

	// Expired at ExpiresAt, claim and settle; live 1µs before.
	r = waiting()
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, r.ExpiresAt)
	wantErr(t, err, store.ErrNotFound, "a claim at ExpiresAt")
	unchanged("after a claim at ExpiresAt", r)
	_, err = s.ClaimAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, r.ExpiresAt.Add(-us))
	must(t, err, "a claim 1µs before expiry")
	for _, settle := range []*store.SignIn{in, nil} {
		_, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, r.ExpiresAt, settle)
		wantErr(t, err, store.ErrNotFound, "a settle at ExpiresAt")
	}
	_, err = s.SettleAuthRequest(ctx, r.IDDigest, r.UpstreamStateDigest, r.ExpiresAt.Add(-us), nil)
	must(t, err, "a settle 1µs before expiry")
	_, err = s.ClaimAuthRequest(ctx, digest(), digest(), t0)
	wantErr(t, err, store.ErrNotFound, "a claim of an unknown request")
	_, err = s.SettleAuthRequest(ctx, digest(), digest(), t0, in)
	wantErr(t, err, store.ErrNotFound, "a settle of an unknown request")
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	sess := newSession(u)
	must(t, s.CreateSession(ctx, sess), "CreateSession")
	got, err := s.GetSession(ctx, sess.IDDigest, t0)
	must(t, err, "GetSession")
	equal(t, "GetSession", got, sess)

	dup := newSession(user(t, s))
	dup.IDDigest = sess.IDDigest
	wantErr(t, s.CreateSession(ctx, dup), store.ErrConflict, "CreateSession with a duplicate id")
	got, err = s.GetSession(ctx, sess.IDDigest, t0)
	must(t, err, "GetSession")
	equal(t, "session after the conflicting create", got, sess)

	if _, err := s.GetSession(ctx, sess.IDDigest, sess.ExpiresAt.Add(-us)); err != nil {
		t.Fatalf("GetSession 1µs before expiry: %v", err)
	}
	_, err = s.GetSession(ctx, sess.IDDigest, sess.ExpiresAt)
	wantErr(t, err, store.ErrNotFound, "GetSession at ExpiresAt")

	// GetSessionUser: the session and its user as the two reads give them,
	// under the same expiry.
	gotS, gotU, err := s.GetSessionUser(ctx, sess.IDDigest, sess.ExpiresAt.Add(-us))
	must(t, err, "GetSessionUser")
	equal(t, "GetSessionUser's session", gotS, sess)
	wantU, err := s.GetUser(ctx, u.ID)
	must(t, err, "GetUser")
	equal(t, "GetSessionUser's user", gotU, wantU)
	_, _, err = s.GetSessionUser(ctx, sess.IDDigest, sess.ExpiresAt)
	wantErr(t, err, store.ErrNotFound, "GetSessionUser at ExpiresAt")
	_, _, err = s.GetSessionUser(ctx, digest(), t0)
	wantErr(t, err, store.ErrNotFound, "GetSessionUser of an unknown id")

	other := newSession(u)
	must(t, s.CreateSession(ctx, other), "CreateSession")
	must(t, s.DeleteSession(ctx, sess.IDDigest), "DeleteSession")
	_, err = s.GetSession(ctx, sess.IDDigest, t0)
	wantErr(t, err, store.ErrNotFound, "GetSession after DeleteSession")
	must(t, s.DeleteSession(ctx, sess.IDDigest), "DeleteSession twice (signing out must not fail)")
	if _, err := s.GetSession(ctx, other.IDDigest, t0); err != nil {
		t.Fatalf("deleting one session affected another of the same user: %v", err)
	}
	_, err = s.GetSession(ctx, digest(), t0)
	wantErr(t, err, store.ErrNotFound, "GetSession of an unknown id")
}

// AddConsent creates, then merges as a set union, per resource for the
// approvals; ListConsents lists the user's consents oldest first and
// nobody else's.
func testConsents(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	a, b := client(t, s), client(t, s)
	const mcp, other = "https://mcp.example/", "https://other.example/"

	_, err := s.GetConsent(ctx, u.ID, a.ID)
	wantErr(t, err, store.ErrNotFound, "GetConsent before any consent")

	first := store.Consent{UserID: u.ID, ClientID: a.ID,
		Scopes: []string{"mcp:admin"}, Resources: []string{mcp},
		Approvals: map[string][]string{mcp: {"mcp:admin"}},
		CreatedAt: t0, UpdatedAt: t0}
	must(t, s.AddConsent(ctx, first), "AddConsent")
	got, err := s.GetConsent(ctx, u.ID, a.ID)
	must(t, err, "GetConsent")
	equal(t, "GetConsent after the first AddConsent", got, first)

	later := t0.Add(time.Hour)
	must(t, s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: a.ID,
		Scopes:    []string{"mcp:write", "mcp:read", "mcp:write"},
		Resources: []string{other},
		Approvals: map[string][]string{other: {"mcp:write", "mcp:read", "mcp:write"}, mcp: {"mcp:read", "mcp:admin"}},
		CreatedAt: later, UpdatedAt: later}), "AddConsent (merge)")
	got, err = s.GetConsent(ctx, u.ID, a.ID)
	must(t, err, "GetConsent")
	sameSet(t, "merged scopes", got.Scopes, []string{"mcp:admin", "mcp:read", "mcp:write"})
	sameSet(t, "merged resources", got.Resources, []string{mcp, other})
	equal(t, "merged approvals (old first, then new, once each)", got.Approvals,
		map[string][]string{mcp: {"mcp:admin", "mcp:read"}, other: {"mcp:write", "mcp:read"}})
	if !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(later) {
		t.Fatalf("merged consent times: created %v updated %v, want %v and %v", got.CreatedAt, got.UpdatedAt, t0, later)
	}

	// Adding nothing new changes nothing but UpdatedAt.
	must(t, s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: a.ID, Scopes: []string{"mcp:read"},
		Approvals: map[string][]string{other: {"mcp:read"}},
		CreatedAt: later, UpdatedAt: later}), "AddConsent (subset)")
	got2, err := s.GetConsent(ctx, u.ID, a.ID)
	must(t, err, "GetConsent")
	sameSet(t, "scopes after adding a subset", got2.Scopes, got.Scopes)
	sameSet(t, "resources after adding a subset", got2.Resources, got.Resources)
	equal(t, "approvals after adding a subset", got2.Approvals, got.Approvals)

	// Covered only where every scope was approved for every resource: admin
	// on mcp and write on other do not make admin on other.
	for _, c := range []struct {
		resources, scopes []string
		want              bool
	}{
		{[]string{mcp}, []string{"mcp:admin", "mcp:read"}, true},
		{[]string{other}, []string{"mcp:read", "mcp:write"}, true},
		{[]string{mcp, other}, []string{"mcp:read"}, true},
		{[]string{other}, nil, true},
		{[]string{other}, []string{"mcp:admin"}, false},
		{[]string{mcp}, []string{"mcp:write"}, false},
		{[]string{mcp, other}, []string{"mcp:admin"}, false},
		{[]string{"https://third.example/"}, nil, false},
		{nil, []string{"mcp:read"}, false},
	} {
		if cov := got2.Covers(c.resources, c.scopes); cov != c.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.resources, c.scopes, cov, c.want)
		}
	}
	// Approvals for a request bound to no resource go under "", with an
	// empty list when it had no scope; a consent without approvals (as
	// recorded before they were kept per resource) covers nothing.
	nores := store.Consent{UserID: stranger.ID, ClientID: b.ID, Approvals: store.ApprovalsFor(nil, nil),
		CreatedAt: t0, UpdatedAt: t0}
	must(t, s.AddConsent(ctx, nores), "AddConsent (no resource, no scope)")
	got3, err := s.GetConsent(ctx, stranger.ID, b.ID)
	must(t, err, "GetConsent")
	equal(t, "approvals of a request bound to no resource", got3.Approvals, map[string][]string{"": {}})
	if !got3.Covers(nil, nil) || got3.Covers(nil, []string{"mcp:read"}) || got3.Covers([]string{mcp}, nil) {
		t.Errorf("Covers of %s", show(got3))
	}
	if (store.Consent{Scopes: []string{"mcp:read"}, Resources: []string{mcp}}).Covers([]string{mcp}, []string{"mcp:read"}) {
		t.Error("a consent without approvals covers a request")
	}
	must(t, s.DeleteConsent(ctx, stranger.ID, b.ID, t0), "DeleteConsent")

	cb := store.Consent{UserID: u.ID, ClientID: b.ID, Scopes: []string{"mcp:read"},
		CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0.Add(-time.Hour)}
	must(t, s.AddConsent(ctx, cb), "AddConsent")
	must(t, s.AddConsent(ctx, store.Consent{UserID: stranger.ID, ClientID: a.ID, Scopes: []string{"mcp:admin"},
		CreatedAt: t0, UpdatedAt: t0}), "AddConsent (another user)")

	list, err := s.ListConsents(ctx, u.ID)
	must(t, err, "ListConsents")
	if len(list) != 2 {
		t.Fatalf("ListConsents: got %d consents, want 2: %s", len(list), show(list))
	}
	equal(t, "ListConsents[0] (oldest)", list[0], cb)
	// Read after the stranger's consent for a: nothing of it leaked into u's.
	equal(t, "ListConsents[1]", list[1], got2)
	none, err := s.ListConsents(ctx, "no-such-user")
	must(t, err, "ListConsents of an unknown user")
	if len(none) != 0 {
		t.Fatalf("ListConsents of an unknown user: %s", show(none))
	}
}

// Forgetting a client's consents removes every user's consent for that
// client and nothing else: other clients' consents and the grants stay.
func testForgetClientConsents(t *testing.T, s store.Store) {
	ctx := t.Context()
	u1, u2 := user(t, s), user(t, s)
	a, b := client(t, s), client(t, s)
	for _, c := range []store.Consent{{UserID: u1.ID, ClientID: a.ID}, {UserID: u2.ID, ClientID: a.ID}, {UserID: u1.ID, ClientID: b.ID}} {
		c.Scopes, c.CreatedAt, c.UpdatedAt = []string{"mcp:read"}, t0, t0
		must(t, s.AddConsent(ctx, c), "AddConsent")
	}
	g, _ := grant(t, s, a, u1)
	must(t, s.ForgetClientConsents(ctx, a.ID), "ForgetClientConsents")
	must(t, s.ForgetClientConsents(ctx, a.ID), "ForgetClientConsents again")
	must(t, s.ForgetClientConsents(ctx, "no-such-client"), "ForgetClientConsents of an unknown client")
	for _, u := range []store.User{u1, u2} {
		_, err := s.GetConsent(ctx, u.ID, a.ID)
		wantErr(t, err, store.ErrNotFound, "GetConsent after ForgetClientConsents")
	}
	if _, err := s.GetConsent(ctx, u1.ID, b.ID); err != nil {
		t.Fatalf("another client's consent: %v", err)
	}
	got, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	if got.RevokedAt != nil {
		t.Fatal("ForgetClientConsents revoked a grant")
	}
}

// Withdrawing consent removes it and revokes that user's grants for that
// client, with their tokens, even when there was no consent row.
func testDeleteConsentRevokesGrants(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	a, b := client(t, s), client(t, s)
	must(t, s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: a.ID, Scopes: []string{"mcp:read"}, CreatedAt: t0, UpdatedAt: t0}), "AddConsent")
	must(t, s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: b.ID, Scopes: []string{"mcp:read"}, CreatedAt: t0, UpdatedAt: t0}), "AddConsent")
	ga1, rta1 := grant(t, s, a, u)
	ga2, _ := grant(t, s, a, u)
	ata := createAccessToken(t, s, newAccessToken(ga1))
	gb, rtb := grant(t, s, b, u)
	gs, rts := grant(t, s, a, stranger)

	now := t0.Add(time.Hour)
	must(t, s.DeleteConsent(ctx, u.ID, a.ID, now), "DeleteConsent")
	_, err := s.GetConsent(ctx, u.ID, a.ID)
	wantErr(t, err, store.ErrNotFound, "GetConsent after DeleteConsent")
	for _, g := range []store.Grant{ga1, ga2} {
		got, err := s.GetGrant(ctx, g.ID)
		must(t, err, "GetGrant")
		timeEqual(t, "RevokedAt of a grant whose consent was withdrawn", got.RevokedAt, now)
	}
	_, err = s.RotateRefreshToken(ctx, rta1.Digest, now, nextRefreshToken(rta1, now), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken after DeleteConsent")
	at, err := s.GetAccessToken(ctx, ata.Digest)
	must(t, err, "GetAccessToken")
	timeEqual(t, "RevokedAt of an access token whose consent was withdrawn", at.RevokedAt, now)

	// Other clients and other users keep theirs.
	if _, err := s.GetConsent(ctx, u.ID, b.ID); err != nil {
		t.Fatalf("GetConsent of another client: %v", err)
	}
	for _, g := range []store.Grant{gb, gs} {
		got, err := s.GetGrant(ctx, g.ID)
		must(t, err, "GetGrant")
		if got.RevokedAt != nil {
			t.Fatalf("DeleteConsent revoked an unrelated grant: %s", show(got))
		}
	}
	for _, rt := range []store.RefreshToken{rtb, rts} {
		if _, err := s.RotateRefreshToken(ctx, rt.Digest, now, nextRefreshToken(rt, now), 0); err != nil {
			t.Fatalf("an unrelated refresh token no longer rotates: %v", err)
		}
	}

	must(t, s.DeleteConsent(ctx, u.ID, a.ID, now.Add(time.Hour)), "DeleteConsent twice")
	got, err := s.GetGrant(ctx, ga1.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt after a second DeleteConsent (first one kept)", got.RevokedAt, now)

	// First-party clients skip consent: no consent row, but grants to revoke.
	fp := client(t, s)
	gfp, rtfp := grant(t, s, fp, u)
	must(t, s.DeleteConsent(ctx, u.ID, fp.ID, now), "DeleteConsent without a consent row")
	got, err = s.GetGrant(ctx, gfp.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt of a grant without consent row", got.RevokedAt, now)
	_, err = s.RotateRefreshToken(ctx, rtfp.Digest, now, nextRefreshToken(rtfp, now), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken after DeleteConsent without consent row")
}

func testAuthCodeCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	code := createCode(t, s, c, u)
	got, err := s.GetAuthCode(ctx, code.Digest, t0)
	must(t, err, "GetAuthCode")
	equal(t, "GetAuthCode", got, code)

	dup := newCode(c, u)
	dup.Digest = code.Digest
	dup.RedirectURI = "https://evil.example/cb"
	wantErr(t, s.CreateAuthCode(ctx, dup), store.ErrConflict, "CreateAuthCode with a duplicate digest")
	got, err = s.GetAuthCode(ctx, code.Digest, t0)
	must(t, err, "GetAuthCode")
	equal(t, "code after the conflicting create", got, code)

	if _, err := s.GetAuthCode(ctx, code.Digest, code.ExpiresAt.Add(-us)); err != nil {
		t.Fatalf("GetAuthCode 1µs before expiry: %v", err)
	}
	_, err = s.GetAuthCode(ctx, code.Digest, code.ExpiresAt)
	wantErr(t, err, store.ErrNotFound, "GetAuthCode at ExpiresAt")
	_, err = s.GetAuthCode(ctx, digest(), t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthCode of an unknown digest")

	// GetAuthCodeUser: the code and its user as the two reads give them,
	// under the same expiry.
	gotC, gotU, err := s.GetAuthCodeUser(ctx, code.Digest, code.ExpiresAt.Add(-us))
	must(t, err, "GetAuthCodeUser")
	equal(t, "GetAuthCodeUser's code", gotC, code)
	wantU, err := s.GetUser(ctx, u.ID)
	must(t, err, "GetUser")
	equal(t, "GetAuthCodeUser's user", gotU, wantU)
	_, _, err = s.GetAuthCodeUser(ctx, code.Digest, code.ExpiresAt)
	wantErr(t, err, store.ErrNotFound, "GetAuthCodeUser at ExpiresAt")
	_, _, err = s.GetAuthCodeUser(ctx, digest(), t0)
	wantErr(t, err, store.ErrNotFound, "GetAuthCodeUser of an unknown digest")
}

// Redemption creates the grant and refresh token and records the grant on
// the code; a replay reports the grant and writes nothing; expired or
// unknown codes are ErrNotFound and write nothing.
func testRedeemAuthCode(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	code := createCode(t, s, c, u)
	g := newGrant(code)
	rt := newRefreshToken(g)
	now := t0.Add(time.Minute)

	redeemed, err := s.RedeemAuthCode(ctx, code.Digest, now, g, &rt)
	must(t, err, "RedeemAuthCode")
	want := code
	want.UsedAt = ptr(now)
	want.GrantID = g.ID
	equal(t, "RedeemAuthCode result", redeemed, want)
	got, err := s.GetAuthCode(ctx, code.Digest, now)
	must(t, err, "GetAuthCode")
	equal(t, "GetAuthCode after redemption (used codes stay readable)", got, want)
	got, _, err = s.GetAuthCodeUser(ctx, code.Digest, code.ExpiresAt.Add(time.Hour))
	must(t, err, "GetAuthCodeUser after redemption and expiry")
	equal(t, "GetAuthCodeUser after redemption and expiry (replays are still recognised)", got, want)
	gotG, err := s.GetGrant(ctx, g.ID)
	must(t, err, "GetGrant")
	equal(t, "grant created by RedeemAuthCode", gotG, g)
	gotRT, err := s.GetRefreshToken(ctx, rt.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "refresh token created by RedeemAuthCode", gotRT, rt)

	// Replay: ErrAlreadyUsed with the stored code, nothing written.
	g2 := newGrant(code)
	rt2 := newRefreshToken(g2)
	replay, err := s.RedeemAuthCode(ctx, code.Digest, now.Add(time.Second), g2, &rt2)
	wantErr(t, err, store.ErrAlreadyUsed, "RedeemAuthCode twice")
	equal(t, "code returned with ErrAlreadyUsed", replay, want)
	_, err = s.GetGrant(ctx, g2.ID)
	wantErr(t, err, store.ErrNotFound, "GetGrant of the grant a replay tried to create")
	_, err = s.GetRefreshToken(ctx, rt2.Digest)
	wantErr(t, err, store.ErrNotFound, "GetRefreshToken of the token a replay tried to create")
	got, err = s.GetAuthCode(ctx, code.Digest, now)
	must(t, err, "GetAuthCode")
	equal(t, "code after the replay", got, want)

	// Without a refresh token.
	bare := createCode(t, s, c, u)
	gb := newGrant(bare)
	_, err = s.RedeemAuthCode(ctx, bare.Digest, now, gb, nil)
	must(t, err, "RedeemAuthCode without a refresh token")
	gotG, err = s.GetGrant(ctx, gb.ID)
	must(t, err, "GetGrant")
	equal(t, "grant created without a refresh token", gotG, gb)

	// Expired: ErrNotFound, nothing written, code unused.
	old := createCode(t, s, c, u)
	ge := newGrant(old)
	rte := newRefreshToken(ge)
	_, err = s.RedeemAuthCode(ctx, old.Digest, old.ExpiresAt, ge, &rte)
	wantErr(t, err, store.ErrNotFound, "RedeemAuthCode at ExpiresAt")
	_, err = s.GetGrant(ctx, ge.ID)
	wantErr(t, err, store.ErrNotFound, "GetGrant after redeeming an expired code")
	_, err = s.GetRefreshToken(ctx, rte.Digest)
	wantErr(t, err, store.ErrNotFound, "GetRefreshToken after redeeming an expired code")
	got, err = s.GetAuthCode(ctx, old.Digest, t0)
	must(t, err, "GetAuthCode")
	equal(t, "expired code after the attempt", got, old)

	// A used code stays evidence after its expiry: it is still read, and
	// redeeming it again is a replay (OAuth 2.1 §4.1.3), however late.
	got, err = s.GetAuthCode(ctx, code.Digest, code.ExpiresAt.Add(time.Hour))
	must(t, err, "GetAuthCode of a used code after its expiry")
	if got.UsedAt == nil || got.GrantID == "" {
		t.Fatalf("used code read after its expiry: used %v, grant %q", got.UsedAt, got.GrantID)
	}
	_, err = s.RedeemAuthCode(ctx, code.Digest, code.ExpiresAt.Add(time.Hour), newGrant(code), nil)
	wantErr(t, err, store.ErrAlreadyUsed, "RedeemAuthCode of a used code after its expiry")

	_, err = s.RedeemAuthCode(ctx, digest(), now, newGrant(code), nil)
	wantErr(t, err, store.ErrNotFound, "RedeemAuthCode of an unknown digest")
}

// A failure inside redemption leaves no trace: the code stays unused and
// redeemable, no grant or token appears.
func testRedeemAuthCodeIsAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, u := client(t, s), user(t, s)
	existing, existingRT := grant(t, s, c, u)
	code := createCode(t, s, c, u)
	now := t0.Add(time.Minute)

	// The grant id collides: the grant insert fails after the code was claimed.
	g := newGrant(code)
	g.ID = existing.ID
	rt := newRefreshToken(g)
	_, err := s.RedeemAuthCode(ctx, code.Digest, now, g, &rt)
	wantErr(t, err, store.ErrConflict, "RedeemAuthCode with a colliding grant id")
	got, err := s.GetAuthCode(ctx, code.Digest, now)
	must(t, err, "GetAuthCode")
	equal(t, "code after the failed redemption (must stay unused)", got, code)
	_, err = s.GetRefreshToken(ctx, rt.Digest)
	wantErr(t, err, store.ErrNotFound, "refresh token of the failed redemption")
	gotG, err := s.GetGrant(ctx, existing.ID)
	must(t, err, "GetGrant")
	equal(t, "the existing grant after the collision", gotG, existing)

	// The refresh token collides: the last insert fails.
	g = newGrant(code)
	rt = newRefreshToken(g)
	rt.Digest = existingRT.Digest
	_, err = s.RedeemAuthCode(ctx, code.Digest, now, g, &rt)
	wantErr(t, err, store.ErrConflict, "RedeemAuthCode with a colliding refresh token")
	got, err = s.GetAuthCode(ctx, code.Digest, now)
	must(t, err, "GetAuthCode")
	equal(t, "code after the second failed redemption", got, code)
	_, err = s.GetGrant(ctx, g.ID)
	wantErr(t, err, store.ErrNotFound, "grant of the failed redemption")
	gotRT, err := s.GetRefreshToken(ctx, existingRT.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "the existing refresh token after the collision", gotRT, existingRT)

	// The code is still good for exactly one redemption.
	g = newGrant(code)
	rt = newRefreshToken(g)
	_, err = s.RedeemAuthCode(ctx, code.Digest, now, g, &rt)
	must(t, err, "RedeemAuthCode after the failures")
	if _, err := s.GetGrant(ctx, g.ID); err != nil {
		t.Fatalf("GetGrant after the successful redemption: %v", err)
	}
}
