package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// Create, read, update and delete a client with every field set; duplicate
// ids conflict; unknown ids are ErrNotFound everywhere.
func testClientCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)

	got, err := s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "GetClient after CreateClient", got, c)

	dup := newClient()
	dup.ID = c.ID
	wantErr(t, s.CreateClient(ctx, dup), store.ErrConflict, "CreateClient with a duplicate id")
	got, err = s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after the conflicting create", got, c)

	// UpdateClient replaces every field but ID and CreatedAt.
	upd := newClient()
	upd.ID = c.ID
	upd.Source = store.SourceConfig
	upd.SecretHash = ""
	upd.SecretExpiresAt = nil
	upd.RegistrationTokenHash = ""
	upd.Metadata.RedirectURIs = []string{"https://other.example/callback"}
	upd.Metadata.ClientName = "Renamed"
	upd.Metadata.TokenEndpointAuthMethod = "none"
	upd.Fingerprint = ""
	upd.AllowedScopes = []string{"mcp:read"}
	upd.AllowedResources = nil
	upd.SkipConsent = true
	upd.CanIntrospect = true
	upd.Disabled = true
	upd.CreatedAt = t0.Add(time.Hour) // ignored
	upd.UpdatedAt = t0.Add(2 * time.Hour)
	upd.LastUsedAt = t0.Add(3 * time.Hour)
	upd.ExpiresAt = nil
	must(t, s.UpdateClient(ctx, upd), "UpdateClient")
	got, err = s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient after UpdateClient")
	want := upd
	want.CreatedAt = c.CreatedAt
	equal(t, "GetClient after UpdateClient", got, want)

	unknown := newClient()
	wantErr(t, s.UpdateClient(ctx, unknown), store.ErrNotFound, "UpdateClient of an unknown client")
	if _, err := s.GetClient(ctx, unknown.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateClient of an unknown client created it (GetClient: %v)", err)
	}

	must(t, s.DeleteClient(ctx, c.ID), "DeleteClient")
	_, err = s.GetClient(ctx, c.ID, t0)
	wantErr(t, err, store.ErrNotFound, "GetClient after DeleteClient")
	wantErr(t, s.DeleteClient(ctx, c.ID), store.ErrNotFound, "DeleteClient twice")
	_, err = s.GetClient(ctx, "no-such-client", t0)
	wantErr(t, err, store.ErrNotFound, "GetClient of an unknown id")
}

// nil restrictions mean "no extra restriction", empty ones "nothing
// allowed": confusing the two would widen a client's access.
func testClientRestrictionsNilVersusEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	open := newClient()
	open.AllowedScopes, open.AllowedResources = nil, nil
	closed := newClient()
	closed.AllowedScopes, closed.AllowedResources = []string{}, []string{}
	createClient(t, s, open)
	createClient(t, s, closed)

	got, err := s.GetClient(ctx, open.ID, t0)
	must(t, err, "GetClient")
	if got.AllowedScopes != nil || got.AllowedResources != nil {
		t.Fatalf("nil restrictions came back as %#v / %#v, want nil", got.AllowedScopes, got.AllowedResources)
	}
	got, err = s.GetClient(ctx, closed.ID, t0)
	must(t, err, "GetClient")
	if got.AllowedScopes == nil || len(got.AllowedScopes) != 0 || got.AllowedResources == nil || len(got.AllowedResources) != 0 {
		t.Fatalf("empty restrictions came back as %#v / %#v, want non-nil empty", got.AllowedScopes, got.AllowedResources)
	}

	// And through UpdateClient, in both directions.
	open.AllowedScopes = []string{}
	closed.AllowedScopes = nil
	must(t, s.UpdateClient(ctx, open), "UpdateClient")
	must(t, s.UpdateClient(ctx, closed), "UpdateClient")
	if got, _ := s.GetClient(ctx, open.ID, t0); got.AllowedScopes == nil || len(got.AllowedScopes) != 0 {
		t.Fatalf("AllowedScopes updated to empty came back as %#v", got.AllowedScopes)
	}
	if got, _ := s.GetClient(ctx, closed.ID, t0); got.AllowedScopes != nil {
		t.Fatalf("AllowedScopes updated to nil came back as %#v", got.AllowedScopes)
	}
}

// testUpdateClientIf: the update applies only while the stored
// registration token digest is the one given (single-use RFC 7592 tokens).
func testUpdateClientIf(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	next := c
	next.Metadata.ClientName = "Renamed"
	next.RegistrationTokenHash = "digest-2"
	wantErr(t, s.UpdateClientIf(ctx, next, "not-the-stored-digest"), store.ErrNotFound, "UpdateClientIf with a stale digest")
	got, err := s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after a refused UpdateClientIf", got, c)

	must(t, s.UpdateClientIf(ctx, next, c.RegistrationTokenHash), "UpdateClientIf")
	got, err = s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after UpdateClientIf", got, next)
	wantErr(t, s.UpdateClientIf(ctx, next, c.RegistrationTokenHash), store.ErrNotFound, "UpdateClientIf with the spent digest")
	wantErr(t, s.UpdateClientIf(ctx, store.Client{ID: "missing"}, ""), store.ErrNotFound, "UpdateClientIf of an unknown client")
}

// UpsertClient creates an absent client and replaces a present one,
// keeping its CreatedAt.
func testUpsertClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newClient()
	c.ID = "config-client-" + c.ID[:8] // operator-chosen ids are not uuids
	c.Source = store.SourceConfig
	c.ExpiresAt = nil
	c.SkipConsent = true
	must(t, s.UpsertClient(ctx, c), "UpsertClient (create)")
	got, err := s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after UpsertClient created it", got, c)

	r := c
	r.Metadata.RedirectURIs = []string{"https://new.example/cb"}
	r.SecretHash = "sha256$" + "00"
	r.SkipConsent = false
	r.AllowedScopes = []string{"mcp:admin"}
	r.CreatedAt = t0.Add(day) // ignored
	r.UpdatedAt = t0.Add(day)
	must(t, s.UpsertClient(ctx, r), "UpsertClient (replace)")
	got, err = s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	want := r
	want.CreatedAt = c.CreatedAt
	equal(t, "client after UpsertClient replaced it", got, want)
}

// A client is live while now < ExpiresAt; nil never expires.
func testClientExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := client(t, s)
	exp := *c.ExpiresAt
	if _, err := s.GetClient(ctx, c.ID, exp.Add(-us)); err != nil {
		t.Fatalf("GetClient 1µs before expiry: %v", err)
	}
	_, err := s.GetClient(ctx, c.ID, exp)
	wantErr(t, err, store.ErrNotFound, "GetClient at ExpiresAt")
	_, err = s.GetClient(ctx, c.ID, exp.Add(day))
	wantErr(t, err, store.ErrNotFound, "GetClient after ExpiresAt")

	forever := newClient()
	forever.ExpiresAt = nil
	createClient(t, s, forever)
	if _, err := s.GetClient(ctx, forever.ID, t0.Add(100*365*day)); err != nil {
		t.Fatalf("GetClient of a client without ExpiresAt, a century later: %v", err)
	}
}

// Dedup of re-registrations finds only live clients, the newest first, and
// never matches the empty fingerprint.
func testFindClientByFingerprint(t *testing.T, s store.Store) {
	ctx := t.Context()
	fp := "fingerprint-" + uuid.NewString()
	older := newClient()
	older.Fingerprint = fp
	newer := newClient()
	newer.Fingerprint = fp
	newer.CreatedAt = t0.Add(time.Hour)
	newer.ExpiresAt = ptr(t0.Add(2 * day))
	older.ExpiresAt = ptr(t0.Add(3 * day))
	createClient(t, s, newer)
	createClient(t, s, older)
	other := client(t, s) // a different fingerprint

	got, err := s.FindClientByFingerprint(ctx, fp, t0.Add(day))
	must(t, err, "FindClientByFingerprint")
	equal(t, "FindClientByFingerprint with two live matches (the newest)", got, newer)

	got, err = s.FindClientByFingerprint(ctx, fp, t0.Add(2*day))
	must(t, err, "FindClientByFingerprint")
	equal(t, "FindClientByFingerprint once the newest expired", got, older)

	_, err = s.FindClientByFingerprint(ctx, fp, t0.Add(3*day))
	wantErr(t, err, store.ErrNotFound, "FindClientByFingerprint when every match expired")

	got, err = s.FindClientByFingerprint(ctx, other.Fingerprint, t0)
	must(t, err, "FindClientByFingerprint")
	equal(t, "FindClientByFingerprint of the other client", got, other)

	blank := newClient()
	blank.Fingerprint = ""
	createClient(t, s, blank)
	_, err = s.FindClientByFingerprint(ctx, "", t0)
	wantErr(t, err, store.ErrNotFound, "FindClientByFingerprint of the empty fingerprint")
	_, err = s.FindClientByFingerprint(ctx, "unknown", t0)
	wantErr(t, err, store.ErrNotFound, "FindClientByFingerprint of an unknown fingerprint")
}

// TouchClient records use and slides the idle expiry of clients that have
// one; it never revives an expired client.
func testTouchClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	sliding := client(t, s)
	// A day later: far beyond any "recently touched" shortcut.
	now := t0.Add(day)
	must(t, s.TouchClient(ctx, sliding.ID, now, clientIdle), "TouchClient")
	got, err := s.GetClient(ctx, sliding.ID, now)
	must(t, err, "GetClient")
	want := sliding
	want.LastUsedAt = now
	want.ExpiresAt = ptr(now.Add(clientIdle))
	equal(t, "sliding client after TouchClient", got, want)
	// The old expiry no longer applies.
	if _, err := s.GetClient(ctx, sliding.ID, sliding.ExpiresAt.Add(time.Hour)); err != nil {
		t.Fatalf("GetClient past the old expiry after TouchClient: %v", err)
	}

	fixed := newClient()
	fixed.ExpiresAt = nil
	createClient(t, s, fixed)
	must(t, s.TouchClient(ctx, fixed.ID, now, clientIdle), "TouchClient")
	got, err = s.GetClient(ctx, fixed.ID, now)
	must(t, err, "GetClient")
	want = fixed
	want.LastUsedAt = now
	equal(t, "client without expiry after TouchClient", got, want)

	gone := client(t, s)
	late := gone.ExpiresAt.Add(time.Hour)
	wantErr(t, s.TouchClient(ctx, gone.ID, late, clientIdle), store.ErrNotFound, "TouchClient of an expired client")
	_, err = s.GetClient(ctx, gone.ID, late)
	wantErr(t, err, store.ErrNotFound, "GetClient after touching an expired client (revived)")
	got, err = s.GetClient(ctx, gone.ID, t0)
	must(t, err, "GetClient")
	equal(t, "expired client after TouchClient", got, gone)

	wantErr(t, s.TouchClient(ctx, "no-such-client", now, clientIdle), store.ErrNotFound, "TouchClient of an unknown client")
}

// ListClients filters by source, honours the limit and lists oldest first;
// CountClients agrees. Neither takes now, so expired rows still count.
func testListAndCountClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(src store.ClientSource, created time.Duration) store.Client {
		c := newClient()
		c.Source = src
		c.CreatedAt = t0.Add(created)
		return c
	}
	d1, d2, d3 := mk(store.SourceDynamic, 3*time.Hour), mk(store.SourceDynamic, 1*time.Hour), mk(store.SourceDynamic, 5*time.Hour)
	d3.ExpiresAt = ptr(t0.Add(time.Minute)) // expired long ago, not purged
	c1, c2 := mk(store.SourceConfig, 2*time.Hour), mk(store.SourceConfig, 4*time.Hour)
	c1.ExpiresAt, c2.ExpiresAt = nil, nil
	m1 := mk(store.SourceMetadata, 0)
	for _, c := range []store.Client{d1, d2, d3, c1, c2, m1} {
		createClient(t, s, c)
	}

	ids := func(cs []store.Client) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	check := func(what string, f store.ClientFilter, want ...store.Client) {
		t.Helper()
		got, err := s.ListClients(ctx, f)
		must(t, err, what)
		if len(got) != len(want) {
			t.Fatalf("%s: got %d clients %q, want %q", what, len(got), ids(got), ids(want))
		}
		for i := range want {
			equal(t, what, got[i], want[i])
		}
	}
	check("ListClients all", store.ClientFilter{}, m1, d2, c1, d1, c2, d3)
	check("ListClients dynamic", store.ClientFilter{Source: store.SourceDynamic}, d2, d1, d3)
	check("ListClients config", store.ClientFilter{Source: store.SourceConfig}, c1, c2)
	check("ListClients metadata", store.ClientFilter{Source: store.SourceMetadata}, m1)
	check("ListClients limit 2", store.ClientFilter{Limit: 2}, m1, d2)
	check("ListClients dynamic limit 1", store.ClientFilter{Source: store.SourceDynamic, Limit: 1}, d2)
	checkCopies(t, "clients from ListClients", nil, func() []store.Client {
		got, err := s.ListClients(ctx, store.ClientFilter{})
		must(t, err, "ListClients")
		return got
	})

	for src, want := range map[store.ClientSource]int64{"": 6, store.SourceDynamic: 3, store.SourceConfig: 2, store.SourceMetadata: 1} {
		n, err := s.CountClients(ctx, src)
		must(t, err, "CountClients")
		if n != want {
			t.Fatalf("CountClients(%q) = %d, want %d", src, n, want)
		}
	}
}

// Users are keyed by (provider, subject): a new login refreshes the profile
// under the same ID and never re-enables a disabled user.
func testUpsertUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := newUser()
	u, err := s.UpsertUser(ctx, in)
	must(t, err, "UpsertUser")
	if u.ID == "" {
		t.Fatal("UpsertUser returned no ID")
	}
	want := in
	want.ID = u.ID
	equal(t, "UpsertUser (insert) result", u, want)
	got, err := s.GetUser(ctx, u.ID)
	must(t, err, "GetUser")
	equal(t, "GetUser", got, want)

	again := in
	again.Login = "renamed"
	again.Email = "new@example.org"
	again.EmailVerified = false
	again.Name = "New Name"
	again.Groups = []string{"other"}
	again.Domain = ""
	again.Disabled = true // ignored
	again.CreatedAt = t0.Add(day)
	again.UpdatedAt = t0.Add(day)
	again.LastLoginAt = t0.Add(day)
	u2, err := s.UpsertUser(ctx, again)
	must(t, err, "UpsertUser (update)")
	want = again
	want.ID = u.ID
	want.CreatedAt = in.CreatedAt
	want.Disabled = false
	equal(t, "UpsertUser (update) result", u2, want)
	got, err = s.GetUser(ctx, u.ID)
	must(t, err, "GetUser")
	equal(t, "GetUser after the update", got, want)

	// The same subject at another provider is someone else.
	elsewhere := in
	elsewhere.Provider = "google"
	u3, err := s.UpsertUser(ctx, elsewhere)
	must(t, err, "UpsertUser (other provider)")
	if u3.ID == u.ID {
		t.Fatal("users of two providers with one subject got the same ID")
	}

	must(t, s.SetUserDisabled(ctx, u.ID, true), "SetUserDisabled")
	again.Disabled = false
	again.Login = "relogin"
	u4, err := s.UpsertUser(ctx, again)
	must(t, err, "UpsertUser (disabled user logs in again)")
	if !u4.Disabled || u4.ID != u.ID || u4.Login != "relogin" {
		t.Fatalf("upsert of a disabled user: got %+v, want same ID, Disabled kept, Login refreshed", u4)
	}
	if got, _ := s.GetUser(ctx, u.ID); !got.Disabled {
		t.Fatal("UpsertUser re-enabled a disabled user")
	}
	must(t, s.SetUserDisabled(ctx, u.ID, false), "SetUserDisabled(false)")
	if got, _ := s.GetUser(ctx, u.ID); got.Disabled {
		t.Fatal("SetUserDisabled(false) left the user disabled")
	}

	wantErr(t, s.SetUserDisabled(ctx, "no-such-user", true), store.ErrNotFound, "SetUserDisabled of an unknown user")
	_, err = s.GetUser(ctx, "no-such-user")
	wantErr(t, err, store.ErrNotFound, "GetUser of an unknown user")
}
