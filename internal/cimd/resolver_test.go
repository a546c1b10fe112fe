package cimd

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// resolverEnv is a Resolver over a store with a document server and a
// clock the test moves.
type resolverEnv struct {
	srv *docServer
	st  store.Store
	r   *Resolver
	cs  *ClientStore
	now time.Time
}

func newResolverEnv(t *testing.T, st store.Store, cfg Config) *resolverEnv {
	t.Helper()
	srv := newDocServer(t)
	cfg.AllowLoopback = true // the document server is on 127.0.0.1
	r := New(st, cfg, srv.roots(), nil)
	return &resolverEnv{srv: srv, st: st, r: r, cs: Wrap(st, r), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (e *resolverEnv) get(id string) (store.Client, error) {
	return e.cs.GetClient(context.Background(), id, e.now)
}

// forEachStore runs the test on Postgres and on the memory store.
func forEachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("postgres", func(t *testing.T) { t.Parallel(); fn(t, pgtest.New(t)) })
	t.Run("memory", func(t *testing.T) { t.Parallel(); fn(t, store.NewMemory()) })
}

// assertRefused checks the error endpoints see: invalid_client naming the
// problem, matching store.ErrNotFound.
func assertRefused(t *testing.T, err error, want string) {
	t.Helper()
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidClient || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("error %v: want invalid_client matching ErrNotFound", err)
	}
	if !strings.Contains(oe.Description, want) {
		t.Fatalf("description %q does not contain %q", oe.Description, want)
	}
}

func TestResolverCachesWithinMaxAgeAndRefreshesAfter(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		e := newResolverEnv(t, st, DefaultConfig())
		id := e.srv.URL + "/client.json"
		e.srv.setDoc(t, "/client.json", validDoc(id), "max-age=600")

		c, err := e.get(id)
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != id || c.Source != store.SourceMetadata || c.SecretHash != "" || c.RegistrationTokenHash != "" ||
			c.Metadata.ClientName != "Example MCP Client" || c.Metadata.TokenEndpointAuthMethod != "none" {
			t.Fatalf("client %+v", c)
		}
		// Persisted: the record and the document.
		stored, err := st.GetClient(context.Background(), id, e.now)
		if err != nil || stored.Source != store.SourceMetadata || len(stored.Metadata.RedirectURIs) != 2 {
			t.Fatalf("stored client %+v, %v", stored, err)
		}
		doc, err := st.GetMetadataDocument(context.Background(), id)
		if err != nil || !doc.FetchedAt.Equal(e.now) || !doc.ExpiresAt.Equal(e.now.Add(10*time.Minute)) {
			t.Fatalf("stored document %+v, %v", doc, err)
		}

		// Within max-age: no second fetch, even after the document changed.
		changed := validDoc(id)
		changed["redirect_uris"] = []string{"https://app.example.com/oauth/callback"}
		e.srv.setDoc(t, "/client.json", changed, "max-age=600")
		e.now = e.now.Add(9*time.Minute + 59*time.Second)
		if c, err = e.get(id); err != nil || len(c.Metadata.RedirectURIs) != 2 {
			t.Fatalf("cached: %+v %v", c.Metadata.RedirectURIs, err)
		}
		if n := e.srv.hitsOf("/client.json"); n != 1 {
			t.Fatalf("%d fetches within max-age, want 1", n)
		}

		// After expiry: refetched, and the removed redirect URI is gone.
		e.now = e.now.Add(2 * time.Second)
		if c, err = e.get(id); err != nil {
			t.Fatal(err)
		}
		if n := e.srv.hitsOf("/client.json"); n != 2 {
			t.Fatalf("%d fetches after expiry, want 2", n)
		}
		if !slices.Equal(c.Metadata.RedirectURIs, []string{"https://app.example.com/oauth/callback"}) {
			t.Fatalf("redirect URIs after refresh %v", c.Metadata.RedirectURIs)
		}
		if c.CreatedAt.IsZero() || c.UpdatedAt.Equal(c.CreatedAt) {
			t.Fatalf("refresh must keep the record's CreatedAt: %+v", c)
		}
	})
}

func TestResolverCacheBounds(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		e := newResolverEnv(t, st, DefaultConfig())
		for path, tc := range map[string]struct {
			cc   string
			want time.Duration
		}{
			"/short": {"max-age=5", DefaultMinCache},          // floor
			"/long":  {"max-age=31536000", DefaultMaxCache},   // ceiling
			"/none":  {"", DefaultMinCache},                   // no header
			"/nost":  {"no-store", DefaultMinCache},           // no-store: floor
			"/mid":   {"public, max-age=7200", 2 * time.Hour}, // as given
		} {
			id := e.srv.URL + path
			e.srv.setDoc(t, path, validDoc(id), tc.cc)
			if _, err := e.get(id); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			doc, err := st.GetMetadataDocument(context.Background(), id)
			if err != nil || doc.ExpiresAt.Sub(doc.FetchedAt) != tc.want {
				t.Errorf("%s (%q): lifetime %s, want %s (%v)", path, tc.cc, doc.ExpiresAt.Sub(doc.FetchedAt), tc.want, err)
			}
		}
	})
}

func TestResolverFetchFailureUsesStoredCopy(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		e := newResolverEnv(t, st, DefaultConfig())
		id := e.srv.URL + "/c"
		e.srv.setDoc(t, "/c", validDoc(id), "max-age=600")
		if _, err := e.get(id); err != nil {
			t.Fatal(err)
		}
		// Expired, and the server is failing: the stored copy (fetched
		// less than max_cache ago) still serves, retried after min_cache.
		e.srv.set("/c", page{status: http.StatusServiceUnavailable})
		e.now = e.now.Add(time.Hour)
		c, err := e.get(id)
		if err != nil || c.ID != id {
			t.Fatalf("fallback: %v", err)
		}
		doc, _ := st.GetMetadataDocument(context.Background(), id)
		if !doc.ExpiresAt.Equal(e.now.Add(DefaultMinCache)) {
			t.Fatalf("retry at %s, want %s", doc.ExpiresAt, e.now.Add(DefaultMinCache))
		}
		before := e.srv.hitsOf("/c")
		if _, err := e.get(id); err != nil || e.srv.hitsOf("/c") != before {
			t.Fatalf("retry before min_cache: %v, fetches %d -> %d", err, before, e.srv.hitsOf("/c"))
		}
		// Past max_cache since the last good fetch: no more fallback.
		e.now = e.now.Add(DefaultMaxCache)
		_, err = e.get(id)
		assertRefused(t, err, "HTTP 503")

		// A definite answer (404) is never papered over by the cache.
		e2 := newResolverEnv(t, st, DefaultConfig())
		id2 := e2.srv.URL + "/c"
		e2.srv.setDoc(t, "/c", validDoc(id2), "max-age=600")
		if _, err := e2.get(id2); err != nil {
			t.Fatal(err)
		}
		e2.srv.set("/c", page{status: http.StatusNotFound})
		e2.now = e2.now.Add(11 * time.Minute)
		_, err = e2.get(id2)
		assertRefused(t, err, "HTTP 404")
	})
}

func TestResolverRevalidatesWithETag(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		e := newResolverEnv(t, st, DefaultConfig())
		id := e.srv.URL + "/c"
		body := []byte(`{"client_id":"` + id + `","client_name":"E","redirect_uris":["http://127.0.0.1/cb"]}`)
		var mu sync.Mutex
		conditional := 0
		e.srv.set("/c", page{handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Cache-Control", "max-age=600")
			if r.Header.Get("If-None-Match") == `"v1"` {
				mu.Lock()
				conditional++
				mu.Unlock()
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}})
		if _, err := e.get(id); err != nil {
			t.Fatal(err)
		}
		e.now = e.now.Add(11 * time.Minute)
		c, err := e.get(id)
		if err != nil || c.Metadata.ClientName != "E" {
			t.Fatalf("after 304: %+v %v", c, err)
		}
		doc, _ := st.GetMetadataDocument(context.Background(), id)
		mu.Lock()
		defer mu.Unlock()
		if conditional != 1 || !doc.FetchedAt.Equal(e.now) || string(doc.Document) != string(body) {
			t.Fatalf("conditional requests %d, document %+v", conditional, doc)
		}
	})
}

func TestResolverRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		cfg := DefaultConfig()
		e := newResolverEnv(t, st, cfg)
		base := e.srv.URL
		e.r.Policy = Policy{BlockedClients: []string{base + "/blocked"}, DeniedHosts: []string{"denied.example.com"}}

		mismatch := validDoc("https://other.example.com/c")
		e.srv.setDoc(t, "/mismatch", mismatch, "")
		noName := validDoc(base + "/noname")
		delete(noName, "client_name")
		e.srv.setDoc(t, "/noname", noName, "")
		noRedirects := validDoc(base + "/noredir")
		delete(noRedirects, "redirect_uris")
		e.srv.setDoc(t, "/noredir", noRedirects, "")
		pkj := validDoc(base + "/pkj")
		pkj["token_endpoint_auth_method"] = "private_key_jwt"
		e.srv.setDoc(t, "/pkj", pkj, "")
		e.srv.setDoc(t, "/blocked", validDoc(base+"/blocked"), "")

		for path, want := range map[string]string{
			"/mismatch": "client_id is not the URL",
			"/noname":   "no client_name",
			"/noredir":  "no redirect_uris",
			"/pkj":      "private_key_jwt is not supported",
			"/missing":  "HTTP 404",
			"/blocked":  "blocked by the operator",
		} {
			_, err := e.get(base + path)
			assertRefused(t, err, want)
			// Nothing was created: no client record, no cached document.
			if _, err := st.GetClient(context.Background(), base+path, e.now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: a client record was stored (%v)", path, err)
			}
			if _, err := st.GetMetadataDocument(context.Background(), base+path); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: the document was cached (%v)", path, err)
			}
		}
		if n := e.srv.hitsOf("/blocked"); n != 0 {
			t.Errorf("a blocked client's document was fetched %d times", n)
		}
		_, err := e.get("https://denied.example.com/c")
		assertRefused(t, err, "denied.example.com are blocked")
		_, err = e.get("https://example.com/")
		assertRefused(t, err, "must have a path")
	})
}

// TestResolverRedirectURIPolicy: a document is held to the operator's
// registration redirect URI policy (allowed_redirect_uris,
// max_redirect_uris), on its first fetch and on every refetch.
func TestResolverRedirectURIPolicy(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		e := newResolverEnv(t, st, DefaultConfig())
		e.r.RedirectURIPolicy = register.Policy{AllowedRedirectURIs: []string{"https://app.example.com/oauth/*"}}.CheckRedirectURIs
		base := e.srv.URL
		e.srv.setDoc(t, "/c", validDoc(base+"/c"), "max-age=600") // lists http://127.0.0.1/callback too
		appOnly := validDoc(base + "/app")
		appOnly["redirect_uris"] = []string{"https://app.example.com/oauth/callback"}
		e.srv.setDoc(t, "/app", appOnly, "max-age=600")

		_, err := e.get(base + "/c")
		assertRefused(t, err, "redirect URI 'http://127.0.0.1/callback' is not allowed by this server's registration policy")
		if _, err := st.GetClient(context.Background(), base+"/c", e.now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a client record was stored (%v)", err)
		}
		if _, err := st.GetMetadataDocument(context.Background(), base+"/c"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the document was cached (%v)", err)
		}
		if c, err := e.get(base + "/app"); err != nil || len(c.Metadata.RedirectURIs) != 1 {
			t.Fatalf("allowed document: %+v %v", c, err)
		}

		// max_redirect_uris, and a policy tightened after the document was
		// accepted: its next refetch is refused.
		e.r.RedirectURIPolicy = register.Policy{MaxRedirectURIs: 1}.CheckRedirectURIs
		_, err = e.get(base + "/c")
		assertRefused(t, err, "too many redirect_uris (at most 1)")
		e.r.RedirectURIPolicy = register.Policy{AllowedRedirectURIs: []string{"loopback"}}.CheckRedirectURIs
		e.now = e.now.Add(time.Hour)
		_, err = e.get(base + "/app")
		assertRefused(t, err, "is not allowed by this server's registration policy")
	})
}

func TestResolverKeepsOperatorState(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		e := newResolverEnv(t, st, DefaultConfig())
		// A config client whose id happens to be an https URL is not
		// resolved (draft section 7.1): no fetch.
		cfgID := e.srv.URL + "/configured"
		if err := st.CreateClient(ctx, store.Client{ID: cfgID, Source: store.SourceConfig, CreatedAt: e.now, UpdatedAt: e.now,
			Metadata: store.ClientMetadata{ClientName: "Configured", RedirectURIs: []string{"https://a.example.com/cb"}}}); err != nil {
			t.Fatal(err)
		}
		if c, err := e.get(cfgID); err != nil || c.Source != store.SourceConfig || e.srv.hitsOf("/configured") != 0 {
			t.Fatalf("config client: %+v %v", c, err)
		}
		// Non-URL ids go straight to the store.
		if _, err := e.get("some-uuid"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("plain id: %v", err)
		}

		// Disabled stays disabled across refreshes.
		id := e.srv.URL + "/c"
		e.srv.setDoc(t, "/c", validDoc(id), "max-age=600")
		c, err := e.get(id)
		if err != nil {
			t.Fatal(err)
		}
		c.Disabled = true
		if err := st.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		e.now = e.now.Add(time.Hour)
		if c, err = e.get(id); err != nil || !c.Disabled {
			t.Fatalf("after refresh: disabled=%v %v", c.Disabled, err)
		}
		// A deleted record comes back from the cached document, without a fetch.
		if err := st.DeleteClient(ctx, id); err != nil {
			t.Fatal(err)
		}
		before := e.srv.hitsOf("/c")
		if c, err = e.get(id); err != nil || c.Source != store.SourceMetadata || e.srv.hitsOf("/c") != before {
			t.Fatalf("recreated: %+v %v (fetches %d -> %d)", c, err, before, e.srv.hitsOf("/c"))
		}

		// Blocking applies to a client already in use, at /token too.
		e.r.Policy = Policy{BlockedClients: []string{id}}
		_, err = e.get(id)
		assertRefused(t, err, "blocked by the operator")
		_, err = WrapKnown(st, e.r).GetClient(ctx, id, e.now)
		assertRefused(t, err, "blocked by the operator")
		e.r.Policy = Policy{DeniedHosts: []string{"127.0.0.1"}}
		_, err = e.get(id)
		assertRefused(t, err, "127.0.0.1 are blocked")
	})
}

// TestResolverConcurrentMissFetchesOnce: concurrent requests for one
// unknown document share one fetch (a caller that found the cache empty
// but asks only after that fetch finished may fetch once more).
func TestResolverConcurrentMissFetchesOnce(t *testing.T) {
	e := newResolverEnv(t, store.NewMemory(), DefaultConfig())
	id := e.srv.URL + "/c"
	b := []byte(`{"client_id":"` + id + `","client_name":"E","redirect_uris":["http://127.0.0.1/cb"]}`)
	gate := make(chan struct{})
	e.srv.set("/c", page{handler: func(w http.ResponseWriter, r *http.Request) {
		<-gate
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = w.Write(b)
	}})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := e.get(id)
			errs <- err
		})
	}
	// Let the fetch finish once every caller is waiting on it or done.
	for e.srv.hitsOf("/c") == 0 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.srv.hitsOf("/c"); n > 2 {
		t.Fatalf("%d fetches for 8 concurrent requests", n)
	}
}

// TestWrapKnownFetchesNothingForUnknownClients: the token-side decorator
// answers not found for a URL no /authorize has seen, without fetching,
// and refreshes known clients' stale documents.
func TestWrapKnownFetchesNothingForUnknownClients(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		e := newResolverEnv(t, st, DefaultConfig())
		known := WrapKnown(st, e.r)
		id := e.srv.URL + "/c"
		e.srv.setDoc(t, "/c", validDoc(id), "max-age=600")
		if _, err := known.GetClient(context.Background(), id, e.now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown client: %v", err)
		}
		if n := e.srv.hitsOf("/c"); n != 0 {
			t.Fatalf("fetched %d times for an unknown client", n)
		}
		if _, err := e.get(id); err != nil { // as /authorize would
			t.Fatal(err)
		}
		e.now = e.now.Add(time.Hour)
		c, err := known.GetClient(context.Background(), id, e.now)
		if err != nil || c.ID != id || e.srv.hitsOf("/c") != 2 {
			t.Fatalf("known client with a stale document: %v, %d fetches", err, e.srv.hitsOf("/c"))
		}
		// Non-URL ids pass through.
		if _, err := known.GetClient(context.Background(), "uuid-like", e.now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("plain id: %v", err)
		}
	})
}
