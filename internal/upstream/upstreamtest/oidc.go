package upstreamtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/authd/authd/internal/upstream"
)

// OIDCUser is an account at the fake OpenID Provider.
type OIDCUser struct {
	Subject           string
	Email             string
	EmailVerified     bool
	Name              string
	PreferredUsername string
	HostedDomain      string   // Google's hd claim; omitted when empty
	Groups            []string // groups claim (array); omitted when nil
	// Claims are added to the ID token last, overriding the above; a nil
	// value removes the claim. E.g. {"groups": "admins"} sends groups as a
	// single string, {"email_verified": nil} drops it.
	Claims map[string]any
}

// Faults make the fake misbehave, one knob per check a relying party must
// make. They apply to every response until changed.
type Faults struct {
	WrongNonce    bool // ID token nonce differs from the request's
	WrongAudience bool // aud is another client
	ExtraAudience bool // aud also names another client, without azp
	WrongIssuer   bool // iss is another issuer
	Expired       bool // exp an hour ago
	BadSignature  bool // signed by a key not in the JWKS (same kid)
	NoIDToken     bool // token response without id_token
	NoAuthTime    bool // ID token without auth_time
	// MixUpIss adds iss=<another issuer> to the authorization response.
	MixUpIss bool
	// TokenStatus, when set, makes the token endpoint answer this status
	// with {"error":"server_error"} (or invalid_grant for 4xx).
	TokenStatus int
	// DiscoveryStatus, when set, makes discovery answer this status.
	DiscoveryStatus int
}

// OIDC is a fake OpenID Provider: discovery, JWKS, an authorize endpoint
// that approves at once for the selected user, and a token endpoint that
// checks client authentication (basic or post), code, redirect_uri and
// PKCE, and issues RS256 ID tokens. Configure it as Google with
// Config(id, "google"): the connector then uses the fake as its issuer.
//
// The fake does not model its own sessions: ID tokens carry auth_time =
// the time of the authorize request, or what SetAuthTime chose (a session
// the provider kept, whatever prompt and max_age asked for). The authorize
// requests, prompt and max_age included, are in AuthorizeRequests.
type OIDC struct {
	// ClientID and ClientSecret are what the token endpoint accepts.
	ClientID, ClientSecret string
	// Now is the fake's clock (iat, exp, auth_time); nil: time.Now. Set
	// it before the first request.
	Now func() time.Time

	srv *httptest.Server
	key *rsa.PrivateKey
	kid string

	mu       sync.Mutex
	users    []OIDCUser
	next     string
	decline  bool
	faults   Faults
	authTime time.Time
	codes    map[string]oidcGrant
	authReqs []url.Values
	// Access and refresh tokens, UserInfo, revocation: oidc_tokens.go.
	tok oidcTokens
}

type oidcGrant struct {
	sub, clientID, redirectURI, challenge, nonce, scope string
	authTime                                            time.Time
	offline                                             bool // access_type=offline (Google)
}

// RSA key generation takes long under the race detector, so all fakes of
// a test binary share two keys; each fake has its own issuer and kid.
var (
	signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	foreignKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
)

// NewOIDC starts a fake OpenID Provider, closed when the test ends.
func NewOIDC(t testing.TB) *OIDC {
	t.Helper()
	key, err := signingKey()
	if err != nil {
		t.Fatal(err)
	}
	o := &OIDC{
		ClientID:     "oidc-client-id",
		ClientSecret: "oidc-client-secret",
		key:          key,
		kid:          "k-" + randomHex(4),
		codes:        map[string]oidcGrant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", o.discovery)
	mux.HandleFunc("GET /jwks", o.jwks)
	mux.HandleFunc("GET /authorize", o.authorize)
	mux.HandleFunc("POST /token", o.token)
	mux.HandleFunc("GET /userinfo", o.userinfo)
	o.srv = httptest.NewTLSServer(mux)
	t.Cleanup(o.srv.Close)
	return o
}

// Issuer is the issuer URL (OIDCConfig.Issuer).
func (o *OIDC) Issuer() string { return o.srv.URL }

// Client trusts the fake's TLS certificate.
func (o *OIDC) Client() *http.Client { return o.srv.Client() }

// Config is a connector configuration pointing at the fake; typ is
// "google" or "oidc". The caller sets RedirectURL.
func (o *OIDC) Config(id, typ string) upstream.Config {
	return upstream.Config{
		ID: id, Type: typ,
		ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		OIDC: upstream.OIDCConfig{Issuer: o.Issuer()},
	}
}

// AddUser adds (or replaces, by subject) an account.
func (o *OIDC) AddUser(u OIDCUser) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.users = slices.DeleteFunc(o.users, func(x OIDCUser) bool { return x.Subject == u.Subject })
	o.users = append(o.users, u)
}

// SetNextUser selects (by subject or email) who authorize signs in when
// login_hint names nobody. With one user only, that user is the default.
func (o *OIDC) SetNextUser(subOrEmail string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next = subOrEmail
}

// SetDecline makes authorize answer error=access_denied.
func (o *OIDC) SetDecline(decline bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decline = decline
}

// SetFaults replaces the active faults (Faults{} for none).
func (o *OIDC) SetFaults(f Faults) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.faults = f
}

// SetAuthTime makes ID tokens report t as auth_time, as a provider does
// that signs the user in from a session begun at t. Zero (the default):
// the time of the authorize request, a fresh sign-in.
func (o *OIDC) SetAuthTime(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.authTime = t
}

func (o *OIDC) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// AuthorizeRequests returns the query of every authorize request so far.
func (o *OIDC) AuthorizeRequests() []url.Values {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.authReqs)
}

func (o *OIDC) find(hint string) *OIDCUser {
	for i, u := range o.users {
		if hint != "" && (u.Subject == hint || strings.EqualFold(u.Email, hint)) {
			return &o.users[i]
		}
	}
	return nil
}

func (o *OIDC) discovery(w http.ResponseWriter, _ *http.Request) {
	o.mu.Lock()
	st := o.faults.DiscoveryStatus
	o.mu.Unlock()
	if st != 0 {
		http.Error(w, http.StatusText(st), st)
		return
	}
	iss := o.Issuer()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"jwks_uri":                              iss + "/jwks",
		"userinfo_endpoint":                     iss + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nonce", "auth_time", "email", "email_verified", "name", "preferred_username", "groups", "hd"},
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
	})
}

// LogoutToken is what LogoutToken signs: a logout token of OpenID Connect
// Back-Channel Logout 1.0 §2.4 (typ logout+jwt) for Subject and/or SID,
// with a fresh jti, iat now and exp two minutes later, addressed to the
// fake's ClientID. Claims overrides members (nil deletes one: "events",
// "jti"…); BadSignature signs with a key not in the JWKS (same kid); Type
// replaces the JOSE typ.
type LogoutToken struct {
	Subject, SID string
	Claims       map[string]any
	BadSignature bool
	Type         string
}

// SignLogoutToken returns the compact JWS of l, as the provider would POST
// it to a relying party's back-channel logout URI.
func (o *OIDC) SignLogoutToken(t testing.TB, l LogoutToken) string {
	t.Helper()
	now := o.now()
	claims := map[string]any{
		"iss":    o.Issuer(),
		"aud":    o.ClientID,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    randomHex(16),
		"events": map[string]any{upstream.LogoutEvent: map[string]any{}},
	}
	if l.Subject != "" {
		claims["sub"] = l.Subject
	}
	if l.SID != "" {
		claims["sid"] = l.SID
	}
	for k, v := range l.Claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	key := o.key
	if l.BadSignature {
		other, err := foreignKey()
		if err != nil {
			t.Fatal(err)
		}
		key = other
	}
	typ := jose.ContentType("logout+jwt")
	if l.Type != "" {
		typ = jose.ContentType(l.Type)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType(typ).WithHeader(jose.HeaderKey("kid"), o.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (o *OIDC) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &o.key.PublicKey, KeyID: o.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

func (o *OIDC) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.authReqs = append(o.authReqs, q)

	if q.Get("client_id") != o.ClientID {
		http.Error(w, "fake oidc: unknown client_id", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme == "" || redirect.Host == "" {
		http.Error(w, "fake oidc: redirect_uri is not an absolute URL", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	fail := func(code, desc string) {
		back.Set("error", code)
		back.Set("error_description", desc)
		redirect.RawQuery = back.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only code")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "openid scope required")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE S256 required")
		return
	case o.decline:
		fail("access_denied", "The user denied the request")
		return
	}
	u := o.find(q.Get("login_hint"))
	if u == nil {
		u = o.find(o.next)
	}
	if u == nil && len(o.users) == 1 {
		u = &o.users[0]
	}
	if u == nil {
		http.Error(w, "fake oidc: no user selected (AddUser, SetNextUser or login_hint=)", http.StatusBadRequest)
		return
	}
	authTime := o.authTime
	if authTime.IsZero() {
		authTime = o.now()
	}
	code := randomHex(16)
	o.codes[code] = oidcGrant{
		sub: u.Subject, clientID: o.ClientID, redirectURI: q.Get("redirect_uri"),
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), scope: q.Get("scope"),
		authTime: authTime, offline: q.Get("access_type") == "offline",
	}
	back.Set("code", code)
	if o.faults.MixUpIss {
		back.Set("iss", "https://attacker.example")
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (o *OIDC) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	oauthErr := func(status int, code string) {
		writeJSON(w, status, map[string]string{"error": code})
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(http.StatusBadRequest, "invalid_request")
		return
	}
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: form-urlencoded inside Basic.
		id, secret = unescape(u), unescape(p)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if st := o.faults.TokenStatus; st != 0 {
		code := "server_error"
		if st < 500 {
			code = "invalid_grant"
		}
		oauthErr(st, code)
		return
	}
	if id != o.ClientID || secret != o.ClientSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		oauthErr(http.StatusUnauthorized, "invalid_client")
		return
	}
	if f.Get("grant_type") == "refresh_token" {
		o.refreshGrant(w, f.Get("refresh_token"), id)
		return
	}
	if f.Get("grant_type") != "authorization_code" {
		oauthErr(http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	g, ok := o.codes[f.Get("code")]
	delete(o.codes, f.Get("code"))
	if !ok || g.clientID != id || f.Get("redirect_uri") != g.redirectURI || !pkceOK(f.Get("code_verifier"), g.challenge) {
		oauthErr(http.StatusBadRequest, "invalid_grant")
		return
	}
	u := o.find(g.sub)
	if u == nil {
		oauthErr(http.StatusBadRequest, "invalid_grant")
		return
	}
	resp := o.issue(u.Subject, id, g.scope, g.offline)
	if !o.faults.NoIDToken {
		idt, err := o.idToken(*u, g)
		if err != nil {
			oauthErr(http.StatusInternalServerError, "server_error")
			return
		}
		resp["id_token"] = idt
	}
	writeJSON(w, http.StatusOK, resp)
}

func (o *OIDC) idToken(u OIDCUser, g oidcGrant) (string, error) {
	now := o.now()
	f := o.faults
	claims := map[string]any{
		"iss":            o.Issuer(),
		"sub":            u.Subject,
		"aud":            g.clientID,
		"azp":            g.clientID,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"auth_time":      g.authTime.Unix(),
		"email_verified": u.EmailVerified,
	}
	if f.NoAuthTime {
		delete(claims, "auth_time")
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	for k, v := range map[string]string{"email": u.Email, "name": u.Name, "preferred_username": u.PreferredUsername, "hd": u.HostedDomain} {
		if v != "" {
			claims[k] = v
		}
	}
	if u.Groups != nil {
		claims["groups"] = u.Groups
	}
	for k, v := range u.Claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	if f.WrongNonce {
		claims["nonce"] = "not-" + g.nonce
	}
	if f.WrongAudience {
		claims["aud"], claims["azp"] = "another-client", "another-client"
	}
	if f.ExtraAudience {
		claims["aud"] = []string{g.clientID, "another-client"}
		delete(claims, "azp")
	}
	if f.WrongIssuer {
		claims["iss"] = "https://attacker.example"
	}
	if f.Expired {
		claims["iat"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	}
	key := o.key
	if f.BadSignature {
		other, err := foreignKey()
		if err != nil {
			return "", err
		}
		key = other
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), o.kid))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
