// Package register implements client registration: RFC 7591 dynamic
// registration at POST /register, RFC 7592 management of a registration at
// /register/{client_id}, and pre-registered clients from configuration
// (StaticClient, SyncStaticClients).
//
// # Re-registration and shared clients
//
// MCP clients register again and again: claude.ai does so on every connect,
// from shared egress addresses. To keep the clients table from growing with
// every connect, a public client (token_endpoint_auth_method none) whose
// normalised metadata and source network (IPv4 /24, IPv6 /64) match an
// unexpired earlier registration gets that client's client_id back instead
// of a new row. This is harmless for public clients: they hold no secret,
// and since the redirect URIs are identical, codes issued to the shared id
// reach the same places whoever registered it.
//
// Sharing never takes anything from the first registrant: its registration
// access token stays valid, and it keeps managing the client (RFC 7592
// GET, PUT, DELETE). Later registrants get the client_id without a
// registration access token or registration_client_uri, so at most one
// party manages a client. What that party may do to the others: a PUT
// ends the sharing (the fingerprint is cleared, so later identical
// registrations get a client of their own) and, when it changes the
// metadata, every user's remembered consent for the client is forgotten,
// so nobody's earlier approval carries over to redirect URIs or a name the
// user never saw; a DELETE ends the client for everyone, whose next
// registration creates a new one.
//
// Sharing needs networks authd can tell apart. The source network is read
// from the peer address, or from X-Forwarded-For when the peer is one of
// trusted_proxies. Registrations are not shared when the address authd
// sees stands for many clients: a trusted proxy itself, or, with no
// trusted_proxies configured, a private, loopback, link-local or shared
// (CGNAT) address, which is usually an unconfigured reverse proxy.
//
// Confidential clients are never deduplicated: handing out the existing
// client_id would need a new secret, breaking the party holding the old
// one. Each confidential registration creates a row; the rate limits and the
// idle lifetime bound how many exist.
//
// # Application type
//
// application_type is stored as sent, and left empty when absent, rather
// than defaulted to "web" as OpenID Connect Registration does: MCP clients
// such as Cursor register private-use scheme redirect URIs without
// application_type, and would be refused by the web rules. An absent
// application_type lets each redirect URI pass either the web or the native
// rules (see oauth.ValidateRedirectURI); "web" demands https (or http on
// loopback), "native" also allows private-use schemes.
package register

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/ratelimit"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

// Store is what the registration endpoints need from storage.
type Store interface {
	CreateClient(ctx context.Context, c store.Client) error
	GetClient(ctx context.Context, id string, now time.Time) (store.Client, error)
	FindClientByFingerprint(ctx context.Context, fingerprint string, now time.Time) (store.Client, error)
	UpdateClient(ctx context.Context, c store.Client) error
	UpdateClientIf(ctx context.Context, c store.Client, ratHash string) error
	UpdateClientIfForgetConsents(ctx context.Context, c store.Client, ratHash string) error
	DeleteClient(ctx context.Context, id string) error
	TouchClientIf(ctx context.Context, id, fingerprint string, now time.Time, idle time.Duration) error
}

// Handler serves POST /register and GET/PUT/DELETE /register/{client_id}.
type Handler struct {
	Store Store
	// Issuer is the server's issuer URL; registration_client_uri is
	// Issuer + "/register/" + client_id.
	Issuer string
	Policy Policy
	// Grants are the grant types the server serves; clients may register
	// those open to dynamically registered clients (grants.Grant.Dynamic).
	// The zero value means grants.Default(), with client_credentials open
	// as Policy.AllowClientCredentials says.
	Grants grants.Registry
	// ScopePolicy is the server's resource and scope policy: a
	// registration's scope is stored and returned with only the scopes it
	// knows (policy.RegisteredScope; RFC 7591 §3.2.1 lets the server
	// replace the value), so it never advertises what authd will not
	// grant. Nil: every well-formed scope is known.
	ScopePolicy *policy.Policy
	// Limiter rate-limits every registration route by client network; nil
	// means no limit.
	Limiter *ratelimit.Limiter
	// Throttle limits failed registration access token checks (RFC 7592)
	// per network and client id, before any comparison; nil: no limit. It
	// is the one /token, /revoke and /introspect use, so guesses at any of
	// them share one per-network budget (the per-client budgets of
	// registration access tokens and client secrets are apart).
	Throttle *clientauth.Throttle
	// TrustedProxies are the configured trusted_proxies: registrations
	// from them, or (when there are none) from non-public addresses, are
	// never shared (see the package documentation).
	TrustedProxies []netip.Prefix
	Now            func() time.Time
	Log            *slog.Logger
}

// Routes mounts the registration endpoints, or nothing when registration
// is disabled by the policy.
//
// The endpoints answer cross-origin requests (Access-Control-Allow-Origin
// *) because browser-based MCP clients, such as the MCP Inspector, register
// from the browser. That is safe here: no cookie or other ambient credential
// is involved, only explicit Bearer tokens.
func (h *Handler) Routes(r chi.Router) {
	if !h.Policy.Enabled {
		return
	}
	r.Group(func(r chi.Router) {
		r.Use(cors)
		r.Options("/register", preflight)
		r.Options("/register/{client_id}", preflight)
		r.Group(func(r chi.Router) {
			r.Use(ratelimit.Middleware(h.Limiter, ratelimit.RemoteIPKey))
			r.Post("/register", h.register)
			r.Get("/register/{client_id}", h.read)
			r.Put("/register/{client_id}", h.update)
			r.Delete("/register/{client_id}", h.delete)
		})
	})
}

// clientInfo is the client information response (RFC 7591 §3.2.1,
// RFC 7592 §3).
type clientInfo struct {
	ClientID         string `json:"client_id"`
	ClientSecret     string `json:"client_secret,omitempty"`
	ClientIDIssuedAt int64  `json:"client_id_issued_at"`
	// ClientSecretExpiresAt is present for confidential clients; 0 means
	// the secret does not expire.
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri,omitempty"`
	store.ClientMetadata
}

// register implements RFC 7591 §3.1.
func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	info, err := h.doRegister(w, r)
	if err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	oauth.NoStore(w)
	oauth.WriteJSON(w, http.StatusCreated, info)
}

func (h *Handler) doRegister(w http.ResponseWriter, r *http.Request) (clientInfo, error) {
	if err := h.checkInitialAccessToken(r); err != nil {
		return clientInfo{}, err
	}
	body, err := readJSONBody(w, r, h.Policy.maxBodyBytes())
	if err != nil {
		return clientInfo{}, err
	}
	req, oerr := decodeMetadata(body)
	if oerr != nil {
		return clientInfo{}, oerr
	}
	md, oerr := h.Policy.validateWith(h.Policy.grants(h.Grants), req.ClientMetadata)
	if oerr != nil {
		return clientInfo{}, oerr
	}
	md.Scope = h.ScopePolicy.RegisteredScope(md.Scope)

	ctx, now := r.Context(), h.now()
	var fp string
	if md.TokenEndpointAuthMethod == AuthNone && h.distinctNetwork(r) {
		fp = fingerprint(md, sourceNetwork(r))
		existing, err := h.Store.FindClientByFingerprint(ctx, fp, now)
		if err == nil {
			info, err := h.share(ctx, existing, now)
			if !errors.Is(err, store.ErrNotFound) {
				return info, err
			}
			// Changed or deleted since it was found: register anew.
		} else if !errors.Is(err, store.ErrNotFound) {
			return clientInfo{}, err
		}
	}

	c := store.Client{
		ID:          uuid.NewString(),
		Source:      store.SourceDynamic,
		Metadata:    md,
		Fingerprint: fp,
		CreatedAt:   now,
		UpdatedAt:   now,
		ExpiresAt:   h.idleExpiry(now),
	}
	secret := h.issueSecret(&c, now)
	rat := oauth.NewToken(oauth.PrefixRegistrationToken)
	c.RegistrationTokenHash = oauth.Digest(rat)
	if err := h.Store.CreateClient(ctx, c); err != nil {
		return clientInfo{}, err
	}
	reqlog.Set(ctx, "client_id", c.ID)
	h.log().InfoContext(ctx, "client registered", "event", "client_registered", "client_id", c.ID,
		"client_name", md.ClientName, "auth_method", md.TokenEndpointAuthMethod, "redirect_uris", md.RedirectURIs)
	return h.info(c, secret, rat), nil
}

// share answers a repeated public registration with the existing client.
// Its registration access token is left alone: the first registrant keeps
// managing it (see the package documentation).
func (h *Handler) share(ctx context.Context, c store.Client, now time.Time) (clientInfo, error) {
	if c.Disabled {
		// Handing out a new row would undo the operator's block.
		return clientInfo{}, oauth.InvalidClientMetadata("a client with this metadata has been disabled by the server operator")
	}
	// Only the use is recorded (last use, idle expiry), and only while the
	// client still has the fingerprint it was found by: a client its owner
	// changed (RFC 7592 PUT), deleted or let expire since it was read is
	// ErrNotFound, and the caller registers a new one rather than hand
	// out a client whose metadata is no longer what was asked for.
	if err := h.Store.TouchClientIf(ctx, c.ID, c.Fingerprint, now, h.Policy.ClientIdleLifetime); err != nil {
		return clientInfo{}, err
	}
	c.ExpiresAt = h.idleExpiry(now)
	reqlog.Set(ctx, "client_id", c.ID)
	h.log().InfoContext(ctx, "client re-registered", "event", "client_registered", "client_id", c.ID, "shared", true)
	return h.info(c, "", ""), nil
}

// read implements RFC 7592 §2.1.
func (h *Handler) read(w http.ResponseWriter, r *http.Request) {
	c, rat, err := h.authenticate(r)
	if err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	oauth.NoStore(w)
	oauth.WriteJSON(w, http.StatusOK, h.info(c, "", rat))
}

// update implements RFC 7592 §2.2: the request replaces the metadata; an
// omitted field is deleted (or takes its default).
func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	info, err := h.doUpdate(w, r)
	if err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	oauth.NoStore(w)
	oauth.WriteJSON(w, http.StatusOK, info)
}

func (h *Handler) doUpdate(w http.ResponseWriter, r *http.Request) (clientInfo, error) {
	c, rat, err := h.authenticate(r)
	if err != nil {
		return clientInfo{}, err
	}
	body, err := readJSONBody(w, r, h.Policy.maxBodyBytes())
	if err != nil {
		return clientInfo{}, err
	}
	req, oerr := decodeMetadata(body)
	if oerr != nil {
		return clientInfo{}, oerr
	}
	if req.ClientID != c.ID {
		return clientInfo{}, oauth.InvalidRequest("client_id in the request body must be the client's current client_id")
	}
	// The client may echo its secret but never choose one (RFC 7592 §2.2).
	if req.HasSecret && !oauth.VerifySecret(c.SecretHash, req.ClientSecret) {
		return clientInfo{}, oauth.InvalidRequest("client_secret does not match the client's current secret")
	}
	md, oerr := h.Policy.validateWith(h.Policy.grants(h.Grants), req.ClientMetadata)
	if oerr != nil {
		return clientInfo{}, oerr
	}
	md.Scope = h.ScopePolicy.RegisteredScope(md.Scope)

	ctx, now := r.Context(), h.now()
	next := c
	next.Metadata = md
	next.Fingerprint = "" // a managed registration is never shared
	next.UpdatedAt = now
	next.ExpiresAt = h.idleExpiry(now)
	var secret string
	switch {
	case md.TokenEndpointAuthMethod == AuthNone:
		next.SecretHash, next.SecretExpiresAt = "", nil
	case c.SecretHash == "" || (c.SecretExpiresAt != nil && !now.Before(*c.SecretExpiresAt)):
		// Newly confidential, or renewing an expired secret.
		secret = h.issueSecret(&next, now)
	}
	if h.Policy.RotateRegistrationToken {
		rat = oauth.NewToken(oauth.PrefixRegistrationToken)
		next.RegistrationTokenHash = oauth.Digest(rat)
	}
	// Conditional on the token this request authenticated with: of
	// concurrent updates (and rotations) with one token, one wins.
	update := h.Store.UpdateClientIf
	if fingerprint(c.Metadata, "") != fingerprint(md, "") {
		// Users approved the metadata they were shown; other parties may
		// share this client (see the package documentation). Forgetting
		// their consents is part of the update, in one transaction: new
		// redirect URIs never take effect under the old consents, and a
		// failed attempt leaves the change to the client's retry.
		update = h.Store.UpdateClientIfForgetConsents
	}
	if err := update(ctx, next, c.RegistrationTokenHash); err != nil {
		if errors.Is(err, store.ErrNotFound) { // deleted or re-keyed meanwhile
			return clientInfo{}, errInvalidRAT()
		}
		return clientInfo{}, err
	}
	h.log().InfoContext(ctx, "client updated", "event", "client_updated", "client_id", c.ID,
		"secret_issued", secret != "", "registration_token_rotated", h.Policy.RotateRegistrationToken)
	return h.info(next, secret, rat), nil
}

// delete implements RFC 7592 §2.3; the store revokes everything issued to
// the client with it.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	c, _, err := h.authenticate(r)
	if err == nil {
		err = h.Store.DeleteClient(r.Context(), c.ID)
		if errors.Is(err, store.ErrNotFound) {
			err = errInvalidRAT()
		}
	}
	if err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	h.log().InfoContext(r.Context(), "client deleted", "event", "client_deleted", "client_id", c.ID)
	oauth.NoStore(w)
	w.WriteHeader(http.StatusNoContent)
}

// dummyRATDigest is compared against when there is no registration token
// to compare with, so that an unknown client_id costs the same as a wrong
// token.
var dummyRATDigest = oauth.Digest("authd-dummy-registration-access-token")

// maxClientIDLen bounds what is looked up: longer ids cannot exist.
const maxClientIDLen = 255

// authenticate checks the registration access token for the client named
// in the path (RFC 7592 §2). A missing or wrong token, an unknown client
// and a client that cannot be managed (configured, metadata-document or
// shared clients) all get the same 401, after the same work, so the answer
// does not reveal which client ids exist.
func (h *Handler) authenticate(r *http.Request) (store.Client, string, error) {
	id := chi.URLParam(r, "client_id")
	token, _ := bearerToken(r)
	if len(id) > maxClientIDLen {
		id = "" // cannot exist; not worth a budget of its own
	}
	// Its own per-client budget: guessing this token must not throttle
	// the client at /token.
	att, err := h.Throttle.CheckManagement(r, id, token != "")
	if err != nil {
		return store.Client{}, "", err
	}
	c, err := h.checkRAT(r, id, token)
	switch {
	case err == nil:
		att.Done(clientauth.Succeeded)
	case oauth.AsError(err).Status == http.StatusUnauthorized:
		att.Done(clientauth.Failed)
	default: // the store failed
		att.Done(clientauth.NoVerdict)
	}
	return c, token, err
}

// checkRAT is authenticate's comparison, the same work for every client id.
func (h *Handler) checkRAT(r *http.Request, id, token string) (store.Client, error) {
	var c store.Client
	found := false
	if id != "" {
		var err error
		c, err = h.Store.GetClient(r.Context(), id, h.now())
		switch {
		case err == nil:
			found = c.Source == store.SourceDynamic && c.RegistrationTokenHash != ""
		case !errors.Is(err, store.ErrNotFound):
			return store.Client{}, err
		}
	}
	want := dummyRATDigest
	if found {
		want = c.RegistrationTokenHash
	}
	match := subtle.ConstantTimeCompare([]byte(oauth.Digest(token)), []byte(want)) == 1
	if !found || !match || token == "" {
		return store.Client{}, errInvalidRAT()
	}
	reqlog.Set(r.Context(), "client_id", c.ID)
	return c, nil
}

func errInvalidRAT() *oauth.Error {
	return oauth.InvalidToken("the registration access token is missing or invalid, or the client does not exist").
		WithHeader("WWW-Authenticate", `Bearer error="invalid_token"`)
}

// checkInitialAccessToken enforces RFC 7591 §3 when the policy sets an
// initial access token.
func (h *Handler) checkInitialAccessToken(r *http.Request) error {
	want := h.Policy.InitialAccessToken
	if want == "" {
		return nil
	}
	token, _ := bearerToken(r)
	// Comparing digests keeps the comparison constant-time in the length too.
	if token == "" || !oauth.ConstantTimeEqual(oauth.Digest(token), oauth.Digest(want)) {
		return oauth.InvalidToken("a valid initial access token is required to register").
			WithHeader("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	return nil
}

// bearerToken returns the RFC 6750 §2.1 Bearer credential, if any.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// readJSONBody reads a JSON request body of at most limit bytes.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, oauth.InvalidRequest("the request body must be application/json")
	}
	if err := oauth.CheckCharset(params); err != nil {
		return nil, err // RFC 8259 §8.1: JSON between systems is UTF-8
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			e := oauth.InvalidRequest("the request body is larger than %d bytes", limit)
			e.Status = http.StatusRequestEntityTooLarge
			return nil, e
		}
		return nil, oauth.InvalidRequest("the request body could not be read").WithCause(err)
	}
	return body, nil
}

// issueSecret gives a confidential client a new secret and returns it.
func (h *Handler) issueSecret(c *store.Client, now time.Time) string {
	if c.Metadata.TokenEndpointAuthMethod == AuthNone {
		return ""
	}
	secret := oauth.NewToken(oauth.PrefixClientSecret)
	c.SecretHash = oauth.HashSecret(secret)
	c.SecretExpiresAt = nil
	if h.Policy.SecretLifetime > 0 {
		exp := now.Add(h.Policy.SecretLifetime)
		c.SecretExpiresAt = &exp
	}
	return secret
}

func (h *Handler) idleExpiry(now time.Time) *time.Time {
	if h.Policy.ClientIdleLifetime <= 0 {
		return nil
	}
	exp := now.Add(h.Policy.ClientIdleLifetime)
	return &exp
}

// info builds the client information response. secret and rat are the
// clear-text values to return, when there are any to return.
func (h *Handler) info(c store.Client, secret, rat string) clientInfo {
	info := clientInfo{
		ClientID:         c.ID,
		ClientSecret:     secret,
		ClientIDIssuedAt: c.CreatedAt.Unix(),
		ClientMetadata:   c.Metadata,
	}
	if c.Metadata.TokenEndpointAuthMethod != AuthNone {
		var exp int64
		if c.SecretExpiresAt != nil {
			exp = c.SecretExpiresAt.Unix()
		}
		info.ClientSecretExpiresAt = &exp
	}
	if rat != "" {
		info.RegistrationAccessToken = rat
		info.RegistrationClientURI = strings.TrimSuffix(h.Issuer, "/") + "/register/" + url.PathEscape(c.ID)
	}
	return info
}

// fingerprint identifies "the same registration from the same place":
// the normalised metadata (list order ignored) and the source network.
func fingerprint(m store.ClientMetadata, source string) string {
	for _, l := range []*[]string{&m.RedirectURIs, &m.GrantTypes, &m.ResponseTypes, &m.Contacts} {
		*l = slices.Sorted(slices.Values(*l))
	}
	b, _ := json.Marshal(m) // cannot fail: strings and string slices only
	return oauth.Digest("authd-registration-v1\x00" + source + "\x00" + string(b))
}

// sourceNetwork is the registering client's network: its IPv4 /24 or IPv6
// /64, so that a NATed fleet re-registering from neighbouring addresses is
// recognised.
func sourceNetwork(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return ratelimit.Network(a, 24, 64).String()
}

// distinctNetwork reports whether r's source address identifies the
// client's own network, as sharing needs: not a trusted proxy (which
// stands for all its clients), and, when no trusted proxies are
// configured, a public address (a private or loopback peer is most likely
// a reverse proxy nobody told authd about).
func (h *Handler) distinctNetwork(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range h.TrustedProxies {
		if p.Contains(a) {
			return false
		}
	}
	if len(h.TrustedProxies) > 0 {
		return true
	}
	return a.IsGlobalUnicast() && !a.IsPrivate() && !sharedAddressSpace.Contains(a)
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

// cors lets browser-based clients call the registration endpoints.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate")
		next.ServeHTTP(w, r)
	})
}

func preflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Methods", "POST, GET, PUT, DELETE")
	w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	w.Header().Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}
