package storetest

import (
	"errors"
	"slices"
	"strings"
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

// testUpdateClientIfForgetConsents: the update and the forgetting of the
// client's consents happen together, under the same guard as
// UpdateClientIf, or not at all.
func testUpdateClientIfForgetConsents(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	c, other := client(t, s), client(t, s)
	for _, id := range []string{c.ID, other.ID} {
		must(t, s.AddConsent(ctx, store.Consent{UserID: u.ID, ClientID: id, Scopes: []string{"mcp:read"}, CreatedAt: t0, UpdatedAt: t0}), "AddConsent")
	}
	next := c
	next.Metadata.RedirectURIs = []string{"https://new.example/cb"}
	next.RegistrationTokenHash = "digest-2"
	wantErr(t, s.UpdateClientIfForgetConsents(ctx, next, "not-the-stored-digest"), store.ErrNotFound, "UpdateClientIfForgetConsents with a stale digest")
	got, err := s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after a refused UpdateClientIfForgetConsents", got, c)
	if _, err := s.GetConsent(ctx, u.ID, c.ID); err != nil {
		t.Fatalf("a refused update forgot the consent: %v", err)
	}

	must(t, s.UpdateClientIfForgetConsents(ctx, next, c.RegistrationTokenHash), "UpdateClientIfForgetConsents")
	got, err = s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after UpdateClientIfForgetConsents", got, next)
	_, err = s.GetConsent(ctx, u.ID, c.ID)
	wantErr(t, err, store.ErrNotFound, "GetConsent after UpdateClientIfForgetConsents")
	if _, err := s.GetConsent(ctx, u.ID, other.ID); err != nil {
		t.Fatalf("another client's consent: %v", err)
	}
	wantErr(t, s.UpdateClientIfForgetConsents(ctx, store.Client{ID: "missing"}, ""), store.ErrNotFound, "UpdateClientIfForgetConsents of an unknown client")
}

// testTouchClientIf: the use is recorded only while the client still has
// the fingerprint given; never for an empty one.
func testTouchClientIf(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := newClient()
	c.Fingerprint = "fp-1"
	createClient(t, s, c)
	now := t0.Add(day)
	wantErr(t, s.TouchClientIf(ctx, c.ID, "fp-other", now, clientIdle), store.ErrNotFound, "TouchClientIf with another fingerprint")
	wantErr(t, s.TouchClientIf(ctx, c.ID, "", now, clientIdle), store.ErrNotFound, "TouchClientIf with no fingerprint")
	got, err := s.GetClient(ctx, c.ID, t0)
	must(t, err, "GetClient")
	equal(t, "client after refused touches", got, c)

	must(t, s.TouchClientIf(ctx, c.ID, "fp-1", now, clientIdle), "TouchClientIf")
	got, err = s.GetClient(ctx, c.ID, now)
	must(t, err, "GetClient")
	want := c
	want.LastUsedAt = now
	want.ExpiresAt = ptr(now.Add(clientIdle))
	equal(t, "client after TouchClientIf", got, want)

	plain := client(t, s) // no fingerprint: never shared
	wantErr(t, s.TouchClientIf(ctx, plain.ID, "", now, clientIdle), store.ErrNotFound, "TouchClientIf of an unshared client")
	wantErr(t, s.TouchClientIf(ctx, c.ID, "fp-1", want.ExpiresAt.Add(time.Hour), clientIdle), store.ErrNotFound, "TouchClientIf of an expired client")
	wantErr(t, s.TouchClientIf(ctx, "no-such-client", "fp-1", now, clientIdle), store.ErrNotFound, "TouchClientIf of an unknown client")
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

// FindUser looks users up by (provider, subject), which is what identifies
// them; the same subject at another provider is someone else.
func testFindUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := user(t, s)
	got, err := s.FindUser(ctx, u.Provider, u.Subject)
	must(t, err, "FindUser")
	equal(t, "FindUser", got, u)

	other := newUser()
	other.Provider, other.Subject = "google", u.Subject
	o, err := s.UpsertUser(ctx, other)
	must(t, err, "UpsertUser (other provider)")
	got, err = s.FindUser(ctx, "google", u.Subject)
	must(t, err, "FindUser (other provider)")
	equal(t, "FindUser of the same subject at another provider", got, o)

	renamed := newUser()
	renamed.Provider, renamed.Subject, renamed.Login = u.Provider, u.Subject, "renamed"
	renamed.LastLoginAt = t0.Add(time.Hour)
	r, err := s.UpsertUser(ctx, renamed)
	must(t, err, "UpsertUser (update)")
	got, err = s.FindUser(ctx, u.Provider, u.Subject)
	must(t, err, "FindUser after a login")
	equal(t, "FindUser after a login", got, r)
	checkCopies(t, "user from FindUser", nil, func() store.User {
		got, err := s.FindUser(ctx, u.Provider, u.Subject)
		must(t, err, "FindUser")
		return got
	})

	for _, k := range [][2]string{{"gitlab", u.Subject}, {u.Provider, u.Subject + "0"}, {u.Provider, u.ID}, {"", ""}} {
		_, err := s.FindUser(ctx, k[0], k[1])
		wantErr(t, err, store.ErrNotFound, "FindUser("+k[0]+", "+k[1]+")")
	}
}

// ListUsers filters by provider and by disabled, orders newest sign-in
// first (ties by ID) and honours the limit.
func testListUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(provider string, lastLogin time.Duration, disabled bool) store.User {
		t.Helper()
		in := newUser()
		in.Provider, in.LastLoginAt = provider, t0.Add(lastLogin)
		u, err := s.UpsertUser(ctx, in)
		must(t, err, "UpsertUser")
		if disabled {
			must(t, s.SetUserDisabled(ctx, u.ID, true), "SetUserDisabled")
			u.Disabled = true
		}
		return u
	}
	old := mk("github", time.Hour, false)
	newest := mk("github", 3*time.Hour, true)
	g2 := mk("github", 2*time.Hour, false)
	o2 := mk("google", 2*time.Hour, true)
	tied := []store.User{g2, o2} // same sign-in time: by ID
	if o2.ID < g2.ID {
		tied = []store.User{o2, g2}
	}
	githubTied := g2

	check := func(what string, f store.UserFilter, want ...store.User) {
		t.Helper()
		got, err := s.ListUsers(ctx, f)
		must(t, err, what)
		equal(t, what, got, want)
	}
	check("ListUsers all", store.UserFilter{}, newest, tied[0], tied[1], old)
	check("ListUsers github", store.UserFilter{Provider: "github"}, newest, githubTied, old)
	check("ListUsers google", store.UserFilter{Provider: "google"}, o2)
	check("ListUsers unknown provider", store.UserFilter{Provider: "gitlab"})
	check("ListUsers disabled", store.UserFilter{Disabled: true}, newest, o2)
	check("ListUsers github disabled", store.UserFilter{Provider: "github", Disabled: true}, newest)
	check("ListUsers limit 2", store.UserFilter{Limit: 2}, newest, tied[0])
	check("ListUsers github limit 1", store.UserFilter{Provider: "github", Limit: 1}, newest)
	check("ListUsers limit beyond", store.UserFilter{Limit: 10}, newest, tied[0], tied[1], old)

	// A new sign-in moves a user to the front.
	again := newUser()
	again.Provider, again.Subject, again.Login, again.LastLoginAt = old.Provider, old.Subject, old.Login, t0.Add(4*time.Hour)
	old, err := s.UpsertUser(ctx, again)
	must(t, err, "UpsertUser (sign-in)")
	check("ListUsers after a sign-in", store.UserFilter{Provider: "github"}, old, newest, githubTied)

	checkCopies(t, "users from ListUsers", nil, func() []store.User {
		got, err := s.ListUsers(ctx, store.UserFilter{})
		must(t, err, "ListUsers")
		return got
	})
}

// DisableUser disables the user and revokes every live grant of theirs with
// its refresh and opaque access tokens, keeping earlier revocation times,
// and touches nobody else's. Enabling again revokes nothing back.
func testDisableUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u, stranger := user(t, s), user(t, s)
	a, b := client(t, s), client(t, s)

	early := t0.Add(time.Minute)
	g1, rt1 := grant(t, s, a, u)
	rt2 := nextRefreshToken(rt1, early)
	_, err := s.RotateRefreshToken(ctx, rt1.Digest, early, rt2, 0)
	must(t, err, "RotateRefreshToken")
	at1 := createAccessToken(t, s, newAccessToken(g1))
	at2 := createAccessToken(t, s, newAccessToken(g1))
	must(t, s.RevokeAccessToken(ctx, at2.Digest, early), "RevokeAccessToken")
	g2, rt3 := grant(t, s, b, u)
	at3 := createAccessToken(t, s, newAccessToken(g2))
	g3, rt4 := grant(t, s, a, u) // revoked before
	must(t, s.RevokeGrant(ctx, g3.ID, early), "RevokeGrant")
	g4, rt5 := grant(t, s, b, u, func(g *store.Grant, rt *store.RefreshToken) { // expired, not revoked
		g.ExpiresAt = t0.Add(30 * time.Minute)
		rt.ExpiresAt = g.ExpiresAt
	})
	sg, srt := grant(t, s, a, stranger)
	sat := createAccessToken(t, s, newAccessToken(sg))
	cc := createAccessToken(t, s, clientCredentialsToken(a))

	now := t0.Add(time.Hour)
	rev, err := s.DisableUser(ctx, u.ID, now)
	must(t, err, "DisableUser")
	gotU, err := s.GetUser(ctx, u.ID)
	must(t, err, "GetUser")
	if !gotU.Disabled {
		t.Fatal("DisableUser left the user enabled")
	}

	// What it reports: the grants it revoked, oldest first (all created at
	// t0: by ID), as now stored, and the tokens it ended.
	want := []store.Grant{g1, g2, g4}
	slices.SortFunc(want, func(x, y store.Grant) int { return strings.Compare(x.ID, y.ID) })
	for i := range want {
		stored, err := s.GetGrant(ctx, want[i].ID)
		must(t, err, "GetGrant")
		timeEqual(t, "RevokedAt of a grant of the disabled user", stored.RevokedAt, now)
		want[i] = stored
	}
	equal(t, "grants DisableUser reports", rev.Grants, want)
	if rev.RefreshTokens != 3 || rev.AccessTokens != 2 {
		t.Fatalf("DisableUser reports %d refresh and %d access tokens, want 3 and 2", rev.RefreshTokens, rev.AccessTokens)
	}

	// Nothing of the user's keeps working; earlier revocations keep their times.
	for _, rt := range []store.RefreshToken{rt2, rt3, rt5} {
		got, err := s.GetRefreshToken(ctx, rt.Digest)
		must(t, err, "GetRefreshToken")
		timeEqual(t, "UsedAt of a live refresh token of the disabled user", got.UsedAt, now)
		_, err = s.RotateRefreshToken(ctx, rt.Digest, t0.Add(2*time.Minute), nextRefreshToken(rt, t0.Add(2*time.Minute)), 0)
		wantErr(t, err, store.ErrNotFound, "RotateRefreshToken of the disabled user")
	}
	for _, c := range []struct {
		digest string
		at     time.Time
	}{{rt1.Digest, early}, {rt4.Digest, early}} {
		got, err := s.GetRefreshToken(ctx, c.digest)
		must(t, err, "GetRefreshToken")
		timeEqual(t, "UsedAt of a refresh token used before (kept)", got.UsedAt, c.at)
	}
	for _, c := range []struct {
		digest string
		at     time.Time
	}{{at1.Digest, now}, {at3.Digest, now}, {at2.Digest, early}} {
		got, err := s.GetAccessToken(ctx, c.digest)
		must(t, err, "GetAccessToken")
		timeEqual(t, "RevokedAt of an access token of the disabled user", got.RevokedAt, c.at)
	}
	got3, err := s.GetGrant(ctx, g3.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt of a grant revoked before (kept)", got3.RevokedAt, early)
	wantErr(t, s.CreateAccessToken(ctx, newAccessToken(g1)), store.ErrNotFound, "CreateAccessToken in a grant of the disabled user")

	// Nobody else is touched.
	gotSG, err := s.GetGrant(ctx, sg.ID)
	must(t, err, "GetGrant")
	equal(t, "another user's grant", gotSG, sg)
	gotSRT, err := s.GetRefreshToken(ctx, srt.Digest)
	must(t, err, "GetRefreshToken")
	equal(t, "another user's refresh token", gotSRT, srt)
	for _, at := range []store.AccessToken{sat, cc} {
		got, err := s.GetAccessToken(ctx, at.Digest)
		must(t, err, "GetAccessToken")
		equal(t, "another user's (or client's) access token", got, at)
	}
	if su, _ := s.GetUser(ctx, stranger.ID); su.Disabled {
		t.Fatal("DisableUser disabled another user")
	}

	// Again: nothing left to revoke, and the first times are kept.
	rev, err = s.DisableUser(ctx, u.ID, now.Add(time.Hour))
	must(t, err, "DisableUser again")
	if len(rev.Grants) != 0 || rev.RefreshTokens != 0 || rev.AccessTokens != 0 {
		t.Fatalf("DisableUser of a disabled user with nothing live revoked %s", show(rev))
	}
	got1, err := s.GetGrant(ctx, g1.ID)
	must(t, err, "GetGrant")
	timeEqual(t, "RevokedAt after a second DisableUser (first kept)", got1.RevokedAt, now)

	// Enabling does not bring anything back.
	must(t, s.SetUserDisabled(ctx, u.ID, false), "SetUserDisabled(false)")
	if gotU, _ := s.GetUser(ctx, u.ID); gotU.Disabled {
		t.Fatal("SetUserDisabled(false) left the user disabled")
	}
	for _, g := range want {
		got, err := s.GetGrant(ctx, g.ID)
		must(t, err, "GetGrant")
		timeEqual(t, "RevokedAt of a grant after enabling its user", got.RevokedAt, now)
	}
	_, err = s.RotateRefreshToken(ctx, rt2.Digest, now, nextRefreshToken(rt2, now), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken after enabling its user")
	if got, _ := s.GetAccessToken(ctx, at1.Digest); got.RevokedAt == nil {
		t.Fatal("enabling the user un-revoked an access token")
	}

	// A grant from a new sign-in works, and a second disable ends just it.
	g5, rt6 := grant(t, s, a, u)
	rev, err = s.DisableUser(ctx, u.ID, now.Add(2*time.Hour))
	must(t, err, "DisableUser (after a new sign-in)")
	if len(rev.Grants) != 1 || rev.Grants[0].ID != g5.ID || rev.RefreshTokens != 1 || rev.AccessTokens != 0 {
		t.Fatalf("DisableUser after a new sign-in revoked %s, want just grant %s and its refresh token", show(rev), g5.ID)
	}
	_, err = s.RotateRefreshToken(ctx, rt6.Digest, now.Add(2*time.Hour), nextRefreshToken(rt6, now.Add(2*time.Hour)), 0)
	wantErr(t, err, store.ErrNotFound, "RotateRefreshToken after the second disable")

	// A user without grants; an unknown user.
	lonely := user(t, s)
	rev, err = s.DisableUser(ctx, lonely.ID, now)
	must(t, err, "DisableUser of a user without grants")
	if len(rev.Grants) != 0 || rev.RefreshTokens != 0 || rev.AccessTokens != 0 {
		t.Fatalf("DisableUser of a user without grants revoked %s", show(rev))
	}
	_, err = s.DisableUser(ctx, "no-such-user", now)
	wantErr(t, err, store.ErrNotFound, "DisableUser of an unknown user")
}
