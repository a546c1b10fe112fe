package upstreamtokens

import (
	"context"
	"errors"
	"fmt"

	"github.com/authd/authd/internal/store"
)

// KeyID names the key new rows are sealed with (derived from the current
// secret; it reveals nothing of it).
func (kr *Keyring) KeyID() string { return kr.current }

// ResealStore is what Reseal uses.
type ResealStore interface {
	ListUpstreamTokensAfter(ctx context.Context, afterUser, afterUpstream string, limit int) ([]store.UpstreamToken, error)
	ResealUpstreamTokens(ctx context.Context, rs []store.UpstreamTokenReseal) (int, error)
}

// ResealResult counts what Reseal did with the kept upstream tokens.
type ResealResult struct {
	// Resealed were sealed under a previous secret and now are under the
	// current one.
	Resealed int `json:"reencrypted"`
	// Current were sealed under the current secret already.
	Current int `json:"current"`
	// Changed were rewritten (a refresh or sign-in sealed new tokens under
	// the current secret) or deleted between reading and writing.
	Changed int `json:"changed"`
	// Undecryptable rows name a key no configured secret gives, or do not
	// open under theirs (damaged). Their users are asked to sign in at the
	// upstream again when a resource needs the grant.
	Undecryptable int `json:"undecryptable"`
}

// DefaultResealBatch is how many rows Reseal reads and rewrites at a time.
const DefaultResealBatch = 500

// Reseal seals every kept upstream token that is sealed under a previous
// secret under the current one (`authd keys reencrypt`), so that the
// previous secrets can be removed from the configuration. Each row names
// the key it is sealed with, so rows under the current key are counted
// without being decrypted, and no decryption is a trial. Rows are read in
// pages of batch (DefaultResealBatch when 0) in key order and written one
// page per statement, each row a compare-and-set on its old ciphertext:
// a refresh or sign-in that rewrites a row meanwhile (under the current
// key) wins, and a refresh holding the row's lease keeps it. Idempotent,
// and safe while replicas serve with the same secrets configured.
func (kr *Keyring) Reseal(ctx context.Context, st ResealStore, batch int) (ResealResult, error) {
	var res ResealResult
	if batch <= 0 {
		batch = DefaultResealBatch
	}
	afterUser, afterUpstream := "", ""
	for {
		rows, err := st.ListUpstreamTokensAfter(ctx, afterUser, afterUpstream, batch)
		if err != nil {
			return res, fmt.Errorf("upstreamtokens: listing kept upstream tokens: %w", err)
		}
		if len(rows) == 0 {
			return res, nil
		}
		var rs []store.UpstreamTokenReseal
		for _, r := range rows {
			if r.KeyID == kr.current {
				res.Current++
				continue
			}
			s, err := kr.open(r.KeyID, r.UserID, r.Upstream, r.Sealed)
			if errors.Is(err, ErrDecrypt) {
				res.Undecryptable++
				continue
			}
			if err != nil {
				return res, err
			}
			kid, sealed, err := kr.seal(r.UserID, r.Upstream, s)
			if err != nil {
				return res, err
			}
			rs = append(rs, store.UpstreamTokenReseal{UserID: r.UserID, Upstream: r.Upstream,
				OldKeyID: r.KeyID, OldSealed: r.Sealed, KeyID: kid, Sealed: sealed})
		}
		n, err := st.ResealUpstreamTokens(ctx, rs)
		if err != nil {
			return res, fmt.Errorf("upstreamtokens: re-encrypting kept upstream tokens: %w", err)
		}
		res.Resealed += n
		res.Changed += len(rs) - n
		last := rows[len(rows)-1]
		afterUser, afterUpstream = last.UserID, last.Upstream
	}
}
