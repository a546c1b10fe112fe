package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/authd/authd/internal/authorize"
	"github.com/authd/authd/internal/cimd"
	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
)

// clientSource is where every endpoint gets its clients from, and the one
// place that forgets a client when it changes:
//
//   - the store (bounded: see store.Bounded);
//   - client ID metadata documents (when enabled): a URL client_id is
//     resolved by a cimd.Resolver. Only the sign-in flow (/authorize and
//     its pages) fetches the document of a client not seen before; /token,
//     /revoke and /introspect resolve only clients that have a record
//     already (cimd.WrapKnown), so they cannot be made to fetch URLs;
//   - a short-lived cache in front of each of those two lookups (see
//     clientauth.CachedClients): the hot paths read no client row, and a
//     sign-in flow reads its client once;
//   - invalidation: a change made through this replica's registration
//     endpoints (RFC 7592) is forgotten at once (writeThrough), one made
//     through another replica or the admin CLI when the database's change
//     notification arrives (changeListener calls invalidate), and after a
//     reconnection everything (invalidateAll). The caches' TTL bounds
//     staleness should notifications be lost.
type clientSource struct {
	st store.Store
	// signIn caches lookups that may fetch a new document; known caches
	// lookups of clients with a record only.
	signIn, known *clientauth.CachedClients
}

// newClientSource builds the client source over st from the
// client_metadata_documents and registration configuration. roots
// verifies document servers (nil: the system roots).
func newClientSource(cfg *config.Config, st store.Store, reg grants.Registry, roots *x509.CertPool, now func() time.Time, log *slog.Logger) *clientSource {
	var signIn, known clientauth.ClientGetter = st, st
	if c := cfg.ClientMetadataDocuments; c.Enabled {
		if c.AllowLoopback && !cfg.Dev {
			log.Warn("client_metadata_documents.allow_loopback is set: client metadata documents may be fetched from this host's loopback interface; never set it in production")
		}
		resolver := cimd.New(st, c, roots, log)
		resolver.RedirectURIPolicy = cfg.Registration.CheckRedirectURIs // documents obey registration.allowed_redirect_uris too
		resolver.Grants = reg
		signIn, known = cimd.Wrap(st, resolver), cimd.WrapKnown(st, resolver)
	}
	return &clientSource{
		st:     st,
		signIn: clientauth.NewCachedClients(signIn, clientauth.DefaultCacheTTL, now),
		known:  clientauth.NewCachedClients(known, clientauth.DefaultCacheTTL, now),
	}
}

// signInStore is the store of the sign-in flow, its client lookups
// resolved and cached by the source.
func (s *clientSource) signInStore() authorize.Store {
	return cachedClientStore{Store: s.st, clients: s.signIn}
}

// knownClients looks up the clients that call /token, /revoke and
// /introspect (clientauth.Authenticator.Clients).
func (s *clientSource) knownClients() clientauth.ClientGetter { return s.known }

// writeThrough is the store registration writes clients through: a client
// changed or deleted here is forgotten at once.
func (s *clientSource) writeThrough() register.Store {
	return invalidatingStore{Store: s.st, clients: s}
}

// invalidate forgets the client id (it changed).
func (s *clientSource) invalidate(id string) {
	s.signIn.Invalidate(id)
	s.known.Invalidate(id)
}

// invalidateAll forgets every client (changes may have been missed).
func (s *clientSource) invalidateAll() {
	s.signIn.InvalidateAll()
	s.known.InvalidateAll()
}

// invalidatingStore is the store the registration endpoints write through:
// once a client is changed or deleted (RFC 7592), the client source
// forgets it, so a deleted client or a replaced secret stops working on
// this replica at once rather than after the cache TTL. (Other replicas
// hear of it through the change notifications.)
type invalidatingStore struct {
	register.Store
	clients *clientSource
}

func (s invalidatingStore) UpdateClient(ctx context.Context, c store.Client) error {
	err := s.Store.UpdateClient(ctx, c)
	s.clients.invalidate(c.ID)
	return err
}

func (s invalidatingStore) UpdateClientIf(ctx context.Context, c store.Client, ratHash string) error {
	err := s.Store.UpdateClientIf(ctx, c, ratHash)
	s.clients.invalidate(c.ID)
	return err
}

func (s invalidatingStore) UpdateClientIfForgetConsents(ctx context.Context, c store.Client, ratHash string) error {
	err := s.Store.UpdateClientIfForgetConsents(ctx, c, ratHash)
	s.clients.invalidate(c.ID)
	return err
}

func (s invalidatingStore) DeleteClient(ctx context.Context, id string) error {
	err := s.Store.DeleteClient(ctx, id)
	s.clients.invalidate(id)
	return err
}

// cachedClientStore is the sign-in flow's store with client lookups served
// by the client source's cache.
type cachedClientStore struct {
	authorize.Store
	clients *clientauth.CachedClients
}

func (s cachedClientStore) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	return s.clients.GetClient(ctx, id, now)
}
