package register

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd/internal/clientmeta"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// StaticClient is a client the operator declares (config key "clients"):
// first-party apps, and resource servers that call /introspect. Such
// clients are stored with store.SourceConfig and have no registration
// access token, so RFC 7592 cannot touch them.
type StaticClient struct {
	ID   string `mapstructure:"id"`
	Name string `mapstructure:"name"`
	// Secret is the clear-text secret (usually from the environment); it is
	// bcrypt-hashed when stored. Set at most one of Secret and SecretHash.
	Secret string `mapstructure:"secret"`
	// SecretHash is a pre-hashed secret (see oauth.IsSecretHash), so the
	// config file need not hold the secret itself.
	SecretHash   string   `mapstructure:"secret_hash"`
	RedirectURIs []string `mapstructure:"redirect_uris"`
	// GrantTypes defaults to authorization_code and refresh_token when
	// redirect URIs are given, and to none otherwise (a resource server
	// that only introspects); client_credentials must be asked for.
	GrantTypes []string `mapstructure:"grant_types"`
	// TokenEndpointAuthMethod defaults to client_secret_basic when a secret
	// is set and none otherwise. /token accepts basic and post either way.
	TokenEndpointAuthMethod string `mapstructure:"token_endpoint_auth_method"`
	// Scopes and Resources restrict what the client may ask for, within
	// what the server allows; empty means no extra restriction.
	Scopes    []string `mapstructure:"scopes"`
	Resources []string `mapstructure:"resources"`
	// SkipConsent is for first-party apps the operator vouches for.
	SkipConsent bool `mapstructure:"skip_consent"`
	// Introspect allows the client (a resource server) to call /introspect.
	Introspect      bool   `mapstructure:"introspect"`
	ApplicationType string `mapstructure:"application_type"`
	// TokenExchange lets the client (a resource server) exchange the
	// tokens it receives at /token (RFC 8693); nil: it may not.
	TokenExchange *TokenExchange `mapstructure:"token_exchange"`
}

// Bounds on operator-chosen values.
const (
	maxStaticIDLen  = 128
	minSecretLen    = 16
	maxSecretLen    = 72 // bcrypt ignores what follows
	staticIDCharset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
)

func (s StaticClient) authMethod() string {
	switch {
	case s.TokenEndpointAuthMethod != "":
		return s.TokenEndpointAuthMethod
	case s.Secret != "" || s.SecretHash != "":
		return AuthClientSecretBasic
	}
	return AuthNone
}

func (s StaticClient) grantTypes() []string {
	var grants []string
	switch {
	case len(s.GrantTypes) > 0:
		grants = dedupe(s.GrantTypes)
	case len(s.RedirectURIs) > 0:
		grants = []string{GrantAuthorizationCode, GrantRefreshToken}
	}
	if s.TokenExchange != nil && !slices.Contains(grants, GrantTokenExchange) {
		grants = append(grants, GrantTokenExchange)
	}
	return grants
}

// Validate lists every problem with s.
func (s StaticClient) Validate() []error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("client %q: "+format, append([]any{s.ID}, a...)...))
	}
	// The id charset excludes "/" and ":", so a configured id can never be
	// mistaken for a URL (the ids of client ID metadata document clients).
	if s.ID == "" || len(s.ID) > maxStaticIDLen || !onlyChars(s.ID, staticIDCharset) {
		add("id must be 1 to %d characters from A-Z a-z 0-9 . _ -", maxStaticIDLen)
	}
	if err := checkText("name", s.Name, maxNameLen); err != nil {
		add("%s", err.Description)
	}
	hasSecret := s.Secret != "" || s.SecretHash != ""
	if s.Secret != "" && s.SecretHash != "" {
		add("set secret or secret_hash, not both")
	}
	if s.Secret != "" && (len(s.Secret) < minSecretLen || len(s.Secret) > maxSecretLen) {
		add("secret must be %d to %d bytes long", minSecretLen, maxSecretLen)
	}
	if s.SecretHash != "" && !oauth.IsSecretHash(s.SecretHash) {
		add("secret_hash is not a hash authd understands (bcrypt or sha256$<hex>)")
	}
	method := s.authMethod()
	switch {
	case !slices.Contains(clientmeta.AuthMethods, method):
		add("token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
	case method == AuthNone && hasSecret:
		add("a client with token_endpoint_auth_method none must not have a secret")
	case method != AuthNone && !hasSecret:
		add("token_endpoint_auth_method %s needs a secret or secret_hash", method)
	}
	grantTypes := s.grantTypes()
	// Against every grant authd implements: whether the server serves a
	// grant is decided where the registry is built, and /token enforces it.
	// Token exchange is checked apart: it is the configuration's only.
	if err := clientmeta.CheckGrantTypes(grants.Default(), withoutTokenExchange(grantTypes), method, store.SourceConfig); err != nil {
		add("%s", err.Description)
	}
	if s.TokenExchange != nil {
		for _, e := range s.TokenExchange.validate(hasSecret) {
			add("%s", e)
		}
	} else if slices.Contains(grantTypes, GrantTokenExchange) {
		add("grant type %s needs token_exchange (what the client may exchange tokens for)", GrantTokenExchange)
	}
	if err := clientmeta.CheckApplicationType(s.ApplicationType); err != nil {
		add("%s", err.Description)
	}
	if slices.Contains(grantTypes, GrantAuthorizationCode) && len(s.RedirectURIs) == 0 {
		add("redirect_uris is required for the authorization_code grant")
	}
	for _, uri := range s.RedirectURIs {
		if err := oauth.ValidateRedirectURI(uri, s.ApplicationType); err != nil {
			add("%s", err.Description)
		}
	}
	for _, sc := range s.Scopes {
		if got, err := oauth.ParseScope(sc); err != nil || len(got) != 1 || got[0] != sc {
			add("scope %q is not a single valid scope token", sc)
		}
	}
	for _, r := range s.Resources {
		if _, err := oauth.CanonicalResource(r); err != nil {
			add("%s", err.Description)
		}
	}
	if s.Introspect && !hasSecret {
		add("introspect needs a confidential client (a secret or secret_hash)")
	}
	return errs
}

// ToClient returns the stored form of s, hashing a clear-text secret with
// oauth.HashChosenSecret. Call Validate first.
func (s StaticClient) ToClient(now time.Time) (store.Client, error) {
	hash := s.SecretHash
	if s.Secret != "" {
		var err error
		if hash, err = oauth.HashChosenSecret(s.Secret); err != nil {
			return store.Client{}, fmt.Errorf("client %q: hash secret: %w", s.ID, err)
		}
	}
	return s.toClient(hash, now)
}

func (s StaticClient) toClient(secretHash string, now time.Time) (store.Client, error) {
	grantTypes := s.grantTypes()
	md := store.ClientMetadata{
		RedirectURIs:            dedupe(s.RedirectURIs),
		TokenEndpointAuthMethod: s.authMethod(),
		GrantTypes:              grantTypes,
		ApplicationType:         s.ApplicationType,
		ClientName:              s.Name,
		Scope:                   oauth.JoinScope(dedupe(s.Scopes)),
	}
	if slices.Contains(grantTypes, GrantAuthorizationCode) {
		md.ResponseTypes = []string{ResponseTypeCode}
	}
	resources, oerr := oauth.ParseResources(s.Resources)
	if oerr != nil {
		return store.Client{}, fmt.Errorf("client %q: %s", s.ID, oerr.Description)
	}
	c := store.Client{
		ID:               s.ID,
		Source:           store.SourceConfig,
		SecretHash:       secretHash,
		Metadata:         md,
		AllowedScopes:    dedupe(s.Scopes),
		AllowedResources: resources,
		SkipConsent:      s.SkipConsent,
		CanIntrospect:    s.Introspect,
		CreatedAt:        now,
		UpdatedAt:        now,
	}
	return c, nil
}

// StaticClientFrom is the inverse of ToClient (with the secret as its
// hash), for editing a stored client through the same validation.
func StaticClientFrom(c store.Client) StaticClient {
	return StaticClient{
		ID:                      c.ID,
		Name:                    c.Metadata.ClientName,
		SecretHash:              c.SecretHash,
		RedirectURIs:            slices.Clone(c.Metadata.RedirectURIs),
		GrantTypes:              withoutTokenExchange(c.Metadata.GrantTypes), // token_exchange is the file's only
		TokenEndpointAuthMethod: c.Metadata.TokenEndpointAuthMethod,
		Scopes:                  slices.Clone(c.AllowedScopes),
		Resources:               slices.Clone(c.AllowedResources),
		SkipConsent:             c.SkipConsent,
		Introspect:              c.CanIntrospect,
		ApplicationType:         c.Metadata.ApplicationType,
	}
}

// StaticStore is what SyncStaticClients needs from storage.
type StaticStore interface {
	GetClient(ctx context.Context, id string, now time.Time) (store.Client, error)
	UpsertClient(ctx context.Context, c store.Client) error
}

// SyncStaticClients upserts the configured clients as store.SourceConfig,
// at start-up. It is idempotent: an unchanged client is not written again,
// and a clear-text secret that still matches the stored hash keeps that
// hash. Every client is validated before anything is written. Clients
// removed from the config are not deleted, because the admin CLI creates
// config clients too: remove them with `authd clients delete`. A client id
// already taken by a dynamic or metadata-document client is an error.
func SyncStaticClients(ctx context.Context, st StaticStore, clients []StaticClient, now time.Time) error {
	var errs []error
	seen := map[string]bool{}
	for _, s := range clients {
		errs = append(errs, s.Validate()...)
		if seen[s.ID] {
			errs = append(errs, fmt.Errorf("client %q is declared twice", s.ID))
		}
		seen[s.ID] = true
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, s := range clients {
		existing, err := st.GetClient(ctx, s.ID, now)
		found := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("client %q: %w", s.ID, err)
		}
		if found && existing.Source != store.SourceConfig {
			return fmt.Errorf("client %q: the id is already used by a %s client", s.ID, existing.Source)
		}
		var c store.Client
		if found && s.Secret != "" && oauth.VerifySecret(existing.SecretHash, s.Secret) {
			c, err = s.toClient(existing.SecretHash, now)
		} else {
			c, err = s.ToClient(now)
		}
		if err != nil {
			return err
		}
		if found {
			c.CreatedAt, c.LastUsedAt, c.Disabled = existing.CreatedAt, existing.LastUsedAt, existing.Disabled
			if sameClient(c, existing) {
				continue
			}
		}
		if err := st.UpsertClient(ctx, c); err != nil {
			return fmt.Errorf("client %q: %w", s.ID, err)
		}
	}
	return nil
}

func onlyChars(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

// sameClient reports whether a and b differ only in bookkeeping times, in
// time zone or precision, or in nil versus empty lists, as a round trip
// through the database may change them.
func sameClient(a, b store.Client) bool {
	return reflect.DeepEqual(normalised(a), normalised(b))
}

func normalised(c store.Client) store.Client {
	c.CreatedAt, c.UpdatedAt, c.LastUsedAt = time.Time{}, time.Time{}, time.Time{}
	for _, t := range []**time.Time{&c.ExpiresAt, &c.SecretExpiresAt} {
		if *t != nil {
			u := (*t).Truncate(time.Microsecond).UTC()
			*t = &u
		}
	}
	m := &c.Metadata
	for _, l := range []*[]string{&c.AllowedScopes, &c.AllowedResources, &m.RedirectURIs, &m.GrantTypes, &m.ResponseTypes, &m.Contacts} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return c
}
