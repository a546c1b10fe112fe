package upstream

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// oidcConnector signs users in at an OpenID Connect provider (types google
// and oidc): discovery, authorization code with PKCE and nonce, and an ID
// token verified by go-oidc (signature against the issuer's JWKS, iss,
// aud, exp) plus nonce and azp checked here. Identity comes from the ID
// token's claims only.
type oidcConnector struct {
	cfg Config
	hc  *http.Client
	log *slog.Logger

	mu       sync.Mutex // guards the fields below
	disc     *discovered
	inflight *discoveryCall
}

// discoveryCall is one discovery attempt that concurrent callers share.
type discoveryCall struct {
	done chan struct{}
	d    *discovered
	err  error
}

type discovered struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	provider *oidc.Provider
}

func newOIDC(ctx context.Context, c Config, hc *http.Client, log *slog.Logger) *oidcConnector {
	conn := &oidcConnector{cfg: c, hc: hc, log: log}
	if _, err := conn.discover(ctx); err != nil {
		log.Warn("upstream discovery failed; will retry on first use", "issuer", c.OIDC.Issuer, "err", err)
	}
	return conn
}

func (c *oidcConnector) ID() string          { return c.cfg.ID }
func (c *oidcConnector) Type() string        { return c.cfg.Type }
func (c *oidcConnector) DisplayName() string { return c.cfg.Name }

// Prepare implements Preparer.
func (c *oidcConnector) Prepare(ctx context.Context) error {
	_, err := c.discover(ctx)
	return err
}

// discover fetches the discovery document until it succeeds once. While
// an attempt is in flight, other callers wait for its outcome rather than
// start their own, so an unreachable issuer sees one request at a time.
func (c *oidcConnector) discover(ctx context.Context) (*discovered, error) {
	c.mu.Lock()
	if c.disc != nil {
		d := c.disc
		c.mu.Unlock()
		return d, nil
	}
	call := c.inflight
	if call == nil {
		call = &discoveryCall{done: make(chan struct{})}
		c.inflight = call
		// The attempt outlives a caller that gives up, for the others;
		// fetchDiscovery bounds it with callTimeout.
		go func(ctx context.Context) {
			d, err := c.fetchDiscovery(ctx)
			c.mu.Lock()
			if err == nil {
				c.disc = d
				c.log.Debug("upstream discovery done", "issuer", c.cfg.OIDC.Issuer)
			}
			c.inflight = nil
			c.mu.Unlock()
			call.d, call.err = d, err
			close(call.done)
		}(context.WithoutCancel(ctx))
	}
	c.mu.Unlock()

	select {
	case <-call.done:
		if call.err != nil {
			return nil, c.unavailable(call.err)
		}
		return call.d, nil
	case <-ctx.Done():
		return nil, c.unavailable(ctx.Err())
	}
}

func (c *oidcConnector) unavailable(cause error) *Error {
	return &Error{Code: CodeUnavailable, Message: c.cfg.Name + " could not be reached. Please try again in a moment.", Err: cause}
}

func (c *oidcConnector) fetchDiscovery(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// The provider keeps this client for its JWKS fetches; go-oidc drops
	// the context's cancellation for those, the client's timeout remains.
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, c.hc), c.cfg.OIDC.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", c.cfg.OIDC.Issuer, err)
	}
	var meta struct {
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		JWKSURI     string   `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", c.cfg.OIDC.Issuer, err)
	}
	ep := p.Endpoint()
	for name, u := range map[string]string{"authorization_endpoint": ep.AuthURL, "token_endpoint": ep.TokenURL, "jwks_uri": meta.JWKSURI} {
		if u == "" {
			return nil, fmt.Errorf("discovery at %s: no %s", c.cfg.OIDC.Issuer, name)
		}
		if err := checkEndpointURL(stripQuery(u)); err != nil {
			return nil, fmt.Errorf("discovery at %s: %s: %w", c.cfg.OIDC.Issuer, name, err)
		}
	}
	// OpenID Connect Discovery §3: client_secret_basic is the default.
	// A fixed style keeps x/oauth2 from retrying a refused code the other
	// way.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if c.cfg.ClientSecret == "" || (len(meta.AuthMethods) > 0 && !slices.Contains(meta.AuthMethods, "client_secret_basic") && slices.Contains(meta.AuthMethods, "client_secret_post")) {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &discovered{
		oauth: oauth2.Config{
			ClientID:     c.cfg.ClientID,
			ClientSecret: c.cfg.ClientSecret,
			RedirectURL:  c.cfg.RedirectURL,
			Scopes:       c.cfg.Scopes,
			Endpoint:     ep,
		},
		verifier: p.Verifier(&oidc.Config{ClientID: c.cfg.ClientID, Now: c.cfg.Now}),
		provider: p,
	}, nil
}

// AuthCodeURL returns "" when the issuer's discovery document cannot be
// fetched; callers avoid that by calling Prepare first.
func (c *oidcConnector) AuthCodeURL(state string, o LoginOptions) string {
	d, err := c.discover(context.Background())
	if err != nil {
		c.log.Warn("upstream not ready", "err", err)
		return ""
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(o.Verifier)}
	if len(o.Scopes) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("scope", strings.Join(withScopes(d.oauth.Scopes, o.Scopes), " ")))
	}
	if c.cfg.Type == TypeGoogle && c.cfg.StoreTokens {
		// Google issues a refresh token only for offline access, and
		// with include_granted_scopes the new grant carries the scopes
		// granted before (incremental authorization).
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("include_granted_scopes", "true"))
	}
	if o.Nonce != "" {
		opts = append(opts, oidc.Nonce(o.Nonce))
	}
	if o.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", o.LoginHint))
	}
	if o.ForceLogin {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", c.forceLoginPrompt()))
	}
	if o.MaxAge != nil {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.Itoa(*o.MaxAge)))
	}
	if c.cfg.Type == TypeGoogle && c.cfg.OIDC.HostedDomain != "" {
		// Only narrows Google's account chooser; the hd claim is what
		// HandleCallback checks.
		opts = append(opts, oauth2.SetAuthURLParam("hd", c.cfg.OIDC.HostedDomain))
	}
	return d.oauth.AuthCodeURL(state, opts...)
}

// forceLoginPrompt is the prompt value that asks for a new sign-in:
// "login" (OpenID Connect Core §3.1.2.1), except at Google, which accepts
// only none, consent and select_account; there the account chooser is the
// most it offers, and max_age (with auth_time checked) is what enforces
// freshness.
func (c *oidcConnector) forceLoginPrompt() string {
	if c.cfg.Type == TypeGoogle {
		return "select_account"
	}
	return "login"
}

func (c *oidcConnector) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

func (c *oidcConnector) HandleCallback(ctx context.Context, r *http.Request, o LoginOptions) (Identity, error) {
	code, err := callbackCode(r, c.cfg.Name)
	if err != nil {
		return Identity{}, err
	}
	if o.Verifier == "" || o.Nonce == "" {
		return Identity{}, errors.New("upstream: HandleCallback needs the PKCE verifier and the nonce")
	}
	ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
	defer cancel()
	d, err := c.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	verifyFailed := func(cause error) error {
		return &Error{Code: CodeUpstreamError, Message: "The answer from " + c.cfg.Name + " could not be verified. Please try again.", Err: cause}
	}
	// RFC 9207: a provider that names itself in the response must be the
	// one this callback belongs to (mix-up defence).
	if iss := r.URL.Query().Get("iss"); iss != "" && iss != c.cfg.OIDC.Issuer {
		return Identity{}, verifyFailed(fmt.Errorf("authorization response from issuer %q", clip(iss)))
	}

	tok, err := d.oauth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, c.hc), code, oauth2.VerifierOption(o.Verifier))
	if err != nil {
		return Identity{}, apiError(c.cfg.Name, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, verifyFailed(errors.New("token response without id_token"))
	}
	idt, err := d.verifier.Verify(oidc.ClientContext(ctx, c.hc), raw)
	if err != nil {
		return Identity{}, verifyFailed(err)
	}
	// go-oidc leaves the nonce to the caller (OpenID Connect Core
	// §3.1.3.7 step 11).
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(o.Nonce)) != 1 {
		return Identity{}, verifyFailed(errors.New("id_token nonce does not match"))
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, verifyFailed(err)
	}
	// Core §3.1.3.7 steps 4-5: with several audiences azp must be us, and
	// if present it must be us.
	azp, hasAzp := claims["azp"]
	if (len(idt.Audience) > 1 || hasAzp) && azp != c.cfg.ClientID {
		return Identity{}, verifyFailed(fmt.Errorf("id_token azp %v is not our client id", azp))
	}
	if idt.Subject == "" {
		return Identity{}, verifyFailed(errors.New("id_token without sub"))
	}
	id := c.identity(idt.Subject, claims)
	id.Grant = grantFrom(tok, d.oauth.Scopes, c.now())
	id.AuthTime = authTime(claims["auth_time"])
	if err := c.checkMaxAge(id.AuthTime, o.MaxAge); err != nil {
		return Identity{}, err
	}

	if want := c.cfg.OIDC.HostedDomain; c.cfg.Type == TypeGoogle && want != "" && !strings.EqualFold(id.Domain, want) {
		return Identity{}, &Error{
			Code:    CodeAccessDenied,
			Message: "Please sign in with your " + want + " Google account.",
			Err:     fmt.Errorf("hd claim %q, want %q", id.Domain, want),
		}
	}
	return id, nil
}

// maxAgeSkew is how far the provider's clock may be ahead of ours when
// auth_time is checked against max_age.
const maxAgeSkew = time.Minute

// checkMaxAge enforces max_age on the answer (OpenID Connect Core
// §3.1.2.1, §3.1.3.7 step 13): the ID token must carry auth_time, no
// older than max_age allows. A provider that ignored max_age and signed
// the user in from an old session is refused, never taken at its word.
func (c *oidcConnector) checkMaxAge(authTime time.Time, maxAge *int) error {
	if maxAge == nil {
		return nil
	}
	if authTime.IsZero() {
		return &Error{
			Code:    CodeUpstreamError,
			Message: c.cfg.Name + " did not say when you last signed in, and this application asked for a recent sign-in.",
			Err:     fmt.Errorf("max_age=%d sent, id_token without auth_time", *maxAge),
		}
	}
	if age := c.now().Sub(authTime); age > time.Duration(*maxAge)*time.Second+maxAgeSkew {
		return &Error{
			Code:    CodeUpstreamError,
			Message: "This application asked for a recent sign-in, but " + c.cfg.Name + " signed you in from an earlier session. Sign out at " + c.cfg.Name + " and try again.",
			Err:     fmt.Errorf("max_age=%d sent, id_token auth_time %s is %s old", *maxAge, authTime.UTC().Format(time.RFC3339), age.Round(time.Second)),
		}
	}
	return nil
}

// authTime reads the auth_time claim (seconds since the epoch); zero when
// absent or not a positive number.
func authTime(v any) time.Time {
	f, ok := v.(float64)
	if !ok || f <= 0 || f > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}

// identity maps ID token claims. The email counts as verified only when it
// comes from the standard email claim with email_verified true: a custom
// claim (e.g. upn) has no verification status, so it is not an email the
// allowlist can trust. Unverified addresses are not recorded at all.
func (c *oidcConnector) identity(sub string, claims map[string]any) Identity {
	id := Identity{Provider: c.cfg.ID, Subject: sub}
	str := func(name string) string {
		s, _ := claims[name].(string)
		return s
	}
	emailClaim, nameClaim, userClaim, groupsClaim := "email", "name", "", ""
	if c.cfg.Type == TypeOIDC {
		emailClaim, nameClaim = c.cfg.OIDC.ClaimEmail, c.cfg.OIDC.ClaimName
		userClaim, groupsClaim = c.cfg.OIDC.ClaimUsername, c.cfg.OIDC.ClaimGroups
	}
	if email := str(emailClaim); email != "" && emailClaim == "email" && isTrue(claims["email_verified"]) {
		id.Email, id.EmailVerified = email, true
	}
	id.Name = str(nameClaim)
	id.Domain = str("hd")
	if userClaim != "" {
		id.Login = str(userClaim)
	} else {
		// Google has no user name; the verified address is its handle.
		id.Login = id.Email
	}
	if groupsClaim != "" {
		id.Groups = stringList(claims[groupsClaim])
	}
	return id
}

// isTrue accepts the JSON boolean true and, for providers that send it as
// a string (older Google tokens, some Cognito pools), "true".
func isTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// stringList reads a claim that may be an array of strings or one string.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Refresh implements Refresher (refresh tokens need offline_access at
// most providers, access_type=offline at Google).
func (c *oidcConnector) Refresh(ctx context.Context, refreshToken string) (*Grant, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	return refresh(ctx, d.oauth, c.hc, c.cfg.Name, refreshToken, c.cfg.now)
}

// Memberships implements MembershipReader through the UserInfo endpoint
// (OpenID Connect Core §5.3): groups from the configured groups claim
// (type oidc), hd (type google). A provider that puts groups only into
// the ID token and not into UserInfo cannot be re-checked: an answer
// without the groups claim is an error, not "member of nothing", so that
// it never locks everybody out.
func (c *oidcConnector) Memberships(ctx context.Context, at string) (Memberships, error) {
	ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
	defer cancel()
	d, err := c.discover(ctx)
	if err != nil {
		return Memberships{}, err
	}
	if d.provider.UserInfoEndpoint() == "" {
		return Memberships{}, &Error{Code: CodeUpstreamError, Message: c.cfg.Name + " has no UserInfo endpoint.", Err: errors.New("discovery without userinfo_endpoint")}
	}
	ui, err := d.provider.UserInfo(oidc.ClientContext(ctx, c.hc), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, TokenType: "Bearer"}))
	if err != nil {
		return Memberships{}, apiError(c.cfg.Name, err)
	}
	var claims map[string]any
	if err := ui.Claims(&claims); err != nil {
		return Memberships{}, apiError(c.cfg.Name, err)
	}
	m := Memberships{Subject: ui.Subject}
	if c.cfg.Type == TypeGoogle {
		m.Domain, _ = claims["hd"].(string)
	}
	if c.cfg.Type == TypeOIDC {
		v, ok := claims[c.cfg.OIDC.ClaimGroups]
		if !ok {
			return Memberships{}, &Error{Code: CodeUpstreamError, Message: c.cfg.Name + " did not send groups.",
				Err: fmt.Errorf("userinfo without the %q claim", c.cfg.OIDC.ClaimGroups)}
		}
		m.Groups = stringList(v)
	}
	return m, nil
}
