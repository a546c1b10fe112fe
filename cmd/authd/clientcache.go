package main

import (
	"context"
	"time"

	"github.com/authd/authd/internal/authorize"
	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

// invalidatingStore is the store the registration endpoints write through:
// once a client is changed or deleted (RFC 7592), the client cache behind
// /token, /revoke and /introspect forgets it, so a deleted client or a
// replaced secret stops working on this replica at once rather than after
// the cache TTL. (Other replicas see the change within the TTL.)
type invalidatingStore struct {
	register.Store
	caches []*clientauth.CachedClients
}

func (s invalidatingStore) UpdateClient(ctx context.Context, c store.Client) error {
	err := s.Store.UpdateClient(ctx, c)
	s.invalidate(c.ID)
	return err
}

func (s invalidatingStore) UpdateClientIf(ctx context.Context, c store.Client, ratHash string) error {
	err := s.Store.UpdateClientIf(ctx, c, ratHash)
	s.invalidate(c.ID)
	return err
}

func (s invalidatingStore) UpdateClientIfForgetConsents(ctx context.Context, c store.Client, ratHash string) error {
	err := s.Store.UpdateClientIfForgetConsents(ctx, c, ratHash)
	s.invalidate(c.ID)
	return err
}

func (s invalidatingStore) DeleteClient(ctx context.Context, id string) error {
	err := s.Store.DeleteClient(ctx, id)
	s.invalidate(id)
	return err
}

func (s invalidatingStore) invalidate(id string) {
	for _, c := range s.caches {
		c.Invalidate(id)
	}
}

// cachedClientStore is the sign-in flow's store with client lookups served
// by a short-lived cache (see clientauth.CachedClients for what another
// replica's change costs: at most the TTL of staleness).
type cachedClientStore struct {
	authorize.Store
	clients *clientauth.CachedClients
}

func (s cachedClientStore) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	return s.clients.GetClient(ctx, id, now)
}
