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
	CountUpstreamTokensByKey(ctx context.Context) (map[string]int, error)
	ListUpstreamTokensAfter(ctx context.Context, afterUser, afterUpstream string, limit int) ([]store.UpstreamToken, error)
	ResealUpstreamTokens(ctx context.Context, rs []store.UpstreamTokenReseal) (int, error)
}

// ResealResult counts what Reseal did with the kept upstream tokens.
type ResealResult struct {
	// Resealed were sealed under a previous secret and now are under the
	// current one.
	Resealed int `json:"reencrypted"`
	// Pending are sealed under a previous secret and were left so: a dry
	// run (PlanReseal), or a run that found rows under an unknown key.
	Pending int `json:"pending"`
	// Current were sealed under the current secret already.
	Current int `json:"current"`
	// Changed were rewritten (a refresh or sign-in sealed new tokens under
	// the current secret) or deleted between reading and writing.
	Changed int `json:"changed"`
	// Undecryptable rows name a key no configured secret gives, or do not
	// open under theirs (damaged). Their users are asked to sign in at the
	// upstream again when a resource needs the grant.
	Undecryptable int `json:"undecryptable"`
	// UnknownKeys counts the rows under each key id no configured secret
	// gives (a key id is the fingerprint of the secret that sealed them).
	UnknownKeys map[string]int `json:"unknown_keys,omitempty"`
}

// DefaultResealBatch is how many rows Reseal reads and rewrites at a time.
const DefaultResealBatch = 500

// PlanReseal counts the kept upstream tokens by the key they are sealed
// under, without reading a ciphertext or writing: Current under the
// current key, Pending under a previous one, Undecryptable (and
// UnknownKeys) under a key no configured secret gives. Rows damaged under
// a known key are found only when Reseal opens them.
func (kr *Keyring) PlanReseal(ctx context.Context, st ResealStore) (ResealResult, error) {
	var res ResealResult
	counts, err := st.CountUpstreamTokensByKey(ctx)
	if err != nil {
		return res, fmt.Errorf("upstreamtokens: counting kept upstream tokens: %w", err)
	}
	for kid, n := range counts {
		switch {
		case kid == kr.current:
			res.Current += n
		case kr.Knows(kid):
			res.Pending += n
		default:
			res.Undecryptable += n
			if res.UnknownKeys == nil {
				res.UnknownKeys = map[string]int{}
			}
			res.UnknownKeys[kid] = n
		}
	}
	return res, nil
}

// Reseal seals every kept upstream token that is sealed under a previous
// secret under the current one (`authd keys reencrypt`), so that the
// previous secrets can be removed from the configuration. It first counts
// the rows by key (PlanReseal) and, while any row is under a key no
// configured secret gives, writes nothing (unless skipUndecryptable): a
// secret left out, or a mistyped current one, must not move some rows and
// strand the rest. Each row names the key it is sealed with, so rows
// under the current key are counted without being decrypted, and no
// decryption is a trial. Rows are read in pages of batch
// (DefaultResealBatch when 0) in key order and written one page per
// statement, each row a compare-and-set on its old ciphertext: a refresh
// or sign-in that rewrites a row meanwhile (under the current key) wins,
// and a refresh holding the row's lease keeps it. Idempotent, and safe
// while replicas serve with the same secrets configured.
func (kr *Keyring) Reseal(ctx context.Context, st ResealStore, batch int, skipUndecryptable bool) (ResealResult, error) {
	plan, err := kr.PlanReseal(ctx, st)
	if err != nil || (plan.Undecryptable > 0 && !skipUndecryptable) {
		return plan, err
	}
	res := ResealResult{UnknownKeys: plan.UnknownKeys}
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
