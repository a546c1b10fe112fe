package cimd

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// Store is the part of store.Store the Resolver uses.
type Store interface {
	GetClient(ctx context.Context, id string, now time.Time) (store.Client, error)
	UpsertClient(ctx context.Context, c store.Client) error
	GetMetadataDocument(ctx context.Context, url string) (store.MetadataDocument, error)
	PutMetadataDocument(ctx context.Context, d store.MetadataDocument) error
}

// DocumentFetcher fetches a document (*Fetcher; tests may count calls).
type DocumentFetcher interface {
	Fetch(ctx context.Context, rawURL, etag string) (*Response, error)
}

// Resolver turns a client identifier URL into a client record.
//
// Caching: a document is stored with ExpiresAt = fetch time + its HTTP
// freshness lifetime clamped to [MinCache, MaxCache] (MinCache when the
// response says nothing), and used without any fetch until then. After
// that it is refetched (conditionally, with its ETag). If the refetch fails
// for a passing reason (network, timeout, 5xx) and the stored copy was
// fetched less than MaxCache ago, the stored copy is still used and retried
// after MinCache; a definite answer (404, an invalid document, a refused
// address) is never papered over. Invalid documents and errors are never
// stored (draft section 5.2).
type Resolver struct {
	Store    Store
	Fetcher  DocumentFetcher
	Policy   Policy
	MinCache time.Duration
	MaxCache time.Duration
	// RedirectURIPolicy, when set, is the operator's registration policy
	// for redirect URIs (register.Policy.CheckRedirectURIs: the
	// registration allowed_redirect_uris and max_redirect_uris), which a
	// document must pass like a registration request, so that a URL
	// client_id cannot bypass it. It applies whenever a document is
	// validated: fetched, refetched or re-read from the store.
	RedirectURIPolicy func(uris []string, appType string) *oauth.Error
	// Grants are the grant types the server serves; a document may list
	// those open to metadata-document clients (grants.Grant.Document).
	// The zero value means grants.Default().
	Grants grants.Registry
	Log    *slog.Logger

	flights  singleflight.Group
	initOnce sync.Once
	// fetching bounds concurrent fetches per process, so a burst of
	// requests naming many URLs cannot turn authd into a crawler.
	fetching chan struct{}
}

// maxConcurrentFetches bounds the fetches one process runs at once.
const maxConcurrentFetches = 16

// New builds a Resolver from the configuration. roots verifies document
// servers (nil: the system roots).
func New(st Store, cfg Config, roots *x509.CertPool, log *slog.Logger) *Resolver {
	return &Resolver{
		Store: st,
		Fetcher: NewFetcher(FetcherOptions{
			MaxBytes: cfg.MaxDocumentBytes, Timeout: cfg.FetchTimeout,
			AllowLoopback: cfg.AllowLoopback, RootCAs: roots,
		}),
		Policy:   Policy{AllowedHosts: cfg.AllowedHosts, DeniedHosts: cfg.DeniedHosts, BlockedClients: cfg.BlockedClients},
		MinCache: cfg.MinCache,
		MaxCache: cfg.MaxCache,
		Log:      log,
	}
}

// GetClient returns the client for id, which LooksLikeClientIDURL,
// fetching its document when it is unknown or its cached copy is stale.
// A client registered under that id by other means (config) is returned as
// it is.
func (r *Resolver) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	return r.getClient(ctx, id, now, true)
}

// GetKnownClient is GetClient for a client that must have a record
// already (it went through /authorize): an unknown id is store.ErrNotFound
// without any fetch. Stale documents of known clients are refreshed.
func (r *Resolver) GetKnownClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	return r.getClient(ctx, id, now, false)
}

// refused is the error of an unusable metadata-document client: 401
// invalid_client whose description names the problem, matching
// store.ErrNotFound so that every endpoint treats the client as unknown.
func refused(id, reason string, cause error) error {
	e := oauth.InvalidClient("the client ID metadata document at %s cannot be used: %s", truncateID(id), reason)
	if cause != nil {
		e.Err = fmt.Errorf("%w: %w", store.ErrNotFound, cause)
	} else {
		e.Err = store.ErrNotFound
	}
	return e
}

func truncateID(id string) string {
	if len(id) > 200 {
		return id[:200] + "..."
	}
	return id
}

func (r *Resolver) getClient(ctx context.Context, id string, now time.Time, fetchUnknown bool) (store.Client, error) {
	row, err := r.Store.GetClient(ctx, id, now)
	var existing *store.Client
	switch {
	case err == nil && row.Source != store.SourceMetadata:
		return row, nil
	case err == nil:
		existing = &row
	case !errors.Is(err, store.ErrNotFound):
		return store.Client{}, err
	case !fetchUnknown:
		return store.Client{}, err
	}
	u, perr := ParseClientID(id)
	if perr != nil {
		return store.Client{}, refused(id, perr.Error(), nil)
	}
	if reason := r.Policy.check(id, u); reason != "" {
		return store.Client{}, refused(id, reason, nil)
	}

	doc, err := r.Store.GetMetadataDocument(ctx, id)
	var cached *store.MetadataDocument
	switch {
	case err == nil:
		cached = &doc
	case !errors.Is(err, store.ErrNotFound):
		return store.Client{}, err
	}
	if cached != nil && now.Before(cached.ExpiresAt) {
		if existing != nil {
			return *existing, nil
		}
		// The record was deleted (by the operator) while the document
		// stayed cached: recreate it from the stored document.
		meta, err := r.parseDocument(id, cached.Document)
		if err != nil {
			return store.Client{}, refused(id, err.Error(), nil)
		}
		return r.save(ctx, id, meta, nil, now)
	}

	// Replicas share the store, but within one process concurrent requests
	// for the same stale document wait for one fetch. The fetch outlives a
	// caller that gives up (its own timeout bounds it), so the callers
	// still waiting get its answer.
	v, err, _ := r.flights.Do(id, func() (any, error) {
		return r.refresh(context.WithoutCancel(ctx), id, now, cached, existing)
	})
	if err != nil {
		return store.Client{}, err
	}
	return v.(store.Client), nil
}

// refresh fetches the document and stores it with the client record.
func (r *Resolver) refresh(ctx context.Context, id string, now time.Time, cached *store.MetadataDocument, existing *store.Client) (store.Client, error) {
	etag := ""
	if cached != nil && existing != nil {
		etag = cached.ETag
	}
	resp, err := r.fetch(ctx, id, etag)
	if err != nil {
		var fe *FetchError
		reason := "the document could not be fetched"
		if errors.As(err, &fe) {
			reason = fe.Reason
		}
		if fe != nil && fe.Transient && cached != nil && existing != nil && now.Before(cached.FetchedAt.Add(r.maxCache())) {
			// Keep serving the last good copy for a while, but no longer
			// than MaxCache after it was fetched.
			retry := now.Add(r.minCache())
			if limit := cached.FetchedAt.Add(r.maxCache()); limit.Before(retry) {
				retry = limit
			}
			r.log().WarnContext(ctx, "client metadata document refresh failed; using the stored copy",
				"client_id", id, "reason", reason, "error", err.Error(), "retry_at", retry)
			d := *cached
			d.ExpiresAt = retry
			if err := r.Store.PutMetadataDocument(ctx, d); err != nil {
				return store.Client{}, err
			}
			return *existing, nil
		}
		r.log().InfoContext(ctx, "client metadata document refused", "client_id", id, "reason", reason, "error", err.Error())
		return store.Client{}, refused(id, reason, err)
	}

	body, etagOut := resp.Body, resp.ETag
	if resp.NotModified {
		body = cached.Document // only asked when cached and existing
	}
	meta, err := r.parseDocument(id, body)
	if err != nil {
		r.log().InfoContext(ctx, "client metadata document refused", "client_id", id, "reason", err.Error())
		return store.Client{}, refused(id, err.Error(), nil)
	}
	c, err := r.save(ctx, id, meta, existing, now)
	if err != nil {
		return store.Client{}, err
	}
	lifetime := r.minCache()
	if resp.HasLifetime {
		lifetime = min(max(resp.Lifetime, r.minCache()), r.maxCache())
	}
	// The client record is written first: a stored document always has a
	// record at least as new.
	err = r.Store.PutMetadataDocument(ctx, store.MetadataDocument{
		URL: id, Document: body, ETag: etagOut, FetchedAt: now, ExpiresAt: now.Add(lifetime),
	})
	if err != nil {
		return store.Client{}, err
	}
	r.log().InfoContext(ctx, "client metadata document fetched", "client_id", id,
		"not_modified", resp.NotModified, "cache_for", lifetime.String())
	return c, nil
}

// parseDocument validates a document with the server's grant registry,
// then the operator's redirect URI policy.
func (r *Resolver) parseDocument(id string, body []byte) (store.ClientMetadata, error) {
	meta, err := validateDocument(id, body, r.Grants.OrDefault())
	if err != nil || r.RedirectURIPolicy == nil {
		return meta, err
	}
	if oerr := r.RedirectURIPolicy(meta.RedirectURIs, meta.ApplicationType); oerr != nil {
		return meta, errors.New(oerr.Description)
	}
	return meta, nil
}

// fetch runs one fetch within the concurrency bound; waiting for a slot
// counts against the fetch timeout.
func (r *Resolver) fetch(ctx context.Context, id, etag string) (*Response, error) {
	r.initOnce.Do(func() { r.fetching = make(chan struct{}, maxConcurrentFetches) })
	wait := time.NewTimer(DefaultFetchTimeout)
	defer wait.Stop()
	select {
	case r.fetching <- struct{}{}:
		defer func() { <-r.fetching }()
	case <-wait.C:
		return nil, &FetchError{Reason: "too many client metadata documents are being fetched; try again", Transient: true}
	case <-ctx.Done():
		return nil, &FetchError{Reason: "the document could not be fetched", Transient: true, Err: ctx.Err()}
	}
	return r.Fetcher.Fetch(ctx, id, etag)
}

// save upserts the client record for a validated document, keeping what
// the operator set on an existing record (disabled) and its history.
func (r *Resolver) save(ctx context.Context, id string, meta store.ClientMetadata, existing *store.Client, now time.Time) (store.Client, error) {
	c := store.Client{
		ID:        id,
		Source:    store.SourceMetadata,
		Metadata:  meta,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if existing != nil {
		c.CreatedAt = existing.CreatedAt
		c.LastUsedAt = existing.LastUsedAt
		c.Disabled = existing.Disabled
	}
	if err := r.Store.UpsertClient(ctx, c); err != nil {
		return store.Client{}, err
	}
	return c, nil
}

func (r *Resolver) minCache() time.Duration {
	if r.MinCache > 0 {
		return r.MinCache
	}
	return DefaultMinCache
}

func (r *Resolver) maxCache() time.Duration {
	if r.MaxCache > 0 {
		return r.MaxCache
	}
	return DefaultMaxCache
}

func (r *Resolver) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// ClientStore is a store.Store whose GetClient also knows metadata-document
// clients. Wrapping the store handed to the endpoints is all it takes to
// accept URL client_ids at /authorize, /token, /revoke and /introspect.
type ClientStore struct {
	store.Store
	Resolver *Resolver
	// KnownOnly resolves only clients that have a record already; see
	// Resolver.GetKnownClient.
	KnownOnly bool
}

// Wrap returns st with GetClient resolving URL client_ids through r,
// fetching unknown ones: for /authorize, where a metadata-document client
// first appears.
func Wrap(st store.Store, r *Resolver) *ClientStore { return &ClientStore{Store: st, Resolver: r} }

// WrapKnown is Wrap for /token, /revoke and /introspect: a URL client_id
// that never went through /authorize has no record, and no code or token
// can exist for it, so nothing is fetched for it. Otherwise anyone could
// make authd fetch arbitrary URLs at the token endpoint's rate limit.
func WrapKnown(st store.Store, r *Resolver) *ClientStore {
	return &ClientStore{Store: st, Resolver: r, KnownOnly: true}
}

// GetClient resolves ids that look like URLs; others go to the store.
func (s *ClientStore) GetClient(ctx context.Context, id string, now time.Time) (store.Client, error) {
	if !LooksLikeClientIDURL(id) {
		return s.Store.GetClient(ctx, id, now)
	}
	if s.KnownOnly {
		return s.Resolver.GetKnownClient(ctx, id, now)
	}
	return s.Resolver.GetClient(ctx, id, now)
}
