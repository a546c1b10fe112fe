package upstreamtokens_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstreamtokens"
)

const (
	secretA = "secret-A-0123456789abcdef0123456789abcdef"
	secretB = "secret-B-0123456789abcdef0123456789abcdef"
	secretC = "secret-C-0123456789abcdef0123456789abcdef"
)

func keyring(t *testing.T, current string, previous ...string) *upstreamtokens.Keyring {
	t.Helper()
	kr, err := upstreamtokens.NewKeyring(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// Rotating keys.encryption_secret from A to B: with A kept as a previous
// secret, grants kept under A are handed out and a refresh seals the new
// row under B; Reseal moves the rest to B (counting, not decrypting, rows
// under B already; a second run finds nothing to do) and leaves rows under
// an unconfigured secret alone; afterwards B alone opens every row,
// refresh tokens included.
func TestResealUnderCurrentSecret(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			ctx := t.Context()
			newUser := func(subject string) store.User {
				u, err := f.st.UpsertUser(ctx, store.User{Provider: "github", Subject: subject, CreatedAt: time.Now(), UpdatedAt: time.Now(), LastLoginAt: time.Now()})
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			krA, krBA, krB := keyring(t, secretA), keyring(t, secretB, secretA), keyring(t, secretB)
			if krBA.KeyID() != krB.KeyID() || krBA.KeyID() == krA.KeyID() {
				t.Fatal("KeyID is not the current secret's key id")
			}

			// Under A: the fixture's user, and a second user with a grant
			// of its own (a refresh token of its own).
			bA := f.broker(t, krA)
			if err := bA.Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatal(err)
			}
			second := newUser("second")
			secondGrant := signIn(t, f.gh.Client(), f.conn).Grant
			if err := bA.Keep(ctx, second.ID, "github", secondGrant); err != nil {
				t.Fatal(err)
			}
			// Under C, which will not be configured.
			lost := newUser("lost")
			if err := f.broker(t, keyring(t, secretC)).Keep(ctx, lost.ID, "github", signIn(t, f.gh.Client(), f.conn).Grant); err != nil {
				t.Fatal(err)
			}
			lostRow, err := f.st.GetUpstreamToken(ctx, lost.ID, "github")
			if err != nil {
				t.Fatal(err)
			}

			// B with A as previous: rows under A open; a refresh seals
			// under B.
			bBA := f.broker(t, krBA)
			tok, err := bBA.Token(ctx, second.ID, "github")
			if err != nil || tok.AccessToken != secondGrant.AccessToken {
				t.Fatalf("Token of a row sealed under the previous secret: %v", err)
			}
			f.advance(9 * time.Hour)
			refreshed, err := bBA.Token(ctx, f.user.ID, "github")
			if err != nil {
				t.Fatalf("refresh of a row sealed under the previous secret: %v", err)
			}
			if login, _ := f.githubLogin(t, refreshed.AccessToken); login != "octo" {
				t.Fatal("the refreshed token does not work at the upstream")
			}
			row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
			if err != nil || row.KeyID != krB.KeyID() {
				t.Fatalf("the refreshed row is sealed under key %q (%v), want the current %q", row.KeyID, err, krB.KeyID())
			}

			// The row under C stops Reseal (TestResealMixedWritesNothing)
			// until it is told to skip such rows (C is known to be lost).
			unknown := map[string]int{keyring(t, secretC).KeyID(): 1}
			res, err := krBA.Reseal(ctx, f.st, 1, false)
			if want := (upstreamtokens.ResealResult{Pending: 1, Current: 1, Undecryptable: 1, UnknownKeys: unknown}); err != nil || !reflect.DeepEqual(res, want) {
				t.Fatalf("Reseal: %+v, %v; want %+v", res, err, want)
			}
			res, err = krBA.Reseal(ctx, f.st, 1, true) // a page per row
			if err != nil {
				t.Fatalf("Reseal: %v", err)
			}
			if want := (upstreamtokens.ResealResult{Resealed: 1, Current: 1, Undecryptable: 1, UnknownKeys: unknown}); !reflect.DeepEqual(res, want) {
				t.Fatalf("Reseal: %+v, want %+v", res, want)
			}
			if got, _ := f.st.GetUpstreamToken(ctx, lost.ID, "github"); got.KeyID != lostRow.KeyID || !slices.Equal(got.Sealed, lostRow.Sealed) {
				t.Fatal("Reseal changed a row it cannot open")
			}
			res, err = krBA.Reseal(ctx, f.st, 0, true)
			if want := (upstreamtokens.ResealResult{Current: 2, Undecryptable: 1, UnknownKeys: unknown}); err != nil || !reflect.DeepEqual(res, want) {
				t.Fatalf("second Reseal: %+v, %v; want %+v", res, err, want)
			}

			// B alone: the second user's expired grant refreshes with the
			// refresh token resealed under B.
			bB := f.broker(t, krB)
			tok, err = bB.Token(ctx, second.ID, "github")
			if err != nil {
				t.Fatalf("Token under the new secret alone after Reseal: %v", err)
			}
			if tok.AccessToken == secondGrant.AccessToken {
				t.Fatal("the expired token was handed out instead of refreshed")
			}
			if login, _ := f.githubLogin(t, tok.AccessToken); login != "octo" {
				t.Fatal("the token refreshed under the new secret does not work at the upstream")
			}
			if _, err := bB.Token(ctx, f.user.ID, "github"); err != nil {
				t.Fatalf("Token of the row refreshed under B: %v", err)
			}
			if _, err := bB.Token(ctx, lost.ID, "github"); !errors.Is(err, upstreamtokens.ErrDecrypt) {
				t.Fatalf("Token of a row under an unconfigured secret: %v, want ErrDecrypt", err)
			}
		})
	}
}

// changingStore rewrites the first row of each reseal batch just before
// it is written, as a sign-in on another replica would.
type changingStore struct {
	store.Store
	kr *upstreamtokens.Keyring
}

func (s changingStore) ResealUpstreamTokens(ctx context.Context, rs []store.UpstreamTokenReseal) (int, error) {
	if len(rs) > 0 {
		_, err := s.UpdateUpstreamToken(ctx, rs[0].UserID, rs[0].Upstream, func(cur store.UpstreamToken) (*store.UpstreamToken, error) {
			cur.KeyID, cur.Sealed = s.kr.KeyID(), []byte("sealed by a sign-in")
			return &cur, nil
		})
		if err != nil {
			return 0, err
		}
	}
	return s.Store.ResealUpstreamTokens(ctx, rs)
}

// A row rewritten between Reseal's read and its write keeps what was
// written (a sign-in's new tokens), and is counted as changed.
func TestResealRowChangedMeanwhile(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			ctx := t.Context()
			if err := f.broker(t, keyring(t, secretA)).Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatal(err)
			}
			kr := keyring(t, secretB, secretA)
			res, err := kr.Reseal(ctx, changingStore{Store: f.st, kr: kr}, 0, false)
			if err != nil {
				t.Fatalf("Reseal: %v", err)
			}
			if want := (upstreamtokens.ResealResult{Changed: 1}); !reflect.DeepEqual(res, want) {
				t.Fatalf("Reseal: %+v, want %+v", res, want)
			}
			row, err := f.st.GetUpstreamToken(ctx, f.user.ID, "github")
			if err != nil || string(row.Sealed) != "sealed by a sign-in" {
				t.Fatalf("the row rewritten meanwhile was overwritten by Reseal (%v)", err)
			}
		})
	}
}

// A mixed set, one row under a previous secret and one under a secret
// that is not configured (the operator left it out, or mistyped the
// current one): Reseal rewrites nothing, the row it could open included,
// and says how many rows need which unknown key id.
func TestResealMixedWritesNothing(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t), 8*time.Hour)
			ctx := t.Context()
			if err := f.broker(t, keyring(t, secretA)).Keep(ctx, f.user.ID, "github", f.ident.Grant); err != nil {
				t.Fatal(err)
			}
			lost, err := f.st.UpsertUser(ctx, store.User{Provider: "github", Subject: "lost", CreatedAt: time.Now(), UpdatedAt: time.Now(), LastLoginAt: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			krC := keyring(t, secretC)
			if err := f.broker(t, krC).Keep(ctx, lost.ID, "github", signIn(t, f.gh.Client(), f.conn).Grant); err != nil {
				t.Fatal(err)
			}
			before := map[string]store.UpstreamToken{}
			for _, u := range []string{f.user.ID, lost.ID} {
				if before[u], err = f.st.GetUpstreamToken(ctx, u, "github"); err != nil {
					t.Fatal(err)
				}
			}
			krBA := keyring(t, secretB, secretA)
			res, err := krBA.Reseal(ctx, f.st, 0, false)
			if err != nil {
				t.Fatalf("Reseal: %v", err)
			}
			for u, b := range before {
				if got, err := f.st.GetUpstreamToken(ctx, u, "github"); err != nil || got.KeyID != b.KeyID || !slices.Equal(got.Sealed, b.Sealed) {
					t.Fatalf("Reseal rewrote a row while another was undecryptable (%v)", err)
				}
			}
			want := upstreamtokens.ResealResult{Pending: 1, Undecryptable: 1, UnknownKeys: map[string]int{krC.KeyID(): 1}}
			if !reflect.DeepEqual(res, want) {
				t.Fatalf("Reseal: %+v, want %+v", res, want)
			}
			if plan, err := krBA.PlanReseal(ctx, f.st); err != nil || !reflect.DeepEqual(plan, want) {
				t.Fatalf("PlanReseal: %+v, %v; want %+v", plan, err, want)
			}
		})
	}
}
