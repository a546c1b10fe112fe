package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/tokens"
	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstreamtokens"
)

// devUpstreamSecret encrypts kept upstream tokens under --dev when no
// keys.encryption_secret is set (the dev store lives in memory, or in a
// development database).
const devUpstreamSecret = "authd-development-mode-only-upstream-tokens"

// newBroker builds the broker for the upstreams with store_tokens, or nil
// when there is none. st is the bounded store (store.Bounded), as for
// requests: a refresh holds no connection while it calls the upstream
// (a lease, see internal/upstreamtokens).
func newBroker(cfg *config.Config, st store.Store, connectors []upstream.Connector, allowed func(string, store.User) error, now func() time.Time, log *slog.Logger) (*upstreamtokens.Broker, error) {
	ups := map[string]upstreamtokens.Upstream{}
	for i, uc := range cfg.Upstreams {
		if !uc.StoreTokens {
			continue
		}
		conn := connectors[i]
		u := upstreamtokens.Upstream{
			ID:                         uc.ID,
			Type:                       uc.Type,
			RevokeOnUpstreamRevocation: uc.RevokesOnUpstreamRevocation(),
			MembershipCheckInterval:    uc.MembershipInterval(),
		}
		u.Refresher, _ = conn.(upstream.Refresher)
		u.Memberships, _ = conn.(upstream.MembershipReader)
		ups[uc.ID] = u
	}
	if len(ups) == 0 {
		return nil, nil
	}
	secret := cfg.Keys.EncryptionSecret
	if secret == "" && cfg.Dev {
		secret = devUpstreamSecret
	}
	// Rows sealed under a secret rotated away from still open; new rows
	// are sealed under the current one.
	kr, err := upstreamtokens.NewKeyring(secret, cfg.Keys.PreviousEncryptionSecrets...)
	if err != nil {
		return nil, err
	}
	return &upstreamtokens.Broker{
		Store:     st,
		Keys:      kr,
		Upstreams: ups,
		Allowed:   allowed,
		Now:       now,
		Log:       log,
	}, nil
}

// grantCheck is what /token applies at code redemption and refresh: the
// user check (disabled, allowlist on the stored memberships), then, for
// upstreams that keep tokens, the memberships read again from the
// upstream when membership_check_interval has passed. Introspection and
// /verify apply only check: they must not call the upstream.
func grantCheck(check func(context.Context, store.User) error, b *upstreamtokens.Broker) func(context.Context, store.User) error {
	if b == nil {
		return check
	}
	return func(ctx context.Context, u store.User) error {
		if err := check(ctx, u); err != nil {
			return err
		}
		err := b.RecheckMemberships(ctx, u)
		if errors.Is(err, upstreamtokens.ErrNoLongerAllowed) {
			return fmt.Errorf("%w: %w", tokens.ErrUserNotAllowed, err)
		}
		// Anything else is an outage: 503, the grant kept.
		return err
	}
}

// keptTokensGrace is how long the background purge leaves the kept tokens
// of an upstream this replica does not keep (removed, store_tokens off)
// after their last write. Replicas need not agree on the upstreams: during
// a rolling deploy that adds an upstream or turns store_tokens on, or with
// one replica misconfigured, the others still write those rows (sign-ins,
// refreshes, membership checks) and they stay; an upstream really removed
// everywhere loses them a week later.
const keptTokensGrace = 7 * 24 * time.Hour

// keptUpstreams lists the ids of the upstreams with store_tokens.
func keptUpstreams(cfg *config.Config) []string {
	ids := []string{}
	for _, u := range cfg.Upstreams {
		if u.StoreTokens {
			ids = append(ids, u.ID)
		}
	}
	return ids
}
