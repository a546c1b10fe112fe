// Package keys manages the keys authd signs JWT access tokens with: it
// generates them, keeps their private halves encrypted at rest in the store,
// rotates them with a pre-publication period, publishes the public halves as
// a JWK set (RFC 7517), and signs and verifies tokens with golang-jwt.
//
// Every replica shares the keys through the store; the store admits one
// active key only, so replicas racing on an empty database agree on one.
// Each replica keeps the parsed keys in memory behind an atomic pointer and
// reloads them from the store every RefreshInterval, on the request that
// finds them stale, so signing never waits on the database otherwise.
//
// Life cycle of a stored key (store.KeyState):
//
//	next     published in the JWKS, not signing; becomes active once it has
//	         been published for Prepublish, so verifiers that cache the JWKS
//	         know it before the first token signed with it reaches them
//	active   the one signing key
//	retired  published until TokenLifetime (plus a margin) after it stopped
//	         signing, so the tokens it signed keep verifying until they expire
//
// Alternatively the operator provides the keys as PEM files (Options.PEMKeys):
// then nothing is stored, the first key signs, and every key is published.
package keys

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/store"
)

// Store is the part of store.Store the key manager uses.
type Store interface {
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
	CreateSigningKey(ctx context.Context, k store.SigningKey) error
	ActivateSigningKey(ctx context.Context, kid string, now, retireExpiry time.Time) error
}

// Defaults for zero Options fields, and the JWKS caching the rotation
// timing is designed around.
const (
	// JWKSMaxAge is how long verifiers may cache the JWK set: discovery
	// serves it as Cache-Control max-age. Short enough that a key rotated
	// immediately (compromise) reaches verifiers within minutes; long
	// enough that verifiers do not fetch it for every token.
	JWKSMaxAge = 10 * time.Minute
	// DefaultPrepublish is how long a new key is published before it signs.
	// It must exceed RefreshInterval (until every replica publishes the key)
	// plus JWKSMaxAge (until every verifier's cached copy has it); an hour
	// leaves ample room for verifiers that cache longer than told.
	DefaultPrepublish = time.Hour
	// DefaultRefreshInterval is how often a replica reloads keys from the store.
	DefaultRefreshInterval = 30 * time.Second
	// DefaultTokenLifetime is assumed when Options.TokenLifetime is zero:
	// generous, since publishing a retired key too long costs nothing.
	DefaultTokenLifetime = 24 * time.Hour

	// retireMargin is added to how long a retired key stays published, for
	// clock skew between replicas and verifiers' expiry leeway.
	retireMargin = 5 * time.Minute
	// unknownKidReload limits the reloads that tokens with unknown key ids
	// cause: at most one per interval, however many such tokens arrive.
	unknownKidReload = 5 * time.Second
	// loadTimeout bounds one reload from the store.
	loadTimeout = 5 * time.Second
)

// Errors Keyfunc returns (wrapped by golang-jwt; test with errors.Is).
var (
	ErrUnknownKey        = errors.New("keys: token signed by an unknown or withdrawn key")
	ErrAlgorithmMismatch = errors.New("keys: token algorithm does not match its key's algorithm")
	// ErrPEMKeys is returned by Rotate when the keys come from PEM files.
	ErrPEMKeys = errors.New("keys: signing keys come from keys.pem_files; rotate by adding the new key as a second file, waiting keys.prepublish, then making it the first")
)

// errNoActiveKey: the store holds no active key (only ever on first start).
var errNoActiveKey = errors.New("keys: no active signing key in the store")

// Options configures a Manager.
type Options struct {
	// Algorithm of generated keys: "ES256" (default) or "RS256". PEM keys
	// sign with the algorithm their type implies.
	Algorithm string
	// EncryptionKey is the 32-byte AES-256-GCM key that encrypts private
	// keys at rest; derive it with DeriveKEK. Not needed with PEMKeys.
	EncryptionKey []byte
	// PreviousEncryptionKeys are keys of secrets the operator rotated away
	// from (keys.previous_encryption_secrets): stored keys they encrypted
	// still decrypt, tried in order after EncryptionKey; nothing is
	// encrypted with them. `authd keys reencrypt` (Reencrypt) moves the
	// stored keys to EncryptionKey, after which they can go.
	PreviousEncryptionKeys [][]byte
	// PEMKeys, when set, are the private keys (EC P-256 or RSA of at least
	// 2048 bits, one per entry, unencrypted PEM). They are never stored; the
	// first signs, all are published. The store is not used.
	PEMKeys [][]byte
	// TokenLifetime is the longest lifetime of a token signed with these
	// keys; a retired key stays published this long plus RefreshInterval
	// and a margin. Default DefaultTokenLifetime.
	TokenLifetime time.Duration
	// Prepublish is how long a rotated-in key is published before it signs.
	// Default DefaultPrepublish; see there for the lower bound.
	Prepublish time.Duration
	// RefreshInterval is how often keys are reloaded from the store.
	// Default DefaultRefreshInterval.
	RefreshInterval time.Duration
	Now             func() time.Time
	Log             *slog.Logger
}

// Manager signs and verifies JWTs with the current keys. It is safe for
// concurrent use.
type Manager struct {
	store       Store // nil with PEM keys
	alg         string
	kek         []byte
	keks        [][]byte // kek, then the previous keys: what decrypts
	prepublish  time.Duration
	interval    time.Duration
	retireAfter time.Duration
	now         func() time.Time
	log         *slog.Logger

	cur atomic.Pointer[keySet] // never nil after New

	// loadMu serialises loads, so key sets are published in the order the
	// store was read.
	loadMu sync.Mutex
	// lastAttempt is when the last load started (UnixNano of now()).
	lastAttempt atomic.Int64
	// flight is closed when the load started by refresh finishes.
	flightMu sync.Mutex
	flight   chan struct{}
	// reloading counts Reload calls under way: the keys were announced to
	// have changed, so Sign waits for them rather than sign with a key
	// that may be withdrawn, and Keyfunc before refusing an unknown kid.
	reloading atomic.Int32
	// lastUnknownKid is when the last load for an unknown kid started.
	lastUnknownKid atomic.Int64
}

// key is one parsed key.
type key struct {
	id        string
	alg       string
	method    jwt.SigningMethod
	public    crypto.PublicKey
	private   crypto.Signer // the active key's only (every PEM key's)
	jwk       jwk
	rawJWK    []byte // as stored, to recognise the key on the next load
	expiresAt time.Time
	row       store.SigningKey // zero for PEM keys
}

// keySet is an immutable snapshot of the published keys.
type keySet struct {
	active    *key
	published []*key // active, then next keys, then retired ones
	byID      map[string]*key
	algs      []string
	jwks      []byte
}

// New loads the signing keys, creating the first one if the store has none.
func New(ctx context.Context, st Store, opts Options) (*Manager, error) {
	m := &Manager{
		store:      st,
		alg:        cmp.Or(opts.Algorithm, ES256),
		kek:        opts.EncryptionKey,
		prepublish: cmp.Or(opts.Prepublish, DefaultPrepublish),
		interval:   cmp.Or(opts.RefreshInterval, DefaultRefreshInterval),
		now:        opts.Now,
		log:        opts.Log,
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.retireAfter = cmp.Or(opts.TokenLifetime, DefaultTokenLifetime) + m.interval + retireMargin
	if m.alg != ES256 && m.alg != RS256 {
		return nil, fmt.Errorf("keys: unsupported algorithm %q (use ES256 or RS256)", m.alg)
	}
	if m.prepublish < 0 || m.interval < 0 || opts.TokenLifetime < 0 {
		return nil, errors.New("keys: durations must not be negative")
	}

	if len(opts.PEMKeys) > 0 {
		set, err := pemKeySet(opts.PEMKeys)
		if err != nil {
			return nil, err
		}
		m.store = nil
		m.cur.Store(set)
		if opts.Algorithm != "" && opts.Algorithm != set.active.alg {
			m.log.Info("signing with the first PEM key; keys.algorithm applies to generated keys only",
				"kid", set.active.id, "alg", set.active.alg)
		}
		return m, nil
	}

	if st == nil {
		return nil, errors.New("keys: a store is required unless PEM keys are given")
	}
	if len(m.kek) != 32 {
		return nil, errors.New("keys: an encryption key is required to store signing keys (set keys.encryption_secret, or provide keys.pem_files)")
	}
	m.keks = [][]byte{m.kek}
	for i, k := range opts.PreviousEncryptionKeys {
		if len(k) != 32 {
			return nil, fmt.Errorf("keys: previous encryption key %d must be 32 bytes, got %d (derive it with keys.DeriveKEK)", i+1, len(k))
		}
		m.keks = append(m.keks, k)
	}
	if m.prepublish < JWKSMaxAge+m.interval {
		m.log.Warn("keys.prepublish is shorter than the JWKS cache lifetime plus the reload interval: verifiers may see tokens from a new key before they see the key",
			"prepublish", m.prepublish.String(), "minimum", (JWKSMaxAge + m.interval).String())
	}

	err := m.load(ctx)
	if errors.Is(err, errNoActiveKey) {
		err = m.createFirstKey(ctx)
	}
	if err != nil {
		return nil, err
	}
	if a := m.cur.Load().active; a.alg != m.alg {
		m.log.Warn("the active signing key uses another algorithm than keys.algorithm; run `authd keys rotate` to switch",
			"kid", a.id, "active_alg", a.alg, "configured_alg", m.alg)
	}
	return m, nil
}

// createFirstKey stores a new active key. Replicas starting together on an
// empty store all try; the store lets one win (ErrConflict for the others)
// and everyone then loads the winner's key.
func (m *Manager) createFirstKey(ctx context.Context) error {
	row, err := m.newKey(store.KeyActive)
	if err != nil {
		return err
	}
	switch err := m.store.CreateSigningKey(ctx, row); {
	case err == nil:
		m.log.Info("created the first signing key", "kid", row.ID, "alg", row.Algorithm)
	case errors.Is(err, store.ErrConflict):
		m.log.Debug("another replica created the first signing key")
	default:
		return fmt.Errorf("keys: storing the first signing key: %w", err)
	}
	return m.load(ctx)
}

// newKey generates a key and returns its store row, private half sealed.
func (m *Manager) newKey(state store.KeyState) (store.SigningKey, error) {
	priv, err := generate(m.alg)
	if err != nil {
		return store.SigningKey{}, err
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return store.SigningKey{}, err
	}
	pub, err := publicJWK(priv.Public(), kid, m.alg)
	if err != nil {
		return store.SigningKey{}, err
	}
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return store.SigningKey{}, err
	}
	sealed, err := seal(m.kek, kid, priv)
	if err != nil {
		return store.SigningKey{}, err
	}
	now := m.now()
	row := store.SigningKey{
		ID:                  kid,
		Algorithm:           m.alg,
		State:               state,
		PublicJWK:           pubJSON,
		EncryptedPrivateKey: sealed,
		CreatedAt:           now,
	}
	if state == store.KeyActive {
		row.ActivatedAt = &now
	}
	return row, nil
}

// Sign signs claims with the active key. The header carries alg, kid and,
// when typ is not empty, typ (e.g. "at+jwt", RFC 9068 §2.1).
func (m *Manager) Sign(ctx context.Context, typ string, claims jwt.Claims) (string, error) {
	m.refresh(ctx, m.interval, false)
	k := m.signingKey()
	t := jwt.NewWithClaims(k.method, claims)
	t.Header["kid"] = k.id
	if typ != "" {
		t.Header["typ"] = typ
	}
	s, err := t.SignedString(k.private)
	if err != nil {
		return "", fmt.Errorf("keys: signing with %s: %w", k.id, err)
	}
	return s, nil
}

// signingKey is the active key, after the Reload under way if any (it
// holds loadMu): the keys were announced to have changed, and the active
// key may be withdrawn.
func (m *Manager) signingKey() *key {
	return m.current().active
}

// current is the key set, after the Reload under way if any.
func (m *Manager) current() *keySet {
	if m.reloading.Load() > 0 {
		m.loadMu.Lock()
		defer m.loadMu.Unlock()
	}
	return m.cur.Load()
}

// Keyfunc is a jwt.Keyfunc: it returns the public key named by the token's
// kid among the published keys, but only if the token's alg is the
// algorithm that key is pinned to, so no token can choose how it is
// verified (alg "none", HS256 keyed with the public key, and the like fail).
// A kid this replica does not know triggers one reload (rate-limited), so a
// key rotated in through another replica is found without a restart.
// Pair it with jwt.WithValidMethods(m.Algorithms()).
func (m *Manager) Keyfunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, fmt.Errorf("%w: the token has no kid", ErrUnknownKey)
	}
	k := m.lookup(kid)
	if k == nil && m.store != nil && m.reloading.Load() > 0 {
		// A reload announced by a change is under way: the kid may be in
		// what it finds.
		m.current()
		k = m.lookup(kid)
	}
	if k == nil && m.store != nil {
		// Rate-limited on its own clock: loads for other reasons (a
		// change notification a moment ago) must not stop this one, or a
		// key activated right after them would be refused.
		ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
		m.refreshSince(ctx, &m.lastUnknownKid, unknownKidReload, true)
		cancel()
		k = m.lookup(kid)
	}
	if k == nil {
		return nil, ErrUnknownKey
	}
	if alg, _ := t.Header["alg"].(string); t.Method == nil || t.Method.Alg() != k.alg || alg != k.alg {
		return nil, ErrAlgorithmMismatch
	}
	return k.public, nil
}

// lookup returns the published key kid, nil if unknown or expired.
func (m *Manager) lookup(kid string) *key {
	k := m.cur.Load().byID[kid]
	if k == nil || (!k.expiresAt.IsZero() && !m.now().Before(k.expiresAt)) {
		return nil
	}
	return k
}

// Algorithms lists the algorithms of the published keys, for
// jwt.WithValidMethods.
func (m *Manager) Algorithms() []string {
	return slices.Clone(m.cur.Load().algs)
}

// JWKS returns the published public keys as an RFC 7517 §5 JWK set.
func (m *Manager) JWKS(ctx context.Context) ([]byte, error) {
	m.refresh(ctx, m.interval, false)
	return slices.Clone(m.cur.Load().jwks), nil
}

// Reload reads the keys from the store now, activating a next key whose
// pre-publication period is over. With PEM keys it does nothing.
//
// Call it when the keys are known to have changed (authd does on the
// database's change notification): until it returns, Sign waits for it
// instead of signing with a key the change may have withdrawn.
func (m *Manager) Reload(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	m.reloading.Add(1)
	defer m.reloading.Add(-1)
	return m.load(ctx)
}

// Rotate adds a new key and returns its kid. The key is published at once
// and, unless immediate, signs after Prepublish (activated by whichever
// replica reloads first after that). With immediate, meant for a
// compromised key, the new key signs at once and the previous key is
// withdrawn at once: tokens it signed stop verifying, and clients must
// refresh them. Other replicas follow as soon as they call Reload (authd
// does on the database's change notification, within milliseconds),
// within RefreshInterval, or as soon as they see a token with the new kid.
func (m *Manager) Rotate(ctx context.Context, immediate bool) (string, error) {
	if m.store == nil {
		return "", ErrPEMKeys
	}
	row, err := m.newKey(store.KeyNext)
	if err != nil {
		return "", err
	}
	if err := m.store.CreateSigningKey(ctx, row); err != nil {
		return "", fmt.Errorf("keys: storing the new key: %w", err)
	}
	if immediate {
		now := m.now()
		if err := m.store.ActivateSigningKey(ctx, row.ID, now, now); err != nil {
			return row.ID, fmt.Errorf("keys: activating the new key %s: %w", row.ID, err)
		}
		m.log.Warn("signing key rotated immediately; the previous key is withdrawn", "event", "key_rotated", "kid", row.ID)
	} else {
		m.log.Info("signing key added; it signs after the pre-publication period", "event", "key_rotated",
			"kid", row.ID, "activates_at", row.CreatedAt.Add(m.prepublish))
	}
	return row.ID, m.load(ctx)
}

// KeyInfo describes a key for `authd keys list`.
type KeyInfo struct {
	ID        string         `json:"kid"`
	Algorithm string         `json:"alg"`
	State     store.KeyState `json:"state"`
	// Published: in the JWKS now.
	Published bool `json:"published"`
	// Source is "store" or "pem".
	Source      string     `json:"source"`
	CreatedAt   time.Time  `json:"created_at,omitzero"`
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
	// ActivatesAt is when a next key starts signing.
	ActivatesAt *time.Time `json:"activates_at,omitempty"`
	RetiredAt   *time.Time `json:"retired_at,omitempty"`
	// ExpiresAt is when a retired key stops being published.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// List describes every key in the store (including withdrawn ones not yet
// purged), oldest first, or the PEM keys.
func (m *Manager) List(ctx context.Context) ([]KeyInfo, error) {
	if m.store == nil {
		var out []KeyInfo
		for i, k := range m.cur.Load().published {
			state := store.KeyActive
			if i > 0 {
				state = store.KeyRetired // published for verification only
			}
			out = append(out, KeyInfo{ID: k.id, Algorithm: k.alg, State: state, Published: true, Source: "pem"})
		}
		return out, nil
	}
	rows, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: listing signing keys: %w", err)
	}
	slices.SortStableFunc(rows, func(a, b store.SigningKey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	now := m.now()
	active := activeRow(rows)
	out := make([]KeyInfo, 0, len(rows))
	for _, r := range rows {
		ki := KeyInfo{
			ID: r.ID, Algorithm: r.Algorithm, State: r.State, Source: "store",
			Published: published(r, active, now),
			CreatedAt: r.CreatedAt, ActivatedAt: r.ActivatedAt, RetiredAt: r.RetiredAt, ExpiresAt: r.ExpiresAt,
		}
		if r.State == store.KeyNext && ki.Published {
			at := r.CreatedAt.Add(m.prepublish)
			ki.ActivatesAt = &at
		}
		out = append(out, ki)
	}
	return out, nil
}

// refresh reloads the keys if the last attempt is at least minAge old.
// Callers arriving while a load runs join it (wait) or go on with the
// current keys (!wait); only one load runs at a time. Failures are logged
// and the current keys stay in use.
func (m *Manager) refresh(ctx context.Context, minAge time.Duration, wait bool) {
	m.refreshSince(ctx, &m.lastAttempt, minAge, wait)
}

// refreshSince is refresh measuring minAge from *last, which it sets when
// it starts a load.
func (m *Manager) refreshSince(ctx context.Context, last *atomic.Int64, minAge time.Duration, wait bool) {
	if m.store == nil || m.now().Sub(time.Unix(0, last.Load())) < minAge {
		return // the hot path: one atomic load
	}
	m.flightMu.Lock()
	if f := m.flight; f != nil {
		m.flightMu.Unlock()
		if wait {
			select {
			case <-f:
			case <-ctx.Done():
			}
		}
		return
	}
	if m.now().Sub(time.Unix(0, last.Load())) < minAge {
		m.flightMu.Unlock()
		return
	}
	last.Store(m.now().UnixNano())
	f := make(chan struct{})
	m.flight = f
	m.flightMu.Unlock()

	// A client hanging up must not abort a reload other requests rely on.
	if err := m.load(context.WithoutCancel(ctx)); err != nil {
		m.log.Warn("reloading signing keys failed; still using the loaded keys", "error", err.Error())
	}
	m.flightMu.Lock()
	m.flight = nil
	m.flightMu.Unlock()
	close(f)
}

// load reads the keys from the store, activates a due next key, and
// publishes the new set. On error the current set stays.
func (m *Manager) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.lastAttempt.Store(m.now().UnixNano())

	rows, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: listing signing keys: %w", err)
	}
	now := m.now()
	if next := dueKey(rows, now, m.prepublish); next != nil {
		if err := m.activate(ctx, *next, now); err != nil {
			return err
		}
		if rows, err = m.store.ListSigningKeys(ctx); err != nil {
			return fmt.Errorf("keys: listing signing keys: %w", err)
		}
	}
	set, err := m.buildSet(rows, now)
	if err != nil {
		return err
	}
	if prev := m.cur.Load(); prev != nil && prev.active.id != set.active.id {
		m.log.Info("signing with a new key", "event", "key_activated", "kid", set.active.id, "previous_kid", prev.active.id)
	}
	m.cur.Store(set)
	return nil
}

// activate makes the next key row active, retiring the active one. Every
// replica may try at about the same time; the store serialises them.
func (m *Manager) activate(ctx context.Context, row store.SigningKey, now time.Time) error {
	// Never switch to a key this replica cannot sign with (an encryption
	// secret differing between replicas): leave it to a replica that can.
	if _, _, err := openAny(m.keks, row.ID, row.EncryptedPrivateKey); err != nil {
		return fmt.Errorf("keys: not activating key %s: %w", row.ID, err)
	}
	err := m.store.ActivateSigningKey(ctx, row.ID, now, now.Add(m.retireAfter))
	if err != nil {
		// Another replica may have activated it in the meantime: the
		// re-read decides.
		rows, lerr := m.store.ListSigningKeys(ctx)
		if lerr != nil {
			return fmt.Errorf("keys: activating key %s: %w", row.ID, err)
		}
		if a := activeRow(rows); a == nil || a.ID != row.ID {
			return fmt.Errorf("keys: activating key %s: %w", row.ID, err)
		}
	}
	return nil
}

// activeRow returns the row of the active key, nil if none.
func activeRow(rows []store.SigningKey) *store.SigningKey {
	for i := range rows {
		if rows[i].State == store.KeyActive {
			return &rows[i]
		}
	}
	return nil
}

// dueKey returns the next key to activate now: the newest one published for
// at least prepublish, not older than the active key. Older next keys are
// superseded: an immediate rotation, or two rotations both due at once,
// skip them, and they are neither activated nor published.
func dueKey(rows []store.SigningKey, now time.Time, prepublish time.Duration) *store.SigningKey {
	active := activeRow(rows)
	var due *store.SigningKey
	for i := range rows {
		r := &rows[i]
		if r.State != store.KeyNext || !published(*r, active, now) || now.Before(r.CreatedAt.Add(prepublish)) {
			continue
		}
		if due == nil || cmp.Or(r.CreatedAt.Compare(due.CreatedAt), cmp.Compare(r.ID, due.ID)) > 0 {
			due = r
		}
	}
	return due
}

// published reports whether row r belongs in the JWKS at now.
func published(r store.SigningKey, active *store.SigningKey, now time.Time) bool {
	switch r.State {
	case store.KeyActive:
		return true
	case store.KeyNext:
		return active == nil || !r.CreatedAt.Before(active.CreatedAt)
	case store.KeyRetired:
		return r.ExpiresAt != nil && now.Before(*r.ExpiresAt)
	}
	return false
}

// buildSet parses the published rows. Keys parsed by the previous load are
// reused, so a reload costs no decryption or RSA validation.
func (m *Manager) buildSet(rows []store.SigningKey, now time.Time) (*keySet, error) {
	active := activeRow(rows)
	if active == nil {
		return nil, errNoActiveKey
	}
	var prev map[string]*key
	if p := m.cur.Load(); p != nil {
		prev = p.byID
	}
	var act *key
	var others []*key
	for _, r := range rows {
		if !published(r, active, now) {
			continue
		}
		k, err := m.parseRow(r, prev[r.ID])
		if err != nil {
			if r.State == store.KeyActive {
				return nil, err
			}
			// A damaged key that does not sign must not stop the others
			// from being served.
			m.log.Error("skipping an unusable signing key", "kid", r.ID, "state", string(r.State), "error", err.Error())
			continue
		}
		if r.State == store.KeyActive {
			act = k
		} else {
			others = append(others, k)
		}
	}
	// Next keys before retired ones, newest first within each.
	slices.SortFunc(others, func(a, b *key) int {
		if a.row.State != b.row.State {
			if a.row.State == store.KeyNext {
				return -1
			}
			return 1
		}
		return cmp.Or(b.row.CreatedAt.Compare(a.row.CreatedAt), cmp.Compare(a.id, b.id))
	})
	return newKeySet(act, others)
}

// parseRow turns a row into a key, decrypting the private half of the active
// key only.
func (m *Manager) parseRow(r store.SigningKey, prev *key) (*key, error) {
	needPrivate := r.State == store.KeyActive
	if prev != nil && prev.alg == r.Algorithm && bytes.Equal(prev.rawJWK, r.PublicJWK) && (!needPrivate || prev.private != nil) {
		k := *prev
		k.row = r
		k.expiresAt = rowExpiry(r)
		return &k, nil
	}
	pub, j, err := parsePublicJWK(r.PublicJWK)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", r.ID, err)
	}
	alg, err := algorithmFor(pub)
	if err != nil || alg != r.Algorithm || j.Kid != r.ID || (j.Alg != "" && j.Alg != alg) {
		return nil, fmt.Errorf("keys: key %s: stored algorithm %s or kid does not match the public key", r.ID, r.Algorithm)
	}
	// Publish a canonical rendering, not the stored bytes, so only the
	// public members ever reach the JWKS.
	canonical, err := publicJWK(pub, r.ID, alg)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", r.ID, err)
	}
	k := &key{
		id: r.ID, alg: alg, method: signingMethod(alg), public: pub,
		jwk: canonical, rawJWK: r.PublicJWK, row: r, expiresAt: rowExpiry(r),
	}
	if needPrivate {
		priv, which, err := openAny(m.keks, r.ID, r.EncryptedPrivateKey)
		if err != nil {
			return nil, fmt.Errorf("keys: active key %s: %w", r.ID, err)
		}
		if which > 0 {
			m.log.Info("the active signing key is encrypted with a previous encryption secret; run `authd keys reencrypt` before removing it from keys.previous_encryption_secrets",
				"kid", r.ID, "previous_secret", which)
		}
		if !samePublicKey(priv.Public(), pub) {
			return nil, fmt.Errorf("keys: active key %s: the stored public key does not match the private key", r.ID)
		}
		k.private = priv
	}
	return k, nil
}

func rowExpiry(r store.SigningKey) time.Time {
	if r.State == store.KeyRetired && r.ExpiresAt != nil {
		return *r.ExpiresAt
	}
	return time.Time{}
}

// pemKeySet builds the set from operator-provided PEM keys.
func pemKeySet(pems [][]byte) (*keySet, error) {
	var ks []*key
	seen := map[string]bool{}
	for i, p := range pems {
		priv, err := parsePEM(p)
		if err != nil {
			return nil, fmt.Errorf("keys: PEM key %d: %w", i+1, err)
		}
		alg, err := algorithmFor(priv.Public())
		if err != nil {
			return nil, fmt.Errorf("keys: PEM key %d: %w", i+1, err)
		}
		kid, err := thumbprint(priv.Public())
		if err != nil {
			return nil, fmt.Errorf("keys: PEM key %d: %w", i+1, err)
		}
		if seen[kid] {
			return nil, fmt.Errorf("keys: PEM key %d: the same key is given twice", i+1)
		}
		seen[kid] = true
		j, err := publicJWK(priv.Public(), kid, alg)
		if err != nil {
			return nil, fmt.Errorf("keys: PEM key %d: %w", i+1, err)
		}
		ks = append(ks, &key{id: kid, alg: alg, method: signingMethod(alg), public: priv.Public(), private: priv, jwk: j})
	}
	return newKeySet(ks[0], ks[1:])
}

func newKeySet(active *key, others []*key) (*keySet, error) {
	s := &keySet{active: active, byID: map[string]*key{}}
	s.published = append([]*key{active}, others...)
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	for _, k := range s.published {
		s.byID[k.id] = k
		doc.Keys = append(doc.Keys, k.jwk)
		if !slices.Contains(s.algs, k.alg) {
			s.algs = append(s.algs, k.alg)
		}
	}
	slices.Sort(s.algs)
	var err error
	if s.jwks, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	return s, nil
}

func signingMethod(alg string) jwt.SigningMethod {
	if alg == RS256 {
		return jwt.SigningMethodRS256
	}
	return jwt.SigningMethodES256
}
