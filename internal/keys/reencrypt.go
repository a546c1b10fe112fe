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
	// Pending are encrypted with a previous secret and were left so: a
	// dry run (PlanReencrypt), or a run that found a key undecryptable.
	Pending int `json:"pending"`
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

// PlanReencrypt classifies every stored signing key, writing nothing:
// Pending are the keys Reencrypt would move to current.
func PlanReencrypt(ctx context.Context, st ReencryptStore, current []byte, previous [][]byte) (ReencryptResult, error) {
	res, reseals, err := classify(ctx, st, current, previous)
	res.Pending = len(reseals)
	return res, err
}

// Reencrypt encrypts every stored signing key that is encrypted with one
// of previous under current, so that the previous secrets can be removed
// from the configuration (`authd keys reencrypt`). Every key is decrypted
// before anything is written, and while any key is undecryptable nothing
// is written (they are listed, the others counted as Pending), unless
// skipUndecryptable: a secret left out of previous, or a mistyped
// current one, must not move some keys and strand the rest. Keys are
// rewritten in statements of at most reencryptBatch keys, each a
// compare-and-set on the old ciphertext; nothing else of a key changes
// (its id, state and public half stay, so tokens it signed keep
// verifying). It is idempotent, and safe while replicas serve: they
// decrypt with the current secret or any previous one, and have the
// private key they sign with in memory. err is nil unless the store fails.
func Reencrypt(ctx context.Context, st ReencryptStore, current []byte, previous [][]byte, skipUndecryptable bool) (ReencryptResult, error) {
	res, reseals, err := classify(ctx, st, current, previous)
	if err != nil {
		return res, err
	}
	if len(res.Undecryptable) > 0 && !skipUndecryptable {
		res.Pending = len(reseals)
		return res, nil
	}
	for len(reseals) > 0 {
		batch := reseals[:min(reencryptBatch, len(reseals))]
		reseals = reseals[len(batch):]
		n, err := st.ResealSigningKeys(ctx, batch)
		if err != nil {
			return res, fmt.Errorf("keys: re-encrypting signing keys: %w", err)
		}
		res.Reencrypted += n
		res.Changed += len(batch) - n
	}
	return res, nil
}

// classify decrypts every stored key and encrypts under current those
// that are under a previous secret.
func classify(ctx context.Context, st ReencryptStore, current []byte, previous [][]byte) (ReencryptResult, []store.SigningKeyReseal, error) {
	var res ReencryptResult
	if len(current) != 32 {
		return res, nil, errors.New("keys: the current encryption key must be 32 bytes (set keys.encryption_secret)")
	}
	for i, k := range previous {
		if len(k) != 32 {
			return res, nil, fmt.Errorf("keys: previous encryption key %d must be 32 bytes, got %d", i+1, len(k))
		}
	}
	keks := append([][]byte{current}, previous...)
	rows, err := st.ListSigningKeys(ctx)
	if err != nil {
		return res, nil, fmt.Errorf("keys: listing signing keys: %w", err)
	}
	var reseals []store.SigningKeyReseal
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
			return res, nil, err
		}
		reseals = append(reseals, store.SigningKeyReseal{ID: r.ID, Old: r.EncryptedPrivateKey, New: sealed})
	}
	return res, reseals, nil
}
