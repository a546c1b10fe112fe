package keys_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/internal/keys"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

func TestSignVerifiesAgainstJWKS(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			st := pgtest.New(t)
			m := newManager(t, st, options(t, c, alg))
			raw := sign(t, m, c.Now())

			// The header names the algorithm, the key and the RFC 9068 type.
			tok, _, err := jwt.NewParser().ParseUnverified(raw, &jwt.RegisteredClaims{})
			if err != nil {
				t.Fatal(err)
			}
			if tok.Header["alg"] != alg || tok.Header["typ"] != "at+jwt" || tok.Header["kid"] == "" {
				t.Fatalf("header %v", tok.Header)
			}

			set := jwks(t, m)
			if len(set.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
			}
			k := set.Keys[0]
			if k.KeyID != tok.Header["kid"] || k.Algorithm != alg || k.Use != "sig" || !k.IsPublic() || !k.Valid() {
				t.Fatalf("JWK kid=%q alg=%q use=%q public=%v", k.KeyID, k.Algorithm, k.Use, k.IsPublic())
			}
			// The kid is the RFC 7638 thumbprint, as go-jose computes it.
			tp, err := k.Thumbprint(crypto.SHA256)
			if err != nil || base64.RawURLEncoding.EncodeToString(tp) != k.KeyID {
				t.Fatalf("kid %q is not the key's RFC 7638 thumbprint (%v)", k.KeyID, err)
			}
			if err := verifyWithJWKS(set, c, raw); err != nil {
				t.Fatalf("token does not verify with the published JWKS: %v", err)
			}
			if _, err := verify(m, c, raw); err != nil {
				t.Fatalf("token does not verify with Keyfunc: %v", err)
			}
			if got := m.Algorithms(); !slices.Equal(got, []string{alg}) {
				t.Fatalf("Algorithms() = %v", got)
			}

			// Only public members are published.
			b, _ := m.JWKS(context.Background())
			var raws struct{ Keys []map[string]any }
			if err := json.Unmarshal(b, &raws); err != nil {
				t.Fatal(err)
			}
			for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := raws.Keys[0][priv]; ok {
					t.Fatalf("JWKS contains private member %q: %s", priv, b)
				}
			}
			want := map[string][]string{"ES256": {"kty", "kid", "use", "alg", "crv", "x", "y"}, "RS256": {"kty", "kid", "use", "alg", "n", "e"}}[alg]
			if len(raws.Keys[0]) != len(want) {
				t.Fatalf("JWK members %v, want %v", raws.Keys[0], want)
			}
			for _, name := range want {
				if raws.Keys[0][name] == "" || raws.Keys[0][name] == nil {
					t.Fatalf("JWK lacks %q: %s", name, b)
				}
			}

			// A second instance (a restart) loads the same key instead of
			// creating one.
			again := newManager(t, st, options(t, c, alg))
			if got := headerKid(t, sign(t, again, c.Now())); got != k.KeyID {
				t.Fatalf("after restart signing with %q, want %q", got, k.KeyID)
			}
			if n := len(storedKeys(t, st)); n != 1 {
				t.Fatalf("%d keys stored, want 1", n)
			}
		})
	}
}

func TestAlgorithmConfusionRejected(t *testing.T) {
	c := newClock()
	st := store.NewMemory()
	m := newManager(t, st, options(t, c, "ES256"))
	kid := headerKid(t, sign(t, m, c.Now()))
	set := jwks(t, m)
	pub := set.Keys[0].Key.(*ecdsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, _ := json.Marshal(set.Keys[0])

	forge := func(method jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(method, claimsAt(c.Now()))
		tok.Header["kid"] = kid
		tok.Header["typ"] = "at+jwt"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name string
		raw  string
		// wantKeyfuncErr: Keyfunc itself refuses (not only the parser).
		wantKeyfuncErr error
	}{
		{"HS256 keyed with the PEM public key", forge(jwt.SigningMethodHS256, pemPub), keys.ErrAlgorithmMismatch},
		{"HS256 keyed with the DER public key", forge(jwt.SigningMethodHS256, der), keys.ErrAlgorithmMismatch},
		{"HS256 keyed with the JWK", forge(jwt.SigningMethodHS256, jwkJSON), keys.ErrAlgorithmMismatch},
		{"alg none", forge(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), keys.ErrAlgorithmMismatch},
		{"ES384 claimed for a P-256 key", forge(jwt.SigningMethodES384, mustECKey(t, elliptic.P384())), keys.ErrAlgorithmMismatch},
		{"ES256 signed by another key with our kid", forge(jwt.SigningMethodES256, otherKey), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// As authd verifies: pinned methods plus Keyfunc.
			if _, err := verify(m, c, tc.raw); err == nil {
				t.Fatal("forged token accepted")
			}
			// Keyfunc alone, as a careless caller without WithValidMethods.
			_, err := jwt.Parse(tc.raw, m.Keyfunc, jwt.WithTimeFunc(c.Now))
			if err == nil {
				t.Fatal("forged token accepted by Keyfunc alone")
			}
			if tc.wantKeyfuncErr != nil && !errors.Is(err, tc.wantKeyfuncErr) {
				t.Fatalf("error %v, want %v", err, tc.wantKeyfuncErr)
			}
			if tc.wantKeyfuncErr == nil && !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				t.Fatalf("error %v, want an invalid signature", err)
			}
		})
	}

	t.Run("no kid", func(t *testing.T) {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claimsAt(c.Now()))
		raw, _ := tok.SignedString(otherKey)
		if _, err := verify(m, c, raw); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("error %v, want ErrUnknownKey", err)
		}
	})
}

// Each key is pinned to its algorithm: with an ES256 and an RS256 key both
// published, a token naming one key with the other's algorithm fails.
func TestKeyPinnedToItsAlgorithm(t *testing.T) {
	c := newClock()
	st := store.NewMemory()
	es := newManager(t, st, options(t, c, "ES256"))
	esKid := headerKid(t, sign(t, es, c.Now()))
	// The operator switches to RS256 and rotates: both keys are published.
	rs := newManager(t, st, options(t, c, "RS256"))
	rsKid, err := rs.Rotate(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Algorithms(); !slices.Equal(got, []string{"ES256", "RS256"}) {
		t.Fatalf("Algorithms() = %v", got)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{"ES256 token naming the RSA key", jwt.SigningMethodES256, mustECKey(t, elliptic.P256()), rsKid},
		{"RS256 token naming the EC key", jwt.SigningMethodRS256, rsaKey, esKid},
		{"PS256 token naming the RSA key", jwt.SigningMethodPS256, rsaKey, rsKid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := jwt.NewWithClaims(tc.method, claimsAt(c.Now()))
			tok.Header["kid"] = tc.kid
			raw, err := tok.SignedString(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwt.Parse(raw, rs.Keyfunc, jwt.WithTimeFunc(c.Now)); !errors.Is(err, keys.ErrAlgorithmMismatch) {
				t.Fatalf("error %v, want ErrAlgorithmMismatch", err)
			}
			if _, err := verify(rs, c, raw); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestRotation(t *testing.T) {
	stores(t, func(t *testing.T, newStore func(t *testing.T) keys.Store) {
		c := newClock()
		st := newStore(t)
		opts := options(t, c, "ES256")
		opts.RefreshInterval = 30 * time.Second
		m := newManager(t, st, opts)
		ctx := context.Background()

		oldToken := sign(t, m, c.Now())
		k1 := headerKid(t, oldToken)

		c.Advance(time.Minute)
		k2, err := m.Rotate(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		// Published at once, not signing yet.
		if got := kids(jwks(t, m)); !slices.Equal(got, []string{k1, k2}) {
			t.Fatalf("JWKS kids %v, want [%s %s]", got, k1, k2)
		}
		if got := headerKid(t, sign(t, m, c.Now())); got != k1 {
			t.Fatalf("signing with %s before the pre-publication period ended", got)
		}
		infos, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 2 || infos[1].ID != k2 || infos[1].State != store.KeyNext || infos[1].ActivatesAt == nil ||
			!infos[1].ActivatesAt.Equal(c.Now().Add(time.Hour)) || !infos[1].Published {
			t.Fatalf("List() = %+v", infos)
		}

		c.Advance(time.Hour - time.Second)
		if err := m.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if got := headerKid(t, sign(t, m, c.Now())); got != k1 {
			t.Fatalf("signing with %s a second before the pre-publication period ended", got)
		}

		// Past the period, the first Sign that finds its keys older than
		// RefreshInterval reloads them and activates the new key: no explicit
		// Reload needed.
		c.Advance(time.Second)
		oldToken = sign(t, m, c.Now()) // the last token of the old key
		if got := headerKid(t, oldToken); got != k1 {
			t.Fatalf("signing with %s without a reload", got)
		}
		c.Advance(opts.RefreshInterval - time.Second)
		activatedAt := c.Now()
		if got := headerKid(t, sign(t, m, c.Now())); got != k2 {
			t.Fatalf("signing with %s after the pre-publication period, want %s", got, k2)
		}
		rows := storedKeys(t, st)
		wantExpiry := activatedAt.Add(time.Hour + 30*time.Second + 5*time.Minute)
		if r := rows[k1]; r.State != store.KeyRetired || r.ExpiresAt == nil || !r.ExpiresAt.Equal(wantExpiry) {
			t.Fatalf("old key row: state %s expires %v, want retired until %v", r.State, r.ExpiresAt, wantExpiry)
		}
		if r := rows[k2]; r.State != store.KeyActive {
			t.Fatalf("new key row state %s", r.State)
		}

		// The retired key stays published, so its tokens still verify.
		set := jwks(t, m)
		if got := kids(set); !slices.Equal(got, []string{k2, k1}) {
			t.Fatalf("JWKS kids %v, want [%s %s]", got, k2, k1)
		}
		c.Advance(59 * time.Minute) // the old token is still valid
		if _, err := verify(m, c, oldToken); err != nil {
			t.Fatalf("a token of the retired key no longer verifies: %v", err)
		}
		if err := verifyWithJWKS(jwks(t, m), c, oldToken); err != nil {
			t.Fatalf("a token of the retired key no longer verifies with the JWKS: %v", err)
		}

		// Once expired, the retired key is withdrawn.
		c.Advance(wantExpiry.Sub(c.Now()))
		if err := m.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if got := kids(jwks(t, m)); !slices.Equal(got, []string{k2}) {
			t.Fatalf("JWKS kids %v after the retired key expired, want [%s]", got, k2)
		}
		if _, err := jwt.Parse(oldToken, m.Keyfunc); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("old key still accepted: %v", err)
		}
		if err := verifyWithJWKS(jwks(t, m), c, sign(t, m, c.Now())); err != nil {
			t.Fatalf("new token: %v", err)
		}
	})
}

func TestImmediateRotationWithdrawsOldKeys(t *testing.T) {
	c := newClock()
	st := pgtest.New(t)
	m := newManager(t, st, options(t, c, "ES256"))
	ctx := context.Background()
	oldToken := sign(t, m, c.Now())
	k1 := headerKid(t, oldToken)

	c.Advance(time.Minute)
	pending, err := m.Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	k3, err := m.Rotate(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := headerKid(t, sign(t, m, c.Now())); got != k3 {
		t.Fatalf("signing with %s, want %s at once", got, k3)
	}
	// The compromised key and the next key made before the compromise are
	// withdrawn; tokens of the old key fail.
	if got := kids(jwks(t, m)); !slices.Equal(got, []string{k3}) {
		t.Fatalf("JWKS kids %v, want only %s", got, k3)
	}
	if _, err := verify(m, c, oldToken); !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("token of the withdrawn key: %v", err)
	}
	// The superseded next key never becomes active.
	c.Advance(2 * time.Hour)
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := headerKid(t, sign(t, m, c.Now())); got != k3 {
		t.Fatalf("signing with %s, want %s (the superseded key %s must stay inactive)", got, k3, pending)
	}
	if r := storedKeys(t, st)[pending]; r.State != store.KeyNext {
		t.Fatalf("superseded key state %s", r.State)
	}
	infos, _ := m.List(ctx)
	for _, ki := range infos {
		if ki.ID == pending && (ki.Published || ki.ActivatesAt != nil) {
			t.Fatalf("superseded key listed as %+v", ki)
		}
		if ki.ID == k1 && ki.Published {
			t.Fatalf("withdrawn key listed as published: %+v", ki)
		}
	}
}

func TestReplicasShareKeys(t *testing.T) {
	c := newClock()
	pg := pgtest.New(t)
	stB := &countingStore{Store: pg}
	a := newManager(t, pg, options(t, c, "ES256"))
	b := newManager(t, stB, options(t, c, "ES256"))
	ctx := context.Background()

	ka := headerKid(t, sign(t, a, c.Now()))
	if kb := headerKid(t, sign(t, b, c.Now())); ka != kb {
		t.Fatalf("replicas sign with %s and %s", ka, kb)
	}

	// A scheduled rotation through A reaches B's JWKS at its next reload.
	next, err := a.Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kids(jwks(t, b)); !slices.Contains(got, next) {
		t.Fatalf("replica B does not publish the next key: %v", got)
	}
	c.Advance(time.Hour)
	// Both replicas reach the activation; the store lets them agree.
	var wg sync.WaitGroup
	for _, m := range []*keys.Manager{a, b} {
		wg.Go(func() {
			if err := m.Reload(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if x, y := headerKid(t, sign(t, a, c.Now())), headerKid(t, sign(t, b, c.Now())); x != next || y != next {
		t.Fatalf("after activation A signs with %s, B with %s, want %s", x, y, next)
	}

	// An immediate rotation through A: B verifies A's new tokens at once,
	// reloading once for the unknown kid.
	c.Advance(time.Minute)
	fresh, err := a.Rotate(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, a, c.Now())
	if headerKid(t, tok) != fresh {
		t.Fatal("A does not sign with its rotated key")
	}
	before := stB.lists.Load()
	if _, err := verify(b, c, tok); err != nil {
		t.Fatalf("replica B rejects a token of the key rotated through A: %v", err)
	}
	if stB.lists.Load() == before {
		t.Fatal("B verified an unknown kid without reloading")
	}
	if got := headerKid(t, sign(t, b, c.Now())); got != fresh {
		t.Fatalf("B signs with %s after reloading, want %s", got, fresh)
	}

	// Unknown kids reload at most once per few seconds.
	forged := func() string {
		tk := jwt.NewWithClaims(jwt.SigningMethodES256, claimsAt(c.Now()))
		tk.Header["kid"] = rand.Text()
		s, _ := tk.SignedString(mustECKey(t, elliptic.P256()))
		return s
	}
	c.Advance(10 * time.Second)
	before = stB.lists.Load()
	for range 5 {
		if _, err := verify(b, c, forged()); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := stB.lists.Load() - before; n != 1 {
		t.Fatalf("5 unknown kids caused %d reloads, want 1", n)
	}
	c.Advance(5 * time.Second)
	if _, err := verify(b, c, forged()); !errors.Is(err, keys.ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	if n := stB.lists.Load() - before; n != 2 {
		t.Fatalf("after the rate-limit interval %d reloads, want 2", n)
	}
}

func TestConcurrentStartCreatesOneKey(t *testing.T) {
	stores(t, func(t *testing.T, newStore func(t *testing.T) keys.Store) {
		c := newClock()
		st := newStore(t)
		const replicas = 8
		kidsSeen := make([]string, replicas)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Go(func() {
				<-start
				m, err := keys.New(context.Background(), st, options(t, c, "ES256"))
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
				tok, err := m.Sign(context.Background(), "at+jwt", claimsAt(c.Now()))
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
				kidsSeen[i] = headerKid(t, tok)
			})
		}
		close(start)
		wg.Wait()
		rows := storedKeys(t, st)
		if len(rows) != 1 {
			t.Fatalf("%d keys stored, want exactly 1", len(rows))
		}
		for id := range rows {
			for i, k := range kidsSeen {
				if k != id {
					t.Fatalf("replica %d signs with %q, the stored key is %q", i, k, id)
				}
			}
		}
	})
}

func TestStoreOutageKeepsSigning(t *testing.T) {
	c := newClock()
	st := &countingStore{Store: store.NewMemory()}
	m := newManager(t, st, options(t, c, "ES256"))
	kid := headerKid(t, sign(t, m, c.Now()))
	st.fail.Store(true)
	c.Advance(time.Minute)
	before := st.lists.Load()
	for range 3 {
		if got := headerKid(t, sign(t, m, c.Now())); got != kid {
			t.Fatalf("signing with %q during the outage", got)
		}
	}
	// One failed reload per interval, not one per signature.
	if n := st.lists.Load() - before; n != 1 {
		t.Fatalf("%d reload attempts during the outage, want 1", n)
	}
	if err := m.Reload(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Reload during the outage: %v", err)
	}
	if got := kids(jwks(t, m)); !slices.Equal(got, []string{kid}) {
		t.Fatalf("JWKS during the outage: %v", got)
	}
}

func TestWrongEncryptionKey(t *testing.T) {
	c := newClock()
	st := pgtest.New(t)
	newManager(t, st, options(t, c, "ES256"))
	opts := options(t, c, "ES256")
	opts.EncryptionKey = keys.DeriveKEK("another secret, at least thirty-two characters")
	_, err := keys.New(context.Background(), st, opts)
	if !errors.Is(err, keys.ErrDecrypt) || !strings.Contains(err.Error(), "keys.encryption_secret") {
		t.Fatalf("New with the wrong KEK: %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	c := newClock()
	for _, tc := range []struct {
		name   string
		modify func(*keys.Options)
		want   string
	}{
		{"HS256", func(o *keys.Options) { o.Algorithm = "HS256" }, "unsupported algorithm"},
		{"none", func(o *keys.Options) { o.Algorithm = "none" }, "unsupported algorithm"},
		{"no encryption key", func(o *keys.Options) { o.EncryptionKey = keys.DeriveKEK("") }, "encryption key is required"},
		{"short encryption key", func(o *keys.Options) { o.EncryptionKey = []byte("short") }, "encryption key is required"},
		{"negative prepublish", func(o *keys.Options) { o.Prepublish = -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := store.NewMemory()
			opts := options(t, c, "")
			tc.modify(&opts)
			if _, err := keys.New(context.Background(), st, opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if n := len(storedKeys(t, st)); n != 0 {
				t.Fatalf("%d keys stored despite invalid options", n)
			}
		})
	}
	if keys.DeriveKEK("") != nil {
		t.Fatal("an empty secret derives a key")
	}
	if a, b := keys.DeriveKEK("secret one"), keys.DeriveKEK("secret one"); len(a) != 32 || string(a) != string(b) {
		t.Fatal("DeriveKEK is not a deterministic 32-byte key")
	}
	if string(keys.DeriveKEK("secret one")) == string(keys.DeriveKEK("secret two")) {
		t.Fatal("different secrets derive the same key")
	}
}

func mustECKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// gatedStore holds ListSigningKeys until released, once armed.
type gatedStore struct {
	keys.Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *gatedStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		<-s.release
	}
	return s.Store.ListSigningKeys(ctx)
}

// While a Reload announced by a change is reading the keys, Sign waits for
// it instead of signing with the key the change withdrew (B signing with
// the old key while A already refuses it).
func TestSignWaitsForAnnouncedReload(t *testing.T) {
	c := newClock()
	pg := pgtest.New(t)
	gated := &gatedStore{Store: pg, entered: make(chan struct{}), release: make(chan struct{})}
	a := newManager(t, pg, options(t, c, "ES256"))
	b := newManager(t, gated, options(t, c, "ES256"))
	ctx := context.Background()
	old := headerKid(t, sign(t, b, c.Now()))

	fresh, err := a.Rotate(ctx, true) // another replica, in an emergency
	if err != nil {
		t.Fatal(err)
	}
	gated.armed.Store(true)
	reloaded := make(chan error, 1)
	go func() { reloaded <- b.Reload(ctx) }() // the change notification
	<-gated.entered
	signed := make(chan string, 1)
	go func() {
		tok, err := b.Sign(ctx, "", claimsAt(c.Now()))
		if err != nil {
			t.Error(err)
		}
		signed <- tok
	}()
	select {
	case tok := <-signed:
		t.Fatalf("Sign did not wait for the announced reload: signed with %s (old key %s)", headerKid(t, tok), old)
	case <-time.After(100 * time.Millisecond):
	}
	close(gated.release)
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if kid := headerKid(t, <-signed); kid != fresh {
		t.Fatalf("signed with %s after the reload, want %s", kid, fresh)
	}
}

// A replica that loaded its keys a moment ago (a change notification, a
// periodic reload) still reloads for a kid it does not know: the key may
// have been activated right after that load (an emergency rotation on
// another replica), and its fresh tokens must not be refused. While an
// announced reload is under way, an unknown kid waits for it.
func TestUnknownKidReloadsAfterARecentLoad(t *testing.T) {
	c := newClock()
	pg := pgtest.New(t)
	gated := &gatedStore{Store: pg, entered: make(chan struct{}), release: make(chan struct{})}
	a := newManager(t, pg, options(t, c, "ES256"))
	b := newManager(t, gated, options(t, c, "ES256"))
	ctx := context.Background()

	if err := b.Reload(ctx); err != nil { // a notification, just now
		t.Fatal(err)
	}
	fresh, err := a.Rotate(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(b, c, sign(t, a, c.Now())); err != nil {
		t.Fatalf("a token of the key %s activated just after B's last load: %v", fresh, err)
	}

	// Another emergency rotation; B hears of it and is reloading when a
	// token of the newest key arrives.
	c.Advance(time.Second)
	newest, err := a.Rotate(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	gated.armed.Store(true)
	reloaded := make(chan error, 1)
	go func() { reloaded <- b.Reload(ctx) }()
	<-gated.entered
	verified := make(chan error, 1)
	tok := sign(t, a, c.Now())
	go func() { _, err := verify(b, c, tok); verified <- err }()
	select {
	case err := <-verified:
		t.Fatalf("verification of a token of %s did not wait for the reload under way: %v", newest, err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gated.release)
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if err := <-verified; err != nil {
		t.Fatalf("a token of the key %s, verified after the reload under way: %v", newest, err)
	}
}
