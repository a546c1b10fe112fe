package main

import (
	"context"

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
	cache *clientauth.CachedClients
}

func (s invalidatingStore) UpdateClient(ctx context.Context, c store.Client) error {
	err := s.Store.UpdateClient(ctx, c)
	s.cache.Invalidate(c.ID)
	return err
}

func (s invalidatingStore) UpdateClientIf(ctx context.Context, c store.Client, ratHash string) error {
	err := s.Store.UpdateClientIf(ctx, c, ratHash)
	s.cache.Invalidate(c.ID)
	return err
}

func (s invalidatingStore) DeleteClient(ctx context.Context, id string) error {
	err := s.Store.DeleteClient(ctx, id)
	s.cache.Invalidate(id)
	return err
}
