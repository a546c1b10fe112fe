// Package store defines what authd persists and the contract every storage
// implementation meets. Two implementations exist: Postgres (production; the
// only importer of pgx) and Memory (for --dev and fast unit tests). Both pass
// the same conformance suite in storetest.
//
// Secrets never reach the store in clear: codes, refresh tokens, opaque access
// tokens, registration access tokens, browser-session ids and pending-request
// ids are stored and looked up by their digest (oauth.Digest). Client secrets
// are stored as a self-describing hash (oauth.HashSecret).
//
// Time is always passed in by the caller (now), never read inside the store,
// so that tests control expiry and every replica agrees on what "expired" means
// for a given request.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every implementation. Callers test with errors.Is.
var (
	// ErrNotFound: no such row, or the row exists but is expired; from a
	// create, a row it refers to (its client, user or grant) is gone.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a uniqueness constraint would be violated.
	ErrConflict = errors.New("store: conflict")
	// ErrAlreadyUsed: a one-time value (code, refresh token, pending request)
	// was consumed before. Returned together with the row where the method's
	// doc says so, so the caller can revoke what was derived from it.
	ErrAlreadyUsed = errors.New("store: already used")
	// ErrUnavailable matches (errors.Is) failures to reach the database.
	// Such errors also carry an Unavailable() method, which oauth.AsError
	// turns into 503 temporarily_unavailable rather than 500.
	ErrUnavailable = errors.New("store: database unavailable")
)

// Unavailable wraps err (a connection failure) so that it matches
// ErrUnavailable and answers 503 at the HTTP layer.
func Unavailable(err error) error { return unavailableError{err} }

type unavailableError struct{ err error }

func (e unavailableError) Error() string        { return "store: database unavailable: " + e.err.Error() }
func (e unavailableError) Unwrap() error        { return e.err }
func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e unavailableError) Unavailable() bool    { return true }

// ClientSource says where a client record came from.
type ClientSource string

const (
	SourceDynamic  ClientSource = "dynamic"           // RFC 7591 registration
	SourceConfig   ClientSource = "config"            // config file or admin CLI
	SourceMetadata ClientSource = "metadata_document" // client ID metadata document
)

// ClientMetadata is the RFC 7591 §2 metadata, with its JSON names. It is
// stored as one jsonb document so that adding a field needs no migration.
type ClientMetadata struct {
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	Contacts                []string `json:"contacts,omitempty"`
	TOSURI                  string   `json:"tos_uri,omitempty"`
	PolicyURI               string   `json:"policy_uri,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
}

// Client is a registered OAuth client.
type Client struct {
	ID     string
	Source ClientSource
	// SecretHash is empty for public clients (token_endpoint_auth_method none).
	SecretHash      string
	SecretExpiresAt *time.Time
	// RegistrationTokenHash is the digest of the RFC 7592 registration access
	// token; empty for clients that cannot manage themselves.
	RegistrationTokenHash string
	Metadata              ClientMetadata
	// Fingerprint is a digest of the normalised metadata plus the registering
	// source, used to recognise identical re-registrations (empty: not deduped).
	Fingerprint string
	// AllowedScopes / AllowedResources restrict the client further than the
	// server configuration does; nil means no extra restriction.
	AllowedScopes    []string
	AllowedResources []string
	SkipConsent      bool // first-party clients from config
	CanIntrospect    bool // resource servers allowed to call /introspect
	Disabled         bool // blocked by the operator
	CreatedAt        time.Time
	UpdatedAt        time.Time
	LastUsedAt       time.Time
	// ExpiresAt is the idle expiry of dynamic clients; nil never expires.
	ExpiresAt *time.Time
}

// ClientFilter narrows ListClients.
type ClientFilter struct {
	Source ClientSource // empty: all
	Limit  int          // 0: no limit
}

// UserFilter narrows ListUsers.
type UserFilter struct {
	Provider string // empty: all providers
	Disabled bool   // true: only disabled users
	Limit    int    // 0: no limit
}

// UserLogout is what LogoutUser ended.
type UserLogout struct {
	// UserID is the user logged out; "" when LogoutUpstreamUser found no
	// such user (there was nothing to end).
	UserID   string
	Sessions int64 // browser sessions deleted
	UserRevocation
}

// UpstreamLogout is a verified logout token of an upstream (OpenID Connect
// Back-Channel Logout 1.0), as LogoutUpstreamUser acts on it.
type UpstreamLogout struct {
	Upstream string    // the upstream's id: the Provider of its users
	Subject  string    // the user's subject at the upstream
	JTI      string    // the token's jti, recorded until Expiry
	Expiry   time.Time // the token's exp
	// RevokeGrants also revokes what LogoutUser's revokeGrants does.
	RevokeGrants bool
}

// UserRevocation is what DisableUser revoked.
type UserRevocation struct {
	Grants        []Grant // the grants revoked now, as stored afterwards, oldest first
	RefreshTokens int64   // unused refresh tokens marked used
	AccessTokens  int64   // opaque access tokens revoked
}

// User is an end user as known through one upstream provider. (Provider,
// Subject) is unique and immutable; the rest is refreshed at every login.
type User struct {
	ID            string // uuid issued by authd
	Provider      string // upstream connector id, e.g. "github"
	Subject       string // the provider's immutable id (GitHub numeric id, OIDC sub)
	Login         string // display handle (GitHub login); may change upstream
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string // OIDC groups, GitHub "org" and "org/team"
	Domain        string   // Google Workspace hd
	Disabled      bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
	LastLoginAt   time.Time
}

// AuthRequest is a pending authorization request, alive from GET /authorize
// until a code is issued (or it expires, minutes later). It is looked up by
// the digest of its id (held in the browser's cookie) or by the digest of the
// state sent to the upstream provider.
type AuthRequest struct {
	IDDigest            string
	ClientID            string // "" for the sign-in offered on /apps (no client asks)
	RedirectURI         string
	RedirectURIProvided bool // redirect_uri was present at /authorize (RFC 6749 §4.1.3)
	State               string
	Scopes              []string
	Resources           []string
	CodeChallenge       string
	CodeChallengeMethod string
	Nonce               string
	Prompt              []string
	MaxAge              *int // seconds; nil when absent
	LoginHint           string
	Upstream            string // chosen connector id
	UpstreamStateDigest string // digest of the state sent upstream; unique when set
	UserID              string // set once the user has signed in
	AuthTime            *time.Time
	CreatedAt           time.Time
	ExpiresAt           time.Time
}

// SignIn is who signed a pending request in, and when they authenticated
// (SettleAuthRequest).
type SignIn struct {
	UserID   string
	AuthTime time.Time
}

// Session is a browser's signed-in state at authd (single sign-on).
type Session struct {
	IDDigest  string
	UserID    string
	AuthTime  time.Time
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Consent records what a user approved for a client. Approvals is what
// counts: for each resource URI ("" for a request bound to no resource),
// the scopes approved for that resource (see Covers). Scopes and Resources
// are the unions of everything approved so far, for display only: scope
// admin approved for A and read for B must not cover admin on B (a
// confused deputy). Approvals is nil when empty (e.g. a consent recorded
// before approvals were kept per resource, which covers nothing).
type Consent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	Resources []string
	Approvals map[string][]string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// AuthCode is an issued authorization code, bound to everything the request
// carried.
type AuthCode struct {
	Digest              string
	ClientID            string
	UserID              string
	RedirectURI         string
	RedirectURIProvided bool
	Scopes              []string
	Resources           []string
	CodeChallenge       string
	CodeChallengeMethod string
	Nonce               string
	AuthTime            time.Time
	CreatedAt           time.Time
	ExpiresAt           time.Time
	UsedAt              *time.Time
	GrantID             string // set on redemption: the grant the code produced
}

// Grant is the long-lived authorization a user gave a client; refresh tokens
// and (by grant id) access tokens hang off it. Revoking the grant revokes
// them all.
type Grant struct {
	ID         string // uuid
	ClientID   string
	UserID     string // empty for client_credentials
	Scopes     []string
	Resources  []string
	AuthTime   time.Time
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time // absolute lifetime
	RevokedAt  *time.Time
}

// RefreshToken is one link in a grant's rotation chain.
type RefreshToken struct {
	Digest    string
	GrantID   string
	ClientID  string
	Parent    string // digest of the token this one replaced; empty for the first
	CreatedAt time.Time
	ExpiresAt time.Time // idle expiry (min of idle timeout and grant expiry)
	UsedAt    *time.Time
}

// AccessToken is an opaque access token (JWT access tokens are not stored).
type AccessToken struct {
	Digest    string
	GrantID   string // empty for client_credentials
	ClientID  string
	UserID    string // empty for client_credentials
	Scopes    []string
	Resources []string
	AuthTime  *time.Time
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// UpstreamToken is a user's grant at an upstream identity provider, kept
// for upstreams with store_tokens (the broker, internal/upstreamtokens).
// The tokens themselves are in Sealed, encrypted by the caller before they
// reach the store; the rest is what refresh and purge decide on.
type UpstreamToken struct {
	UserID   string
	Upstream string // connector id
	KeyID    string // names the key Sealed was encrypted with
	Sealed   []byte // ciphertext; opaque to the store
	// ExpiresAt is the upstream access token's expiry; nil: it does not
	// expire (GitHub OAuth apps) or the upstream did not say.
	ExpiresAt   *time.Time
	Refreshable bool     // a refresh token is kept in Sealed
	Scopes      []string // scopes the upstream granted
	// DeadAt is set once the upstream refused the refresh token
	// (invalid_grant): the grant cannot be used again.
	DeadAt *time.Time
	// MembershipCheckedAt is when the memberships the allowlist depends
	// on were last read from the upstream (sign-in or re-check).
	MembershipCheckedAt *time.Time
	CreatedAt           time.Time
	UpdatedAt           time.Time
	// RefreshLeaseUntil: a replica claimed the refresh of this row
	// (ClaimUpstreamRefresh) until then, or a failed refresh holds off
	// the next until then. Put and Update clear it.
	RefreshLeaseUntil *time.Time
	// RefreshUnsettled: the lease before the current one ended without a
	// written result (failed, cut off, or its write lost), so the
	// single-use refresh token may already be spent upstream.
	RefreshUnsettled bool
}

// KeyState is a signing key's place in its life cycle.
type KeyState string

const (
	KeyNext    KeyState = "next"    // published in JWKS, not yet signing
	KeyActive  KeyState = "active"  // signing (exactly one)
	KeyRetired KeyState = "retired" // published until tokens it signed expire
)

// SigningKey is a JWT signing key. The private key is encrypted by the keys
// package before it reaches the store.
type SigningKey struct {
	ID                  string // kid
	Algorithm           string // ES256 or RS256
	State               KeyState
	PublicJWK           []byte // JSON
	EncryptedPrivateKey []byte
	CreatedAt           time.Time
	ActivatedAt         *time.Time
	RetiredAt           *time.Time
	ExpiresAt           *time.Time // stop publishing after this (retired keys)
}

// UpstreamTokenReseal replaces the ciphertext of one kept upstream token
// with the same tokens sealed under another key (`authd keys reencrypt`),
// provided the row still holds OldKeyID and OldSealed.
type UpstreamTokenReseal struct {
	UserID, Upstream string
	OldKeyID         string
	OldSealed        []byte
	KeyID            string
	Sealed           []byte
}

// SigningKeyReseal replaces the encrypted private key of signing key ID
// with the same key encrypted under another secret, provided the row still
// holds Old.
type SigningKeyReseal struct {
	ID       string
	Old, New []byte
}

// MetadataDocument is a fetched client ID metadata document.
type MetadataDocument struct {
	URL       string
	Document  []byte // the JSON as fetched
	ETag      string
	FetchedAt time.Time
	ExpiresAt time.Time
}

// PurgeResult counts what Purge removed, per table.
//
// Keys are the table names: "auth_codes", "auth_requests", "sessions",
// "revoked_jtis", "clients", "grants", "refresh_tokens", "access_tokens",
// "signing_keys", "metadata_documents", "upstream_tokens". Counts cover rows deleted by their
// own table's expiry rule; rows that went along with a deleted parent (the
// grants, tokens and consents of a purged client, the tokens of a purged
// grant) are not counted.
type PurgeResult map[string]int64

// Stats is what `authd stats` prints.
type Stats struct {
	Clients      int64
	Users        int64
	ActiveGrants int64
	// TokensIssued counts refresh tokens ever created that still exist.
	RefreshTokens int64
}

// Store is everything authd persists. Endpoint packages declare narrower
// interfaces listing only the methods they call.
//
// Contract details every implementation follows (checked by storetest):
//
//   - Expiry: a row is expired when its ExpiresAt <= now; it is live only
//     while now < ExpiresAt. Methods taking now treat expired rows exactly
//     like absent ones (ErrNotFound); Purge deletes them later.
//   - Methods without now (UpdateClient, UpdateAuthRequest, GetGrant,
//     GetRefreshToken, GetAccessToken, GetMetadataDocument, ListClients,
//     CountClients, the List methods) see expired-but-unpurged rows too; the
//     caller decides.
//   - Lists are ordered oldest first: by CreatedAt, then by ID (ClientID for
//     consents).
//   - Rows that reference a client, user or grant require it to exist (a
//     foreign key in Postgres); such a failure is a plain error.
//   - nil and empty slices are stored distinctly where the distinction is a
//     policy (Client.AllowedScopes/AllowedResources: nil means no
//     restriction, empty means nothing allowed).
//   - A method that fails writes nothing: every multi-row write is one
//     transaction.
type Store interface {
	Ping(ctx context.Context) error
	Close()

	// Clients.
	CreateClient(ctx context.Context, c Client) error // ErrConflict on duplicate id
	GetClient(ctx context.Context, id string, now time.Time) (Client, error)
	// FindClientByFingerprint returns an unexpired client with that fingerprint.
	// If several match, the most recently created one. An empty fingerprint
	// ("not deduped") never matches: ErrNotFound.
	FindClientByFingerprint(ctx context.Context, fingerprint string, now time.Time) (Client, error)
	// UpdateClient replaces every field but ID and CreatedAt. ErrNotFound if absent.
	UpdateClient(ctx context.Context, c Client) error
	// UpdateClientIf is UpdateClient only while the stored
	// RegistrationTokenHash is still ratHash (the token the caller
	// authenticated with), atomically: ErrNotFound when the client is gone
	// or its registration token changed meanwhile (RFC 7592 rotation).
	UpdateClientIf(ctx context.Context, c Client, ratHash string) error
	// UpdateClientIfForgetConsents is UpdateClientIf and
	// ForgetClientConsents together, atomically: an RFC 7592 update that
	// changes what users approved never takes effect while their consents
	// to the old metadata survive, whatever fails or is cancelled.
	UpdateClientIfForgetConsents(ctx context.Context, c Client, ratHash string) error
	// UpsertClient creates or replaces a client (config clients at start-up).
	// Replacing keeps the stored CreatedAt, like UpdateClient.
	UpsertClient(ctx context.Context, c Client) error
	// DeleteClient removes the client and everything issued to it (codes,
	// grants, refresh tokens, opaque access tokens, consents, pending requests).
	// ErrNotFound if there is no such client.
	DeleteClient(ctx context.Context, id string) error
	// TouchClient records use: sets LastUsedAt and, for clients with an idle
	// expiry, slides ExpiresAt to now+idle. Cheap; may be skipped if recent.
	// ErrNotFound if the client is absent or already expired at now: an
	// expired client is never revived.
	TouchClient(ctx context.Context, id string, now time.Time, idle time.Duration) error
	// TouchClientIf is TouchClient only while the client's Fingerprint is
	// still fingerprint (never for ""), atomically: ErrNotFound when the
	// client changed meanwhile (an RFC 7592 update clears it), so that a
	// registration sharing a client it read never shares a changed one.
	TouchClientIf(ctx context.Context, id, fingerprint string, now time.Time, idle time.Duration) error
	ListClients(ctx context.Context, f ClientFilter) ([]Client, error)
	CountClients(ctx context.Context, source ClientSource) (int64, error)

	// Users.
	// UpsertUser inserts or updates by (Provider, Subject) and returns the
	// stored user with its stable ID. Disabled is never changed by an upsert.
	// On insert the store assigns a fresh uuid when u.ID is empty; on update
	// u.ID, CreatedAt and Disabled are ignored and the rest is replaced.
	// GetUser, FindUser, SetUserDisabled and DisableUser: ErrNotFound if
	// absent.
	UpsertUser(ctx context.Context, u User) (User, error)
	GetUser(ctx context.Context, id string) (User, error)
	// FindUser looks the user up by (Provider, Subject).
	FindUser(ctx context.Context, provider, subject string) (User, error)
	// ListUsers is ordered newest sign-in first (LastLoginAt descending,
	// then ID), unlike the other lists: operators look for recent users.
	ListUsers(ctx context.Context, f UserFilter) ([]User, error)
	// SetUserDisabled sets the flag and nothing else: it revokes nothing,
	// so what was issued before stops working only where the flag is
	// checked. Enabling goes through it (and never un-revokes); an
	// operator disabling a user calls DisableUser.
	SetUserDisabled(ctx context.Context, id string, disabled bool) error
	// DisableUser disables the user and, in the same transaction, revokes
	// every grant of theirs not revoked yet, as RevokeGrant does, and every
	// opaque access token bound to them, and deletes their upstream tokens.
	// Disabling a disabled user again is
	// not an error: it revokes whatever is live (say, a grant redeemed
	// meanwhile). It returns what it revoked.
	DisableUser(ctx context.Context, id string, now time.Time) (UserRevocation, error)
	// LogoutUser ends the user's sign-in at authd, as an upstream's
	// back-channel logout asks: it deletes their browser sessions and
	// their pending authorization requests that carry a sign-in (UserID
	// set), and with revokeGrants also revokes what DisableUser revokes
	// and deletes their kept upstream tokens, in one transaction, without
	// disabling the user. ErrNotFound if the
	// user is unknown.
	LogoutUser(ctx context.Context, id string, now time.Time, revokeGrants bool) (UserLogout, error)
	// UseLogoutToken records the jti of an upstream's logout token until
	// exp; ErrConflict if that upstream's jti was recorded before (a
	// replay), on any replica.
	UseLogoutToken(ctx context.Context, upstream, jti string, exp time.Time) error
	// LogoutUpstreamUser acts on an upstream's logout token in one
	// transaction: it records the jti as UseLogoutToken does (ErrConflict
	// on a replay, and nothing else happens), finds the user by
	// (l.Upstream, l.Subject) and logs them out as LogoutUser does with
	// l.RevokeGrants. A user nobody knows is no error: the jti is recorded
	// all the same and the result's UserID is "". Any error leaves nothing
	// recorded, so that the provider's retry of the same token (OpenID
	// Connect Back-Channel Logout 1.0 §2.8) is acted on, not refused as a
	// replay.
	LogoutUpstreamUser(ctx context.Context, l UpstreamLogout, now time.Time) (UserLogout, error)
	// RevokeUserAccess ends everything the user holds at authd without
	// disabling them, in one transaction: what LogoutUser with
	// revokeGrants ends, except their kept upstream tokens, which stay
	// (the broker keeps a refused upstream grant, marked dead, so that the
	// user is told to sign in there again). ErrNotFound if the user is
	// unknown.
	RevokeUserAccess(ctx context.Context, id string, now time.Time) (UserLogout, error)

	// Pending authorization requests. ErrConflict on a duplicate IDDigest or
	// a duplicate non-empty UpstreamStateDigest; GetAuthRequestByUpstreamState
	// never matches an empty stateDigest.
	CreateAuthRequest(ctx context.Context, r AuthRequest) error
	GetAuthRequest(ctx context.Context, idDigest string, now time.Time) (AuthRequest, error)
	GetAuthRequestByUpstreamState(ctx context.Context, stateDigest string, now time.Time) (AuthRequest, error)
	// UpdateAuthRequest replaces the mutable fields (Upstream,
	// UpstreamStateDigest, UserID, AuthTime, Scopes, Resources); the others
	// keep their stored values. ErrNotFound if absent, ErrConflict if the
	// UpstreamStateDigest belongs to another request.
	UpdateAuthRequest(ctx context.Context, r AuthRequest) error
	// ConsumeAuthRequest deletes and returns the request; exactly one of
	// several concurrent callers succeeds, the others get ErrNotFound.
	// Expired: ErrNotFound.
	ConsumeAuthRequest(ctx context.Context, idDigest string, now time.Time) (AuthRequest, error)
	// ClaimAuthRequest takes a pending request for one upstream answer,
	// before the upstream is asked about it: only while the request
	// idDigest is unexpired and still waits for the answer stateDigest
	// (its UpstreamStateDigest; "" never matches), atomically, it makes
	// it wait for none (UpstreamStateDigest becomes ClaimedState(stateDigest),
	// which no upstream state matches; UserID and AuthTime cleared, an
	// earlier sign-in included: the user is signing in again) and returns
	// it as claimed. Of concurrent claims exactly one succeeds, so
	// one upstream answer is used once. ErrNotFound if the request is
	// unknown or expired; ErrConflict, with the request as it is stored,
	// if it waits for another answer (a newer upstream sign-in replaced
	// this one) or for none (claimed or signed in already).
	ClaimAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time) (AuthRequest, error)
	// SettleAuthRequest ends the claim of the answer stateDigest once the
	// upstream answered: only while the request idDigest is unexpired and
	// as that claim left it (UpstreamStateDigest ClaimedState(stateDigest),
	// no UserID), atomically, it records the sign-in (signIn != nil:
	// UserID and AuthTime set, UpstreamStateDigest cleared) or deletes the
	// request (signIn == nil), and returns it. ErrNotFound if unknown or
	// expired; ErrConflict, with the request as it is stored, if a newer
	// upstream sign-in started meanwhile (claimed or not) or it is signed
	// in. A sign-in for an unknown user fails and changes nothing.
	SettleAuthRequest(ctx context.Context, idDigest, stateDigest string, now time.Time, signIn *SignIn) (AuthRequest, error)

	// Browser sessions. ErrConflict on a duplicate IDDigest. DeleteSession
	// is idempotent (nil when absent) so that signing out never fails.
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, idDigest string, now time.Time) (Session, error)
	// GetSessionUser returns the unexpired session and its user in one
	// read; ErrNotFound if either is unknown or the session expired.
	GetSessionUser(ctx context.Context, idDigest string, now time.Time) (Session, User, error)
	DeleteSession(ctx context.Context, idDigest string) error

	// Consents.
	GetConsent(ctx context.Context, userID, clientID string) (Consent, error)
	// AddConsent merges scopes and resources into the stored consent
	// (set union, no duplicates), creating it if absent, and merges
	// c.Approvals per resource the same way, atomically, so that
	// concurrent approvals all count. The first CreatedAt is kept;
	// UpdatedAt is taken from c.
	AddConsent(ctx context.Context, c Consent) error
	ListConsents(ctx context.Context, userID string) ([]Consent, error)
	// DeleteConsent removes the consent and revokes the user's grants for
	// that client. It is idempotent and revokes the grants (as RevokeGrant)
	// even when no consent row exists (first-party clients skip consent).
	DeleteConsent(ctx context.Context, userID, clientID string, now time.Time) error
	// ForgetClientConsents removes every user's consent for the client, so
	// that each is asked again; grants and tokens stay. RFC 7592 calls it
	// when a registration's metadata changes (what users approved was the
	// old one). Idempotent.
	ForgetClientConsents(ctx context.Context, clientID string) error

	// Authorization codes.
	CreateAuthCode(ctx context.Context, c AuthCode) error
	// GetAuthCode returns the code whether used or not (so a replay can be
	// detected, also after the code's expiry), ErrNotFound if unknown, or
	// unused and expired. Purge keeps a used code while its grant is live.
	GetAuthCode(ctx context.Context, digest string, now time.Time) (AuthCode, error)
	// GetAuthCodeUser is GetAuthCode and the code's user in one read;
	// ErrNotFound if either is unknown.
	GetAuthCodeUser(ctx context.Context, digest string, now time.Time) (AuthCode, User, error)
	// RedeemAuthCode atomically marks the code used and, in the same
	// transaction, creates grant g and (if rt != nil) refresh token rt, and
	// records g.ID on the code. If the code was already used it returns the
	// stored code (with its GrantID) and ErrAlreadyUsed and writes nothing.
	// Expired or unknown: ErrNotFound (expiry is checked first, so an
	// expired replay revokes nothing). On success it returns the code with
	// UsedAt = now and GrantID = g.ID. If g.ID or rt's digest already exists
	// it returns ErrConflict and the code stays unused.
	RedeemAuthCode(ctx context.Context, digest string, now time.Time, g Grant, rt *RefreshToken) (AuthCode, error)

	// Grants. GetGrant returns revoked and expired grants too.
	GetGrant(ctx context.Context, id string) (Grant, error)
	// GetGrantUser returns the grant (in any state) and its user in one
	// read, for the hot paths that need both; ErrNotFound if either is
	// unknown (a grant without a user included).
	GetGrantUser(ctx context.Context, id string) (Grant, User, error)
	ListGrants(ctx context.Context, userID string) ([]Grant, error)
	// RevokeGrant marks the grant revoked, and with it its refresh tokens and
	// opaque access tokens. Revoking twice is not an error.
	// The first RevokedAt is kept. Refresh tokens get UsedAt = now (unless
	// used already), access tokens RevokedAt = now. ErrNotFound if unknown.
	RevokeGrant(ctx context.Context, id string, now time.Time) error

	// Refresh tokens.
	CreateRefreshToken(ctx context.Context, rt RefreshToken) error
	GetRefreshToken(ctx context.Context, digest string) (RefreshToken, error)
	// GetRefreshTokenGrant returns the token, its grant and the grant's
	// user (each in any state) in one read; ErrNotFound if any is unknown.
	GetRefreshTokenGrant(ctx context.Context, digest string) (RefreshToken, Grant, User, error)
	// RotateRefreshToken atomically marks old used and inserts next (same
	// grant), bumping the grant's LastUsedAt. Unused siblings of old (other
	// successors of old's parent, left by a retry) are marked used in the
	// same transaction: once a successor is used, the family has one live
	// refresh token again. Unknown, expired, or grant revoked/expired:
	// ErrNotFound. These checks come before the reuse check, so a used
	// token of a revoked grant gives ErrNotFound.
	//
	// If old was already used, it is a retry when all of these hold:
	// retryWindow > 0, now < old.UsedAt + retryWindow (measured from the
	// first use, so retries cannot stretch the window), next is of old's
	// client, and old has at least one successor (it was rotated, not
	// superseded or revoked) none of which is used yet (the chain has not
	// moved on). A retry inserts next as one more successor of old, old
	// keeping its UsedAt, bumps the grant and succeeds. Anything else is
	// reuse (OAuth 2.1 §4.3.1): the grant is revoked and ErrAlreadyUsed
	// returned with the now revoked grant. Concurrent callers with one
	// unused token: exactly one rotates it; the others are retries under
	// the rule above, or reuse.
	// next must carry old's GrantID and ClientID (an error otherwise); a
	// duplicate next digest gives ErrConflict. Either way nothing is written.
	// On success the updated grant is returned.
	RotateRefreshToken(ctx context.Context, old string, now time.Time, next RefreshToken, retryWindow time.Duration) (Grant, error)

	// Opaque access tokens. CreateAccessToken of a token with a GrantID
	// succeeds only while that grant exists and is not revoked
	// (ErrNotFound otherwise), atomically with RevokeGrant: a token is
	// never left live in a revoked grant.
	CreateAccessToken(ctx context.Context, t AccessToken) error
	// GetAccessToken returns the token (even revoked/expired, so callers can
	// decide); ErrNotFound if unknown.
	GetAccessToken(ctx context.Context, digest string) (AccessToken, error)
	// RevokeAccessToken keeps the first RevokedAt; ErrNotFound if unknown.
	RevokeAccessToken(ctx context.Context, digest string, now time.Time) error

	// JWT access token revocation by jti, remembered until the token's exp.
	// Revoking again keeps the later exp; IsJTIRevoked is true while now < exp.
	RevokeJTI(ctx context.Context, jti string, exp time.Time) error
	IsJTIRevoked(ctx context.Context, jti string, now time.Time) (bool, error)
	// CheckJWTGrant is IsJTIRevoked and GetGrantUser in one read, for
	// checking a user's JWT access token: whether jti is revoked, and its
	// grant (in any state) with the grant's user. ErrNotFound if the grant
	// or its user is unknown, whatever the jti.
	CheckJWTGrant(ctx context.Context, jti, grantID string, now time.Time) (revoked bool, g Grant, u User, err error)

	// Upstream tokens (one row per user and upstream). PutUpstreamToken
	// creates or replaces the row, keeping the first CreatedAt; the user
	// must exist. GetUpstreamToken: ErrNotFound if absent (whatever its
	// DeadAt or ExpiresAt: the caller decides). ListUpstreamTokens is
	// ordered by CreatedAt, then Upstream. DeleteUpstreamToken is
	// idempotent. DisableUser deletes the user's rows; Purge deletes rows
	// that can no longer be used (DeadAt set, or expired at now and not
	// Refreshable).
	PutUpstreamToken(ctx context.Context, t UpstreamToken) error
	GetUpstreamToken(ctx context.Context, userID, upstream string) (UpstreamToken, error)
	ListUpstreamTokens(ctx context.Context, userID string) ([]UpstreamToken, error)
	DeleteUpstreamToken(ctx context.Context, userID, upstream string) error
	// UpdateUpstreamToken calls update with the row while holding it
	// exclusively against every other UpdateUpstreamToken of that row, on
	// any replica, and stores what update returns (nil: nothing changes;
	// CreatedAt is kept; a write also clears the refresh lease and
	// RefreshUnsettled, as for a new sign-in: to move only the time of a
	// membership check use DeferMembershipCheck). It returns the row as
	// stored afterwards. ErrNotFound if absent; an error from update is returned as is and
	// nothing is written. This is how exactly one of several callers
	// refreshes a single-use upstream refresh token: the later ones see
	// the earlier one's result.
	UpdateUpstreamToken(ctx context.Context, userID, upstream string, update func(UpstreamToken) (*UpstreamToken, error)) (UpstreamToken, error)
	// ClaimUpstreamRefresh takes the refresh lease of a live row until
	// `until`, in one compare-and-set statement, if its access token
	// expires before expiresBefore and no lease is held at now; it
	// returns the row as it then is and whether this call claimed it.
	// Claiming sets RefreshUnsettled to whether a lease was still there
	// (the previous attempt ended without FinishUpstreamRefresh writing a
	// result). No connection or lock is held once it returns: the caller
	// calls the upstream, then FinishUpstreamRefresh. ErrNotFound if
	// absent. Times are kept to the microsecond.
	ClaimUpstreamRefresh(ctx context.Context, userID, upstream string, now, expiresBefore, until time.Time) (UpstreamToken, bool, error)
	// FinishUpstreamRefresh ends the lease `lease` of (userID, upstream):
	// with next, it writes next's token fields (KeyID, Sealed, ExpiresAt,
	// Refreshable, Scopes, DeadAt, UpdatedAt) and clears the lease and
	// RefreshUnsettled; with nil, it moves the lease to retryAt (a failed
	// refresh backs off). A next with DeadAt set (the upstream refused
	// the refresh token) leaves KeyID and Sealed as the row holds them:
	// the tokens are never used again, and a reseal (`authd keys
	// reencrypt`) done while the lease was held must not be undone by the
	// claim-time ciphertext. Only if the row still holds that lease: false
	// when it was lost (expired and claimed by another, or the row was
	// replaced by a sign-in or deleted).
	FinishUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time, next *UpstreamToken, retryAt time.Time) (bool, error)
	// FinishUpstreamRefreshRevoked ends the lease `lease` of (userID,
	// upstream) after the upstream refused the refresh token, and with it
	// what the user holds at authd, in one transaction: the row is marked
	// dead at now (DeadAt, UpdatedAt; the lease and RefreshUnsettled
	// cleared, nothing else changed) and everything RevokeUserAccess ends
	// ends. All of it or, on error, none: the row then still holds the
	// lease. Only if the row still holds that lease: false, having changed
	// nothing, when it was lost (a sign-in replaced the row, so the refused
	// token is no longer the kept one; another replica took over; the row
	// or the user was deleted).
	FinishUpstreamRefreshRevoked(ctx context.Context, userID, upstream string, lease, now time.Time) (bool, UserLogout, error)
	// SettleUpstreamRefresh ends the lease `lease` of (userID, upstream)
	// with nothing else written: the lease and RefreshUnsettled are
	// cleared, the token fields stay as the row holds them. The next
	// refresh may be made at once and counts as settled: the upstream
	// answered this attempt (it refused the refresh token), and only
	// acting on the answer failed (FinishUpstreamRefreshRevoked). Only if
	// the row still holds that lease: false otherwise.
	SettleUpstreamRefresh(ctx context.Context, userID, upstream string, lease time.Time) (bool, error)
	// ClaimMembershipCheck sets MembershipCheckedAt = now and returns true
	// if it was unset or at most now-interval and the row is not dead,
	// atomically: of several replicas asking at once, one claims the check.
	// False (no error) when not due or absent.
	ClaimMembershipCheck(ctx context.Context, userID, upstream string, now time.Time, interval time.Duration) (bool, error)
	// DeferMembershipCheck sets MembershipCheckedAt = at, and nothing
	// else, if it is unset or at most now (no replica checked since the
	// claim at now): a check that could not be made is retried sooner.
	// Unlike UpdateUpstreamToken it leaves the refresh lease and
	// RefreshUnsettled alone, so that a refresh lost during the check is
	// still known to be unsettled. False (no error) when absent or
	// checked since.
	DeferMembershipCheck(ctx context.Context, userID, upstream string, now, at time.Time) (bool, error)
	// DeleteUpstreamTokensExcept deletes every user's upstream tokens of
	// the upstreams not in keep (no longer configured, or store_tokens
	// turned off) last written before writtenBefore, and returns how
	// many. A row's last write is the later of UpdatedAt and
	// MembershipCheckedAt (a membership check claims the row on use), so
	// rows another replica (one that keeps that upstream, during a
	// rolling deploy or a misconfiguration of this one) still writes
	// stay.
	DeleteUpstreamTokensExcept(ctx context.Context, keep []string, writtenBefore time.Time) (int64, error)
	// ListUpstreamTokensAfter pages through every user's rows: up to
	// limit rows ordered by (UserID, Upstream) in the store's own order,
	// starting after the row (afterUser, afterUpstream); "", "" starts at
	// the first. Each row appears on exactly one page, however the pages
	// are cut. For re-encrypting them all (`authd keys reencrypt`).
	ListUpstreamTokensAfter(ctx context.Context, afterUser, afterUpstream string, limit int) ([]UpstreamToken, error)
	// ResealUpstreamTokens writes each reseal's KeyID and Sealed, all in
	// one transaction, to the rows that still hold its OldKeyID and
	// OldSealed (compare-and-set: a refresh or sign-in that rewrote a row
	// meanwhile sealed it anew, and wins). Nothing else changes: not
	// UpdatedAt, not the refresh lease, so a refresh under way finishes
	// as if nothing happened. It returns how many rows were written;
	// absent rows are skipped.
	ResealUpstreamTokens(ctx context.Context, rs []UpstreamTokenReseal) (int, error)
	// CountUpstreamTokensByKey returns how many kept upstream tokens are
	// sealed under each key id (dead rows included), reading no
	// ciphertext: `authd keys reencrypt` checks that every key id is
	// configured before it rewrites anything.
	CountUpstreamTokensByKey(ctx context.Context) (map[string]int, error)

	// Encryption secrets replicas started with, by fingerprint (never the
	// secret). RecordEncryptionSecret notes a start at now: a new
	// fingerprint gets FirstSeenAt = LastSeenAt = now, a known one's
	// LastSeenAt moves to now if later. ListEncryptionSecrets returns
	// every record, latest LastSeenAt first.
	RecordEncryptionSecret(ctx context.Context, fingerprint string, now time.Time) error
	ListEncryptionSecrets(ctx context.Context) ([]EncryptionSecret, error)

	// Signing keys.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// CreateSigningKey inserts a key; ErrConflict if State is active and an
	// active key exists already (so racing replicas create only one), and
	// on a duplicate kid.
	CreateSigningKey(ctx context.Context, k SigningKey) error
	// ActivateSigningKey makes kid the active key and retires the previous
	// active key (setting its RetiredAt and ExpiresAt = retireExpiry), in one
	// transaction. It sets kid's ActivatedAt = now. Activating the active key
	// again is a no-op (racing replicas); an unknown kid is ErrNotFound and a
	// retired one ErrConflict (verifiers may have dropped it already).
	ActivateSigningKey(ctx context.Context, kid string, now, retireExpiry time.Time) error
	// ResealSigningKeys writes each reseal's New as the encrypted private
	// key of key ID, all in one transaction, where the row still holds Old
	// (compare-and-set); nothing else of the row changes. It returns how
	// many rows were written; absent keys are skipped.
	ResealSigningKeys(ctx context.Context, rs []SigningKeyReseal) (int, error)

	// Client ID metadata documents. Get returns expired documents too (their
	// ETag allows a conditional refetch), ErrNotFound if absent; Put creates
	// or replaces the document for d.URL.
	GetMetadataDocument(ctx context.Context, url string) (MetadataDocument, error)
	PutMetadataDocument(ctx context.Context, d MetadataDocument) error

	// Maintenance. Purge deletes expired rows (codes, pending requests,
	// sessions, revoked jtis, expired dynamic clients, expired or used refresh
	// tokens past their expiry, expired grants and opaque tokens, retired keys
	// past expiry) in bounded batches; safe to run on several replicas at once.
	// It also deletes metadata documents past their ExpiresAt, and every
	// client not from config whose ExpiresAt has passed. Used refresh tokens
	// stay until their own expiry: reuse detection needs them.
	// Stats counts clients unexpired at now, all users, grants neither
	// revoked nor expired, and every stored refresh token.
	Purge(ctx context.Context, now time.Time) (PurgeResult, error)
	Stats(ctx context.Context, now time.Time) (Stats, error)
}

// ClaimedState is what a claim (ClaimAuthRequest) of the upstream answer
// stateDigest leaves in a request's UpstreamStateDigest: no upstream state
// (a digest has no colon) is ever equal to it, so the claimed answer is
// not found again, and SettleAuthRequest can tell this claim from a newer
// sign-in's.
func ClaimedState(stateDigest string) string { return "claimed:" + stateDigest }
