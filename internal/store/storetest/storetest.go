// Package storetest is the conformance suite every store.Store
// implementation passes (after dex's storage/conformance). It encodes the
// contract documented in package store: one-time use under concurrency,
// expiry against the caller's now, uniqueness errors, cascades, reuse
// detection and all-or-nothing writes.
//
// Each case gets a fresh store from newStore and runs in parallel with the
// others. Fixture times are truncated to microseconds (what Postgres keeps)
// and compared with time.Equal semantics; nil and empty slices compare equal
// except where the contract gives the difference a meaning.
package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
)

// Run runs every conformance case against stores made by newStore, which
// must return an empty store that lives until t ends.
//
// Cases that look at the whole store (lists, counts, Purge, the single
// active key) get an empty store of their own. The others work only on rows
// they create under fresh random ids, so they share one store and run at
// the same time, which also checks that unrelated rows do not disturb each
// other (and keeps the suite fast: a Postgres store is a new database).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	const own = true // the case needs an empty store of its own
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
		own  bool
	}{
		// Clients and users.
		{name: "ClientCRUD", fn: testClientCRUD},
		{name: "ClientRestrictionsNilVersusEmpty", fn: testClientRestrictionsNilVersusEmpty},
		{name: "UpsertClient", fn: testUpsertClient},
		{name: "UpdateClientIf", fn: testUpdateClientIf},
		{name: "UpdateClientIfForgetConsents", fn: testUpdateClientIfForgetConsents},
		{name: "ClientExpiry", fn: testClientExpiry},
		{name: "FindClientByFingerprint", fn: testFindClientByFingerprint},
		{name: "TouchClient", fn: testTouchClient},
		{name: "TouchClientIf", fn: testTouchClientIf},
		{name: "ListAndCountClients", fn: testListAndCountClients, own: own},
		{name: "UpsertUser", fn: testUpsertUser},
		{name: "FindUser", fn: testFindUser},
		{name: "ListUsers", fn: testListUsers, own: own},
		{name: "DisableUser", fn: testDisableUser},
		{name: "LogoutUser", fn: testLogoutUser},
		{name: "UseLogoutToken", fn: testUseLogoutToken},
		{name: "LogoutUpstreamUser", fn: testLogoutUpstreamUser},
		{name: "RevokeUserAccess", fn: testRevokeUserAccess},
		{name: "FinishUpstreamRefreshRevoked", fn: testFinishUpstreamRefreshRevoked},
		{name: "SettleUpstreamRefresh", fn: testSettleUpstreamRefresh},

		// The authorization flow.
		{name: "AuthRequestCRUD", fn: testAuthRequestCRUD},
		{name: "AuthRequestExpiry", fn: testAuthRequestExpiry},
		{name: "AuthRequestWithoutClient", fn: testAuthRequestWithoutClient},
		{name: "ClaimAuthRequest", fn: testClaimAuthRequest},
		{name: "Sessions", fn: testSessions},
		{name: "Consents", fn: testConsents},
		{name: "DeleteConsentRevokesGrants", fn: testDeleteConsentRevokesGrants},
		{name: "ForgetClientConsents", fn: testForgetClientConsents},
		{name: "AuthCodeCRUD", fn: testAuthCodeCRUD},
		{name: "RedeemAuthCode", fn: testRedeemAuthCode},
		{name: "RedeemAuthCodeIsAtomic", fn: testRedeemAuthCodeIsAtomic},

		// Grants and tokens.
		{name: "GrantsAndRefreshTokens", fn: testGrantsAndRefreshTokens},
		{name: "RotateRefreshTokenChainAndReuse", fn: testRotateRefreshTokenChainAndReuse},
		{name: "RotateRefreshTokenRejections", fn: testRotateRefreshTokenRejections},
		{name: "RotateRefreshTokenRetry", fn: testRotateRefreshTokenRetry},
		{name: "RevokeGrant", fn: testRevokeGrant},
		{name: "AccessTokens", fn: testAccessTokens},
		{name: "RevokedJTIs", fn: testRevokedJTIs},
		{name: "JoinedReads", fn: testJoinedReads},
		{name: "DeleteClientCascades", fn: testDeleteClientCascades},

		// Upstream tokens (the broker).
		{name: "UpstreamTokenCRUD", fn: testUpstreamTokenCRUD},
		{name: "UpdateUpstreamToken", fn: testUpdateUpstreamToken},
		{name: "ClaimMembershipCheck", fn: testClaimMembershipCheck},
		{name: "DeferMembershipCheck", fn: testDeferMembershipCheck},
		{name: "DisableUserDeletesUpstreamTokens", fn: testDisableUserDeletesUpstreamTokens},
		{name: "PurgeUpstreamTokens", fn: testPurgeUpstreamTokens, own: own},
		{name: "DeleteUpstreamTokensExcept", fn: testDeleteUpstreamTokensExcept, own: own},
		{name: "ListUpstreamTokensAfter", fn: testListUpstreamTokensAfter, own: own},
		{name: "ResealUpstreamTokens", fn: testResealUpstreamTokens},
		{name: "FinishDeadKeepsReseal", fn: testFinishDeadKeepsReseal},
		{name: "CountUpstreamTokensByKey", fn: testCountUpstreamTokensByKey, own: own},
		{name: "EncryptionSecrets", fn: testEncryptionSecrets, own: own},

		// Keys, metadata documents, maintenance.
		{name: "ValuesAreCopies", fn: testValuesAreCopies},
		{name: "SigningKeys", fn: testSigningKeys, own: own},
		{name: "ResealSigningKeys", fn: testResealSigningKeys, own: own},
		{name: "MetadataDocuments", fn: testMetadataDocuments},
		{name: "Purge", fn: testPurge, own: own},
		{name: "PurgeClientTokens", fn: testPurgeClientTokens, own: own},
		{name: "Stats", fn: testStats, own: own},

		// Races, each started from a barrier.
		{name: "ConcurrentRedeemAuthCode", fn: testConcurrentRedeemAuthCode},
		{name: "ConcurrentRotateRefreshToken", fn: testConcurrentRotateRefreshToken},
		{name: "ConcurrentRotateRefreshTokenRetry", fn: testConcurrentRotateRefreshTokenRetry},
		{name: "ConcurrentRetryAndRotate", fn: testConcurrentRetryAndRotate},
		{name: "ConcurrentConsumeAuthRequest", fn: testConcurrentConsumeAuthRequest},
		{name: "ConcurrentClaimAuthRequest", fn: testConcurrentClaimAuthRequest},
		{name: "ConcurrentCreateActiveSigningKey", fn: testConcurrentCreateActiveSigningKey, own: own},
		{name: "ConcurrentRefreshAndRevokeGrant", fn: testConcurrentRefreshAndRevokeGrant},
		{name: "ConcurrentCreateAccessTokenAndRevokeGrant", fn: testConcurrentCreateAccessTokenAndRevokeGrant},
		{name: "ConcurrentRotateAndDeleteClient", fn: testConcurrentRotateAndDeleteClient},
		{name: "ConcurrentRedeemAndDeleteClient", fn: testConcurrentRedeemAndDeleteClient},
		{name: "ConcurrentCreateAccessTokenAndDeleteClient", fn: testConcurrentCreateAccessTokenAndDeleteClient},
		{name: "ConcurrentAddConsent", fn: testConcurrentAddConsent},
		{name: "ConcurrentUpsertUser", fn: testConcurrentUpsertUser},
		{name: "ConcurrentDisableUser", fn: testConcurrentDisableUser},
		{name: "ConcurrentLogoutUpstreamUser", fn: testConcurrentLogoutUpstreamUser},
		{name: "ConcurrentCreates", fn: testConcurrentCreates},
		{name: "ConcurrentUpdateUpstreamToken", fn: testConcurrentUpdateUpstreamToken},
		{name: "UpstreamRefreshLease", fn: testUpstreamRefreshLease},
		{name: "ConcurrentResealAndUpdateUpstreamToken", fn: testConcurrentResealAndUpdateUpstreamToken},
	}
	shared := newStore(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := shared
			if c.own {
				s = newStore(t)
			}
			c.fn(t, s)
		})
	}
}

// Assertions.

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// equal compares two store values field by field, after mapping every
// time to UTC and every empty slice to nil (Postgres may hand back either).
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	g, w := normalize(reflect.ValueOf(got)), normalize(reflect.ValueOf(want))
	if !reflect.DeepEqual(g.Interface(), w.Interface()) {
		t.Fatalf("%s:\n got: %s\nwant: %s", what, show(got), show(want))
	}
}

var timeType = reflect.TypeFor[time.Time]()

func normalize(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			return reflect.ValueOf(v.Interface().(time.Time).UTC())
		}
		out := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			out.Field(i).Set(normalize(v.Field(i)))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(normalize(v.Elem()))
		return p
	case reflect.Slice:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(normalize(v.Index(i)))
		}
		return out
	}
	return v
}

// show renders a value readably (pointers followed, times in UTC).
func show(v any) string {
	b, err := json.Marshal(normalize(reflect.ValueOf(v)).Interface())
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// deepCopy returns a copy of v that shares no memory with it.
func deepCopy[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err, "deepCopy")
	var out T
	must(t, json.Unmarshal(b, &out), "deepCopy")
	return out
}

// sameSet checks that got holds exactly the elements of want, once each.
func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: got %q, want %q (in any order)", what, got, want)
	}
}

func timeEqual(t *testing.T, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil || !got.Equal(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// race runs f(0) … f(n-1) in goroutines that all wait on one barrier, so
// that they hit the store together, and returns when all are done. f must
// not call t.Fatal (record results instead).
func race(n int, f func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}
