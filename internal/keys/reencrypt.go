package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/authd/authd/internal/store"
)

// ReencryptStore is the part of store.Store Reencrypt uses.
type ReencryptStore interface {
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
	ResealSigningKeys(ctx context.Context, rs []store.SigningKeyReseal) (int, error)
}

// ReencryptResult counts what Reencrypt did with the stored signing keys.
type ReencryptResult struct {
	// Reencrypted were encrypted with a previous secret and now are with
	// the current one.
	Reencrypted int `json:"reencrypted"`
	// Current were encrypted with the current secret already.
	Current int `json:"current"`
	// Changed were rewritten or deleted (purged) by someone else between
	// reading and writing; a second run looks at them again.
	Changed int `json:"changed"`
	// Undecryptable lists the keys no configured secret decrypts: the
	// secret they need is not configured, or the row is damaged. While
	// there are any, do not drop a previous secret.
	Undecryptable []string `json:"undecryptable,omitempty"`
}

// reencryptBatch is how many keys one statement rewrites.
const reencryptBatch = 100

// Reencrypt encrypts every stored signing key that is encrypted with one
// of previous under current, so that the previous secrets can be removed
// from the configuration (`authd keys reencrypt`). Keys are rewritten in
// statements of at most reencryptBatch keys, each a compare-and-set on the
// old ciphertext; nothing else of a key changes (its id, state and public
// half stay, so tokens it signed keep verifying). It is idempotent, and
// safe while replicas serve: they decrypt with the current secret or any
// previous one, and have the private key they sign with in memory.
//
// Keys no configured secret decrypts are listed in the result and left
// as they are; err is nil unless the store fails.
func Reencrypt(ctx context.Context, st ReencryptStore, current []byte, previous [][]byte) (ReencryptResult, error) {
	var res ReencryptResult
	if len(current) != 32 {
		return res, errors.New("keys: the current encryption key must be 32 bytes (set keys.encryption_secret)")
	}
	for i, k := range previous {
		if len(k) != 32 {
			return res, fmt.Errorf("keys: previous encryption key %d must be 32 bytes, got %d", i+1, len(k))
		}
	}
	keks := append([][]byte{current}, previous...)
	rows, err := st.ListSigningKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("keys: listing signing keys: %w", err)
	}
	var batch []store.SigningKeyReseal
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := st.ResealSigningKeys(ctx, batch)
		if err != nil {
			return fmt.Errorf("keys: re-encrypting signing keys: %w", err)
		}
		res.Reencrypted += n
		res.Changed += len(batch) - n
		batch = batch[:0]
		return nil
	}
	for _, r := range rows {
		priv, which, err := openAny(keks, r.ID, r.EncryptedPrivateKey)
		switch {
		case err != nil:
			res.Undecryptable = append(res.Undecryptable, r.ID)
			continue
		case which == 0:
			res.Current++
			continue
		}
		sealed, err := seal(current, r.ID, priv)
		if err != nil {
			return res, err
		}
		batch = append(batch, store.SigningKeyReseal{ID: r.ID, Old: r.EncryptedPrivateKey, New: sealed})
		if len(batch) == reencryptBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	return res, flush()
}
