package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// t0 is the suite's "now". Every fixture time derives from it and is a whole
// number of microseconds, so that it survives Postgres unchanged.
var t0 = time.Date(2031, time.March, 4, 5, 6, 7, 890123000, time.UTC)

const (
	day = 24 * time.Hour
	us  = time.Microsecond
)

// Lifetimes of fixture rows created at t0.
const (
	codeLife    = 10 * time.Minute
	requestLife = 10 * time.Minute
	sessionLife = 12 * time.Hour
	grantLife   = 90 * day
	refreshLife = 30 * day
	accessLife  = time.Hour
	clientIdle  = 30 * day
)

func ptr[T any](v T) *T { return &v }

// digest returns the digest of a fresh credential, as callers store them.
func digest() string { return oauth.Digest(oauth.NewToken("authd_test_")) }

func newClient() store.Client {
	id := uuid.NewString()
	return store.Client{
		ID:                    id,
		Source:                store.SourceDynamic,
		SecretHash:            oauth.HashSecret("secret-" + id),
		SecretExpiresAt:       ptr(t0.Add(365 * day)),
		RegistrationTokenHash: digest(),
		Metadata: store.ClientMetadata{
			RedirectURIs:            []string{"https://app.example/cb", "http://127.0.0.1/cb"},
			TokenEndpointAuthMethod: "client_secret_basic",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ResponseTypes:           []string{"code"},
			ApplicationType:         "web",
			ClientName:              "App " + id[:8],
			ClientURI:               "https://app.example/",
			LogoURI:                 "https://app.example/logo.png",
			Scope:                   "mcp:read mcp:write",
			Contacts:                []string{"ops@app.example"},
			TOSURI:                  "https://app.example/tos",
			PolicyURI:               "https://app.example/privacy",
			SoftwareID:              "app",
			SoftwareVersion:         "1.2.3",
		},
		Fingerprint:      "fp-" + id,
		AllowedScopes:    []string{"mcp:read", "mcp:write"},
		AllowedResources: []string{"https://mcp.example/"},
		CreatedAt:        t0,
		UpdatedAt:        t0,
		LastUsedAt:       t0,
		ExpiresAt:        ptr(t0.Add(clientIdle)),
	}
}

func createClient(t *testing.T, s store.Store, c store.Client) store.Client {
	t.Helper()
	must(t, s.CreateClient(t.Context(), c), "CreateClient")
	return c
}

// client creates a fresh dynamic client.
func client(t *testing.T, s store.Store) store.Client {
	t.Helper()
	return createClient(t, s, newClient())
}

func newUser() store.User {
	sub := fmt.Sprint(uuid.New().ID())
	return store.User{
		Provider:      "github",
		Subject:       sub,
		Login:         "user" + sub,
		Email:         "user" + sub + "@example.com",
		EmailVerified: true,
		Name:          "User " + sub,
		Groups:        []string{"acme", "acme/devs"},
		Domain:        "example.com",
		CreatedAt:     t0,
		UpdatedAt:     t0,
		LastLoginAt:   t0,
	}
}

// user creates a fresh user and returns it as stored.
func user(t *testing.T, s store.Store) store.User {
	t.Helper()
	u, err := s.UpsertUser(t.Context(), newUser())
	must(t, err, "UpsertUser")
	return u
}

func newAuthRequest(c store.Client) store.AuthRequest {
	return store.AuthRequest{
		IDDigest:            digest(),
		ClientID:            c.ID,
		RedirectURI:         c.Metadata.RedirectURIs[0],
		RedirectURIProvided: true,
		State:               "client-state-" + uuid.NewString(),
		Scopes:              []string{"mcp:read"},
		Resources:           []string{"https://mcp.example/"},
		CodeChallenge:       oauth.RandomString(32),
		CodeChallengeMethod: "S256",
		Nonce:               "nonce",
		Prompt:              []string{"consent"},
		MaxAge:              ptr(300),
		LoginHint:           "someone@example.com",
		CreatedAt:           t0,
		ExpiresAt:           t0.Add(requestLife),
	}
}

func newSession(u store.User) store.Session {
	return store.Session{
		IDDigest:  digest(),
		UserID:    u.ID,
		AuthTime:  t0,
		CreatedAt: t0,
		ExpiresAt: t0.Add(sessionLife),
	}
}

func newCode(c store.Client, u store.User) store.AuthCode {
	return store.AuthCode{
		Digest:              digest(),
		ClientID:            c.ID,
		UserID:              u.ID,
		RedirectURI:         c.Metadata.RedirectURIs[0],
		RedirectURIProvided: true,
		Scopes:              []string{"mcp:read", "mcp:write"},
		Resources:           []string{"https://mcp.example/"},
		CodeChallenge:       oauth.RandomString(32),
		CodeChallengeMethod: "S256",
		Nonce:               "n-0S6_WzA2Mj",
		AuthTime:            t0.Add(-time.Minute),
		CreatedAt:           t0,
		ExpiresAt:           t0.Add(codeLife),
	}
}

func createCode(t *testing.T, s store.Store, c store.Client, u store.User) store.AuthCode {
	t.Helper()
	code := newCode(c, u)
	must(t, s.CreateAuthCode(t.Context(), code), "CreateAuthCode")
	return code
}

// newGrant is the grant redeeming code would create.
func newGrant(code store.AuthCode) store.Grant {
	return store.Grant{
		ID:         uuid.NewString(),
		ClientID:   code.ClientID,
		UserID:     code.UserID,
		Scopes:     code.Scopes,
		Resources:  code.Resources,
		AuthTime:   code.AuthTime,
		CreatedAt:  t0,
		LastUsedAt: t0,
		ExpiresAt:  t0.Add(grantLife),
	}
}

func newRefreshToken(g store.Grant) store.RefreshToken {
	return store.RefreshToken{
		Digest:    digest(),
		GrantID:   g.ID,
		ClientID:  g.ClientID,
		CreatedAt: t0,
		ExpiresAt: t0.Add(refreshLife),
	}
}

// nextRefreshToken is the token that replaces old at now.
func nextRefreshToken(old store.RefreshToken, now time.Time) store.RefreshToken {
	return store.RefreshToken{
		Digest:    digest(),
		GrantID:   old.GrantID,
		ClientID:  old.ClientID,
		Parent:    old.Digest,
		CreatedAt: now,
		ExpiresAt: now.Add(refreshLife),
	}
}

// grant creates a grant (the store can only do that by redeeming a code)
// with one refresh token, after letting mod adjust both.
func grant(t *testing.T, s store.Store, c store.Client, u store.User, mod ...func(*store.Grant, *store.RefreshToken)) (store.Grant, store.RefreshToken) {
	t.Helper()
	code := createCode(t, s, c, u)
	g := newGrant(code)
	rt := newRefreshToken(g)
	for _, f := range mod {
		f(&g, &rt)
	}
	_, err := s.RedeemAuthCode(t.Context(), code.Digest, t0, g, &rt)
	must(t, err, "RedeemAuthCode (fixture)")
	return g, rt
}

func newAccessToken(g store.Grant) store.AccessToken {
	return store.AccessToken{
		Digest:    digest(),
		GrantID:   g.ID,
		ClientID:  g.ClientID,
		UserID:    g.UserID,
		Scopes:    g.Scopes,
		Resources: g.Resources,
		AuthTime:  ptr(g.AuthTime),
		CreatedAt: t0,
		ExpiresAt: t0.Add(accessLife),
	}
}

func createAccessToken(t *testing.T, s store.Store, at store.AccessToken) store.AccessToken {
	t.Helper()
	must(t, s.CreateAccessToken(t.Context(), at), "CreateAccessToken")
	return at
}

// clientCredentialsToken is an opaque token with no grant and no user.
func clientCredentialsToken(c store.Client) store.AccessToken {
	return store.AccessToken{
		Digest:    digest(),
		ClientID:  c.ID,
		Scopes:    []string{"mcp:read"},
		Resources: []string{"https://mcp.example/"},
		CreatedAt: t0,
		ExpiresAt: t0.Add(accessLife),
	}
}

func newSigningKey(state store.KeyState, created time.Time) store.SigningKey {
	k := store.SigningKey{
		ID:        "kid-" + uuid.NewString(),
		Algorithm: "ES256",
		State:     state,
		// Not canonical JSON on purpose: the bytes must come back unchanged.
		PublicJWK:           []byte(`{"kty":"EC", "crv":"P-256","x":"` + oauth.RandomString(32) + `","y":"` + oauth.RandomString(32) + `"}`),
		EncryptedPrivateKey: []byte("\x00\x01encrypted\xff" + oauth.RandomString(48)),
		CreatedAt:           created,
	}
	if state == store.KeyActive {
		k.ActivatedAt = ptr(created)
	}
	return k
}
