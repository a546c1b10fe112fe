package resource_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authd/authd/resource"
)

// fakeAS is an authorization server reduced to its metadata and JWK set,
// signing tokens with keys the test controls: for the checks authd's own
// tokens cannot exercise (another typ, iss, nbf, a key's cache lifetime).
type fakeAS struct {
	srv          *httptest.Server
	issuer       string // what the metadata names
	cacheControl string
	jwksFetches  atomic.Int32

	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey // published, by kid
}

func newFakeAS(t testing.TB) *fakeAS {
	f := &fakeAS{keys: map[string]*ecdsa.PrivateKey{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			json.NewEncoder(w).Encode(map[string]string{"issuer": f.issuer, "jwks_uri": f.srv.URL + "/jwks"})
		case "/jwks":
			f.jwksFetches.Add(1)
			f.mu.Lock()
			var keys []map[string]string
			for kid, k := range f.keys {
				b, _ := k.PublicKey.Bytes()
				keys = append(keys, map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
					"x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])})
			}
			f.mu.Unlock()
			if f.cacheControl != "" {
				w.Header().Set("Cache-Control", f.cacheControl)
			}
			json.NewEncoder(w).Encode(map[string]any{"keys": keys})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	f.issuer = f.srv.URL
	f.addKey(t, "k1")
	return f
}

func (f *fakeAS) addKey(t testing.TB, kid string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.keys[kid] = k
	f.mu.Unlock()
}

// sign makes a token with the given header changes and claims.
func (f *fakeAS) sign(t testing.TB, kid string, header map[string]any, claims jwt.MapClaims) string {
	f.mu.Lock()
	k, ok := f.keys[kid]
	if !ok {
		k = f.keys["k1"] // a kid the server does not publish
	}
	f.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = kid
	tok.Header["typ"] = "at+jwt"
	for h, v := range header {
		if v == nil {
			delete(tok.Header, h)
		} else {
			tok.Header[h] = v
		}
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const res = "https://mcp.example.com/mcp"

func TestVerifyJWTChecks(t *testing.T) {
	t.Parallel()
	f := newFakeAS(t)
	now := time.Now()
	p, err := resource.New(resource.Config{Issuer: f.srv.URL, Resource: res, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(change jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"iss": f.srv.URL, "sub": "u1", "aud": res, "client_id": "c1", "scope": "a b", "jti": "j1",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{"g"}}
		for k, v := range change {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	for _, c := range []struct {
		name   string
		header map[string]any
		claims jwt.MapClaims
		ok     bool
	}{
		{"valid", nil, nil, true},
		{"typ as media type", map[string]any{"typ": "application/AT+JWT"}, nil, true},
		{"aud array", nil, jwt.MapClaims{"aud": []string{"https://other.example.com", res}}, true},
		{"nbf within the leeway", nil, jwt.MapClaims{"nbf": now.Add(5 * time.Second).Unix()}, true},
		{"typ JWT (an ID token, say)", map[string]any{"typ": "JWT"}, nil, false},
		{"no typ", map[string]any{"typ": nil}, nil, false},
		{"no kid", map[string]any{"kid": nil}, nil, false},
		{"another issuer", nil, jwt.MapClaims{"iss": "https://evil.example.com"}, false},
		{"another resource", nil, jwt.MapClaims{"aud": "https://other.example.com"}, false},
		{"no aud", nil, jwt.MapClaims{"aud": nil}, false},
		{"no exp", nil, jwt.MapClaims{"exp": nil}, false},
		{"expired beyond the leeway", nil, jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}, false},
		{"not yet valid", nil, jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()}, false},
		{"issued in the future", nil, jwt.MapClaims{"iat": now.Add(time.Minute).Unix()}, false},
		{"no sub", nil, jwt.MapClaims{"sub": nil}, false},
		{"no client_id", nil, jwt.MapClaims{"client_id": nil}, false},
	} {
		id, err := p.Check(context.Background(), f.sign(t, "k1", c.header, claims(c.claims)))
		switch {
		case c.ok && (err != nil || id.Subject != "u1" || !id.HasScopes("a", "b") || !id.InGroup("g")):
			t.Errorf("%s: %v %+v", c.name, err, id)
		case !c.ok && !errors.Is(err, resource.ErrInvalidToken):
			t.Errorf("%s: accepted or not invalid: %v", c.name, err)
		}
	}
	// The algorithm is the key's: a token naming ES384 under an ES256 key.
	tok := jwt.NewWithClaims(jwt.SigningMethodES384, claims(nil))
	tok.Header["kid"], tok.Header["typ"] = "k1", "at+jwt"
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	s, _ := tok.SignedString(k384)
	if _, err := p.Check(context.Background(), s); !errors.Is(err, resource.ErrInvalidToken) {
		t.Errorf("alg other than the key's: %v", err)
	}
}

func TestMetadataOfAnotherIssuerRefused(t *testing.T) {
	t.Parallel()
	f := newFakeAS(t)
	f.issuer = "https://evil.example.com"
	p, _ := resource.New(resource.Config{Issuer: f.srv.URL, Resource: res})
	_, err := p.Check(context.Background(), f.sign(t, "k1", nil, jwt.MapClaims{}))
	if err == nil || errors.Is(err, resource.ErrInvalidToken) {
		t.Errorf("metadata naming another issuer: %v, want an error that is not the token's", err)
	}
}

// TestKeySetCaching: the JWK set is used for its Cache-Control max-age,
// and an unknown key id makes it be fetched again at most once per
// MinRefetchInterval.
func TestKeySetCaching(t *testing.T) {
	t.Parallel()
	f := newFakeAS(t)
	f.cacheControl = "public, max-age=120"
	now := time.Now()
	p, _ := resource.New(resource.Config{Issuer: f.srv.URL, Resource: res, Now: func() time.Time { return now }})
	token := func(kid string) string {
		return f.sign(t, kid, nil, jwt.MapClaims{"iss": f.srv.URL, "sub": "u", "aud": res, "client_id": "c",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	}
	check := func(kid string, wantOK bool, wantFetches int32) {
		t.Helper()
		_, err := p.Check(context.Background(), token(kid))
		if (err == nil) != wantOK || f.jwksFetches.Load() != wantFetches {
			t.Errorf("kid %s: %v, %d fetches; want ok=%v, %d fetches", kid, err, f.jwksFetches.Load(), wantOK, wantFetches)
		}
	}
	check("k1", true, 1)
	now = now.Add(119 * time.Second)
	check("k1", true, 1) // within max-age: no fetch
	now = now.Add(2 * time.Second)
	check("k1", true, 2) // past max-age: fetched again

	// Forged key ids: one refetch per interval, however many tokens.
	check("nope", false, 2) // fetched 0s ago: not again
	now = now.Add(resource.DefaultMinRefetchInterval)
	check("nope", false, 3)
	check("nope", false, 3)
	check("nope2", false, 3)

	// A key added at the authorization server is found once the interval
	// allows a refetch.
	f.addKey(t, "k2")
	check("k2", false, 3)
	now = now.Add(resource.DefaultMinRefetchInterval)
	check("k2", true, 4)
}

// FuzzCheck: whatever is presented as a token, Check does not panic, and
// what it accepts carries exactly the header and claims of a token the
// authorization server signed (the signature cannot be forged, nor the
// algorithm chosen by the token).
func FuzzCheck(f *testing.F) {
	as := newFakeAS(f)
	now := time.Now()
	p, err := resource.New(resource.Config{Issuer: as.srv.URL, Resource: res, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	valid := as.sign(f, "k1", nil, jwt.MapClaims{"iss": as.srv.URL, "sub": "u", "aud": res, "client_id": "c",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	signed := valid[:strings.LastIndex(valid, ".")]
	f.Add(valid)
	f.Add(signed + ".")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + signed[strings.Index(signed, "."):] + ".")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"k1"}`)) + signed[strings.Index(signed, "."):] + ".AAAA")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		if _, err := p.Check(context.Background(), tok); err == nil {
			if i := strings.LastIndex(tok, "."); i < 0 || tok[:i] != signed {
				t.Fatalf("accepted a token the server did not sign: %q", tok)
			}
		}
	})
}

// TestConcurrentFirstUse: many requests arriving before the keys are known
// cause one metadata and one JWK set fetch, not one each.
func TestConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	f := newFakeAS(t)
	p, _ := resource.New(resource.Config{Issuer: f.srv.URL, Resource: res})
	tok := f.sign(t, "k1", nil, jwt.MapClaims{"iss": f.srv.URL, "sub": "u", "aud": res, "client_id": "c",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Check(context.Background(), tok)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.jwksFetches.Load(); n != 1 {
		t.Errorf("%d JWK set fetches, want 1", n)
	}
}
