package keys_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

var (
	kekA = keys.DeriveKEK("secret-A-0123456789abcdef0123456789abcdef")
	kekB = keys.DeriveKEK("secret-B-0123456789abcdef0123456789abcdef")
	kekC = keys.DeriveKEK("secret-C-0123456789abcdef0123456789abcdef")
)

// Rotating keys.encryption_secret from A to B: with B alone the stored
// keys are refused at start-up (ErrDecrypt naming the remedy) and nothing
// in the store changes; with B and A as a previous secret the same key
// signs, old tokens verify, a next key encrypted under A activates and a
// new key is encrypted under B; Reencrypt moves every key to B (and a
// second run finds nothing to do), after which B alone works.
func TestRotateEncryptionSecret(t *testing.T) {
	t.Parallel()
	for name, newStore := range map[string]func(t *testing.T) store.Store{
		"postgres": func(t *testing.T) store.Store { return pgtest.New(t) },
		"memory":   func(*testing.T) store.Store { return store.NewMemory() },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := newClock()
			st := newStore(t)
			withKeys := func(current []byte, previous ...[]byte) keys.Options {
				o := options(t, c, "ES256")
				o.EncryptionKey, o.PreviousEncryptionKeys = current, previous
				return o
			}

			mA := newManager(t, st, withKeys(kekA))
			tokA := sign(t, mA, c.Now())
			kidA := headerKid(t, tokA)
			nextKid, err := mA.Rotate(ctx, false)
			if err != nil {
				t.Fatal(err)
			}

			// B alone, before re-encryption: refused, nothing written.
			before := storedKeys(t, st)
			_, err = keys.New(ctx, st, withKeys(kekB))
			if !errors.Is(err, keys.ErrDecrypt) || !strings.Contains(err.Error(), "keys.previous_encryption_secrets") || !strings.Contains(err.Error(), "authd keys reencrypt") {
				t.Fatalf("New with only the new secret: %v, want ErrDecrypt naming keys.previous_encryption_secrets and authd keys reencrypt", err)
			}
			if after := storedKeys(t, st); !reflect.DeepEqual(after, before) {
				t.Fatal("a refused start changed the stored keys")
			}

			// B, with A as a previous secret.
			mBA := newManager(t, st, withKeys(kekB, kekA))
			if got := headerKid(t, sign(t, mBA, c.Now())); got != kidA {
				t.Fatalf("signing with %s after the secret changed, want the same key %s", got, kidA)
			}
			if _, err := verify(mBA, c, tokA); err != nil {
				t.Fatalf("a token signed before the secret changed: %v", err)
			}
			c.Advance(time.Hour + time.Second) // the next key is due
			if err := mBA.Reload(ctx); err != nil {
				t.Fatalf("activating a key encrypted under the previous secret: %v", err)
			}
			tokNext := sign(t, mBA, c.Now())
			if got := headerKid(t, tokNext); got != nextKid {
				t.Fatalf("signing with %s, want the activated key %s", got, nextKid)
			}
			newKid, err := mBA.Rotate(ctx, false)
			if err != nil {
				t.Fatal(err)
			}

			rst := st.(keys.ReencryptStore)
			res, err := keys.Reencrypt(ctx, rst, kekB, [][]byte{kekA}, false)
			if err != nil {
				t.Fatalf("Reencrypt: %v", err)
			}
			if res.Reencrypted != 2 || res.Current != 1 || res.Changed != 0 || len(res.Undecryptable) != 0 {
				t.Fatalf("Reencrypt: %+v, want 2 re-encrypted (%s, %s) and 1 current (%s, rotated in under B)", res, kidA, nextKid, newKid)
			}
			after := storedKeys(t, st)
			for kid, r := range after {
				b := before[kid]
				if kid == newKid {
					continue
				}
				if slices.Equal(r.EncryptedPrivateKey, b.EncryptedPrivateKey) || r.ID != b.ID || !slices.Equal(r.PublicJWK, b.PublicJWK) || !r.CreatedAt.Equal(b.CreatedAt) {
					t.Fatalf("key %s: Reencrypt must change the ciphertext and nothing else", kid)
				}
			}
			res, err = keys.Reencrypt(ctx, rst, kekB, [][]byte{kekA}, false)
			if err != nil || res.Reencrypted != 0 || res.Current != 3 {
				t.Fatalf("second Reencrypt: %+v, %v; want nothing to do", res, err)
			}
			if again := storedKeys(t, st); !reflect.DeepEqual(again, after) {
				t.Fatal("a second Reencrypt rewrote keys")
			}

			// B alone, after re-encryption: the same key signs, old tokens
			// verify, the key rotated in under B activates.
			mB := newManager(t, st, withKeys(kekB))
			if got := headerKid(t, sign(t, mB, c.Now())); got != nextKid {
				t.Fatalf("signing with %s after re-encryption, want %s", got, nextKid)
			}
			if _, err := verify(mB, c, tokNext); err != nil {
				t.Fatalf("a token signed before re-encryption: %v", err)
			}
			c.Advance(time.Hour + time.Second)
			if err := mB.Reload(ctx); err != nil {
				t.Fatalf("activating the key rotated in under B: %v", err)
			}
			if got := headerKid(t, sign(t, mB, c.Now())); got != newKid {
				t.Fatalf("signing with %s, want %s", got, newKid)
			}
		})
	}
}

// Keys that no configured secret decrypts are reported by Reencrypt and
// left as they are; a previous key must be a derived 32-byte key.
func TestReencryptUndecryptable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	st := pgtest.New(t)
	o := options(t, c, "ES256")
	o.EncryptionKey = kekC
	m := newManager(t, st, o)
	kid := headerKid(t, sign(t, m, c.Now()))
	before := storedKeys(t, st)

	res, err := keys.Reencrypt(ctx, st, kekB, [][]byte{kekA}, false)
	if err != nil {
		t.Fatalf("Reencrypt: %v", err)
	}
	if res.Reencrypted != 0 || res.Current != 0 || !slices.Equal(res.Undecryptable, []string{kid}) {
		t.Fatalf("Reencrypt of a key under an unconfigured secret: %+v, want %s undecryptable", res, kid)
	}
	if !reflect.DeepEqual(storedKeys(t, st), before) {
		t.Fatal("Reencrypt changed a key it cannot decrypt")
	}

	if _, err := keys.Reencrypt(ctx, st, kekB, [][]byte{[]byte("short")}, false); err == nil {
		t.Fatal("Reencrypt accepted a previous key that is not 32 bytes")
	}
	o.EncryptionKey, o.PreviousEncryptionKeys = kekB, [][]byte{kekA[:16]}
	if _, err := keys.New(ctx, store.NewMemory(), o); err == nil || !strings.Contains(err.Error(), "previous encryption key 1") {
		t.Fatalf("New with a short previous key: %v", err)
	}
}

// A mixed set, one key under a previous secret and one under a secret
// that is not configured: Reencrypt rewrites nothing, the key it could
// decrypt included.
func TestReencryptMixedWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	st := pgtest.New(t)
	o := options(t, c, "ES256")
	o.EncryptionKey = kekA
	underA := headerKid(t, sign(t, newManager(t, st, o), c.Now()))
	o.EncryptionKey, o.PreviousEncryptionKeys = kekC, [][]byte{kekA}
	underC, err := newManager(t, st, o).Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	before := storedKeys(t, st)

	res, err := keys.Reencrypt(ctx, st, kekB, [][]byte{kekA}, false)
	if err != nil {
		t.Fatalf("Reencrypt: %v", err)
	}
	if !reflect.DeepEqual(storedKeys(t, st), before) {
		t.Fatalf("Reencrypt rewrote key %s while key %s was undecryptable", underA, underC)
	}
	want := keys.ReencryptResult{Pending: 1, Undecryptable: []string{underC}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("Reencrypt: %+v, want %+v (%s pending)", res, want, underA)
	}
	if plan, err := keys.PlanReencrypt(ctx, st, kekB, [][]byte{kekA}); err != nil || !reflect.DeepEqual(plan, want) {
		t.Fatalf("PlanReencrypt: %+v, %v; want %+v", plan, err, want)
	}
	if !reflect.DeepEqual(storedKeys(t, st), before) {
		t.Fatal("PlanReencrypt wrote")
	}
	// Told to skip what it cannot decrypt (the secret is known to be
	// lost), it moves the rest.
	res, err = keys.Reencrypt(ctx, st, kekB, [][]byte{kekA}, true)
	if want := (keys.ReencryptResult{Reencrypted: 1, Undecryptable: []string{underC}}); err != nil || !reflect.DeepEqual(res, want) {
		t.Fatalf("Reencrypt skipping the undecryptable: %+v, %v; want %+v", res, err, want)
	}
}
