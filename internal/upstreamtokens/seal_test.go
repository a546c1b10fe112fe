package upstreamtokens

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"testing"
)

// Rows sealed under a secret open while it is kept as a previous one
// (rotation), not once it is gone; a ciphertext opens only on its own row
// (user, upstream, key id); the key id reveals nothing of the key.
func TestKeyringRotationAndBinding(t *testing.T) {
	t.Parallel()
	const oldSecret, newSecret = "old-secret-0123456789abcdef0123456789", "new-secret-0123456789abcdef0123456789"
	old, err := NewKeyring(oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	s := secrets{AccessToken: "gho_access", RefreshToken: "ghr_refresh", TokenType: "bearer"}
	kid, sealed, err := old.seal("user-1", "github", s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("gho_access")) || bytes.Contains(sealed, []byte("ghr_refresh")) {
		t.Fatal("sealed row holds a token in clear")
	}
	if _, sealed2, _ := old.seal("user-1", "github", s); bytes.Equal(sealed, sealed2) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}

	rotated, err := NewKeyring(newSecret, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.open(kid, "user-1", "github", sealed)
	if err != nil || got != s {
		t.Fatalf("a row sealed under the previous secret: got %+v, %v", got, err)
	}
	newKid, _, err := rotated.seal("user-1", "github", s)
	if err != nil || newKid == kid {
		t.Fatalf("after rotation new rows must be sealed under the new key (kid %q, old %q, err %v)", newKid, kid, err)
	}
	gone, err := NewKeyring(newSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gone.open(kid, "user-1", "github", sealed); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("old row without its secret: got %v, want ErrDecrypt", err)
	}
	if gone.Knows(kid) || !rotated.Knows(kid) || !rotated.Knows(newKid) {
		t.Fatal("Knows does not follow the configured secrets")
	}

	for name, c := range map[string]struct{ kid, user, upstream string }{
		"another user":     {kid, "user-2", "github"},
		"another upstream": {kid, "user-1", "google"},
		"another key id":   {newKid, "user-1", "github"},
	} {
		if _, err := rotated.open(c.kid, c.user, c.upstream, sealed); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: got %v, want ErrDecrypt", name, err)
		}
	}
	// The same key under another key id: only the additional data differs,
	// so this fails only because the key id is bound into it (the
	// "another key id" case above also differs in the key).
	alias := &Keyring{current: kid, keys: map[string]cipher.AEAD{kid: old.keys[kid], "alias-" + kid: old.keys[kid]}}
	if _, err := alias.open(kid, "user-1", "github", sealed); err != nil {
		t.Fatalf("the aliased keyring does not open the row under its own key id: %v", err)
	}
	if _, err := alias.open("alias-"+kid, "user-1", "github", sealed); !errors.Is(err, ErrDecrypt) {
		t.Errorf("same key, another key id: got %v, want ErrDecrypt (the key id is not bound to the ciphertext)", err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := rotated.open(kid, "user-1", "github", tampered); !errors.Is(err, ErrDecrypt) {
		t.Errorf("tampered row: got %v, want ErrDecrypt", err)
	}
	if _, err := rotated.open(kid, "user-1", "github", sealed[:5]); !errors.Is(err, ErrDecrypt) {
		t.Errorf("truncated row: got %v, want ErrDecrypt", err)
	}
	if _, err := NewKeyring(""); err == nil {
		t.Error("NewKeyring accepted an empty secret")
	}
}
