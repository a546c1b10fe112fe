package authorize

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

// Limits on free-form parameters, so a request cannot make us store or
// echo unbounded text.
const (
	maxStateLen     = 1024
	maxNonceLen     = 512
	maxLoginHintLen = 256
	maxMaxAge       = 10 * 365 * 24 * 3600
)

// singleParams are the parameters authd reads that may appear only once.
var singleParams = []string{
	"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method", "response_mode", "prompt",
	"max_age", "login_hint", "idp_hint", "nonce", "request", "request_uri",
}

// Prompt values (OpenID Connect Core §3.1.2.1) authd understands.
const (
	promptNone    = "none"
	promptLogin   = "login"
	promptConsent = "consent"
)

// target is where errors and the code go once the client and its redirect
// URI are confirmed (RFC 6749 §4.1.2.1). client is the client as read
// while serving the current request: every redirect re-checks against it
// that the URI is still registered (toClient).
type target struct {
	client      store.Client
	redirectURI string
	state       string
}

// targetOf is the target of a pending request whose client was read while
// serving the current request.
func targetOf(client store.Client, req store.AuthRequest) target {
	return target{client: client, redirectURI: req.RedirectURI, state: req.State}
}

// authorize serves GET and POST /authorize (OAuth 2.1 §4.1.1).
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := h.now()

	q, status, msg := readAuthorizeParams(w, r)
	if msg != "" {
		h.errorPage(w, r, status, "Invalid authorization request", msg, nil)
		return
	}

	// Until both the client and the redirect URI are known to belong
	// together, nothing may be redirected: an error page, or the request
	// becomes an open redirector (RFC 6749 §4.1.2.1, RFC 9700 §4.11.2).
	for _, k := range []string{"client_id", "redirect_uri"} {
		if oauth.CheckParam(k, q[k]...) != nil {
			h.errorPage(w, r, http.StatusBadRequest, "Invalid authorization request",
				"The application's "+k+" is not valid text. You were not redirected.", nil)
			return
		}
	}
	client, ok := h.authorizeClient(w, r, q, now)
	if !ok {
		return
	}
	t, ok := h.authorizeRedirectURI(w, r, q, client)
	if !ok {
		return
	}
	// Every other parameter must be text too (state, nonce and login_hint
	// are stored): invalid_request naming it, redirected.
	if oerr := oauth.CheckParams(q); oerr != nil {
		h.redirectError(w, r, t, oerr)
		return
	}

	p, oerr := h.validate(q, client)
	if oerr != nil {
		h.redirectError(w, r, t, oerr)
		return
	}
	p.RedirectURI = t.redirectURI
	p.RedirectURIProvided = q.Get("redirect_uri") != ""
	p.ClientID = client.ID
	p.CreatedAt = now
	p.ExpiresAt = now.Add(h.requestLifetime())

	sess, _, err := h.currentSession(ctx, r, now)
	if err != nil {
		h.redirectError(w, r, t, oauth.AsError(err))
		return
	}
	signedIn := sess != nil && !slices.Contains(p.Prompt, promptLogin) && fresh(sess.AuthTime, p.MaxAge, now)
	idpHint := q.Get("idp_hint")
	if signedIn && h.UpstreamGrants != nil {
		// An upstream that keeps tokens must hold a usable grant with the
		// upstream scopes these resources need; otherwise the user signs
		// in there again (incremental authorization), not silently here.
		provider := sess.User.Provider
		covered, err := h.UpstreamGrants.Covers(ctx, sess.UserID, provider, h.upstreamScopes(provider, p.Resources))
		if err != nil {
			h.redirectError(w, r, t, oauth.AsError(err))
			return
		}
		if !covered {
			signedIn, idpHint = false, provider
		}
	}

	if !signedIn {
		if slices.Contains(p.Prompt, promptNone) {
			h.redirectError(w, r, t, oauth.LoginRequired("the user is not signed in"))
			return
		}
		h.startLogin(w, r, t, p, idpHint)
		return
	}

	// Single sign-on: the browser's session stands for the user.
	p.UserID = sess.UserID
	authTime := sess.AuthTime
	p.AuthTime = &authTime
	reqlog.Set(ctx, "user_id", p.UserID)
	need, err := h.needsConsent(ctx, client, p)
	if err != nil {
		h.redirectError(w, r, t, oauth.AsError(err))
		return
	}
	if !need {
		h.issueCode(w, r, client, p)
		return
	}
	if slices.Contains(p.Prompt, promptNone) {
		h.redirectError(w, r, t, oauth.ConsentRequired("the user has not approved this request"))
		return
	}
	rid := oauth.NewToken(oauth.PrefixRequest)
	if err := h.storeRequest(ctx, w, rid, p); errors.Is(err, store.ErrNotFound) {
		h.clientGone(w, r, err) // deleted since it was read (another replica)
		return
	} else if err != nil {
		h.redirectError(w, r, t, oauth.AsError(err))
		return
	}
	redirect(w, r, h.path("/consent?req="+requestHandle(oauth.Digest(rid))))
}

// fresh reports whether a sign-in at authTime satisfies max_age (OpenID
// Connect Core §3.1.2.1). max_age=0 demands a new sign-in, like
// prompt=login.
func fresh(authTime time.Time, maxAge *int, now time.Time) bool {
	if maxAge == nil {
		return true
	}
	return *maxAge > 0 && now.Sub(authTime) <= time.Duration(*maxAge)*time.Second
}

// readAuthorizeParams returns the request's parameters: the query of a GET,
// the form body of a POST (OAuth 2.1 §4.1.1). A non-empty message means
// the request is unusable and gets an error page.
func readAuthorizeParams(w http.ResponseWriter, r *http.Request) (url.Values, int, string) {
	if r.Method == http.MethodGet {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, http.StatusBadRequest, "The authorization request's parameters are malformed."
		}
		return q, 0, ""
	}
	if _, params, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && oauth.CheckCharset(params) != nil {
		return nil, http.StatusUnsupportedMediaType, "The authorization request is not encoded in UTF-8."
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, "The authorization request is too large."
		}
		return nil, http.StatusBadRequest, "The authorization request's parameters are malformed."
	}
	return r.PostForm, 0, ""
}

// authorizeClient is step 1: the client must exist and be enabled.
func (h *Handler) authorizeClient(w http.ResponseWriter, r *http.Request, q url.Values, now time.Time) (store.Client, bool) {
	const title = "Unknown application"
	if len(q["client_id"]) > 1 {
		h.errorPage(w, r, http.StatusBadRequest, "Invalid authorization request", "The request names more than one client_id.", nil)
		return store.Client{}, false
	}
	id := q.Get("client_id")
	if id == "" {
		h.errorPage(w, r, http.StatusBadRequest, "Invalid authorization request", "The application's request is missing its client_id.", nil)
		return store.Client{}, false
	}
	client, err := h.Store.GetClient(r.Context(), id, now)
	if msg, ok := unusableClient(err); ok {
		h.errorPage(w, r, http.StatusBadRequest, "Application not accepted", msg, err)
		return store.Client{}, false
	}
	if errors.Is(err, store.ErrNotFound) {
		h.errorPage(w, r, http.StatusBadRequest, title,
			"The application that sent you here is not registered with this server. You were not redirected.", err)
		return store.Client{}, false
	}
	if err != nil {
		h.internalErrorPage(w, r, err)
		return store.Client{}, false
	}
	if client.Disabled {
		h.errorPage(w, r, http.StatusBadRequest, "Application disabled",
			"The application that sent you here has been disabled by the operator of this server.", nil)
		return store.Client{}, false
	}
	reqlog.Set(r.Context(), "client_id", client.ID)
	return client, true
}

// authorizeRedirectURI is step 2: redirect_uri must exactly match a
// registered one (RFC 9700 §4.1.3; loopback: any port, RFC 8252 §7.3), or
// be omitted when exactly one is registered (OAuth 2.1 §2.3.2). The
// redirect goes to the URI as requested (with its loopback port).
func (h *Handler) authorizeRedirectURI(w http.ResponseWriter, r *http.Request, q url.Values, c store.Client) (target, bool) {
	const title = "Invalid redirect address"
	registered := c.Metadata.RedirectURIs
	var uri string
	switch requested := q.Get("redirect_uri"); {
	case len(q["redirect_uri"]) > 1:
		h.errorPage(w, r, http.StatusBadRequest, title, "The request names more than one redirect_uri. You were not redirected.", nil)
		return target{}, false
	case requested != "":
		if _, ok := oauth.MatchRedirectURI(registered, requested); !ok {
			h.errorPage(w, r, http.StatusBadRequest, title,
				"The application asked to send you to an address it has not registered. For your safety you were not redirected.", nil)
			return target{}, false
		}
		uri = requested
	case len(registered) == 1:
		uri = registered[0]
	default:
		h.errorPage(w, r, http.StatusBadRequest, title,
			"The application did not say where to send you back (redirect_uri), and it has registered more than one address. You were not redirected.", nil)
		return target{}, false
	}
	t := target{client: c, redirectURI: uri, state: q.Get("state")}
	if len(q["state"]) > 1 || len(t.state) > maxStateLen || !oauth.ValidText(t.state) {
		t.state = "" // an ambiguous, oversized or non-text state is not echoed
	}
	return t, true
}

// validate checks everything after the client and redirect URI; its errors
// are redirected to the client.
func (h *Handler) validate(q url.Values, c store.Client) (store.AuthRequest, *oauth.Error) {
	var p store.AuthRequest
	// RFC 6749 §3.1: parameters MUST NOT be repeated (resource may be,
	// RFC 8707 §2); unknown ones are ignored. Empty values count as absent.
	for _, k := range singleParams {
		if len(q[k]) > 1 {
			return p, oauth.InvalidRequest("parameter %s is repeated", k)
		}
	}
	if len(q.Get("state")) > maxStateLen {
		return p, oauth.InvalidRequest("state is longer than %d characters", maxStateLen)
	}
	p.State = q.Get("state")
	if q.Get("request") != "" {
		return p, &oauth.Error{Code: "request_not_supported", Description: "request objects are not supported", Status: http.StatusBadRequest}
	}
	if q.Get("request_uri") != "" {
		return p, &oauth.Error{Code: "request_uri_not_supported", Description: "request_uri is not supported", Status: http.StatusBadRequest}
	}

	switch rt := q.Get("response_type"); rt {
	case "":
		return p, oauth.InvalidRequest("response_type is required")
	case "code":
	default:
		return p, oauth.UnsupportedResponseType("only response_type=code is supported")
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		return p, oauth.InvalidRequest("only response_mode=query is supported")
	}
	// RFC 7591 §2: omitted grant_types / response_types mean
	// authorization_code / code.
	gt, rts := c.Metadata.GrantTypes, c.Metadata.ResponseTypes
	if (len(gt) > 0 && !slices.Contains(gt, "authorization_code")) || (len(rts) > 0 && !slices.Contains(rts, "code")) {
		return p, oauth.UnauthorizedClient("the client is not registered for the authorization code grant")
	}

	// PKCE S256 is mandatory (OAuth 2.1 §4.1.1, MCP). A missing method
	// means "plain" (RFC 7636 §4.3), which is refused like an explicit one.
	p.CodeChallenge = q.Get("code_challenge")
	p.CodeChallengeMethod = q.Get("code_challenge_method")
	switch {
	case p.CodeChallenge == "":
		return p, oauth.InvalidRequest("code_challenge is required (PKCE with S256)")
	case p.CodeChallengeMethod == "":
		return p, oauth.InvalidRequest("code_challenge_method is required and must be S256 (plain is not supported)")
	case p.CodeChallengeMethod != oauth.MethodS256:
		return p, oauth.InvalidRequest("code_challenge_method must be S256")
	case !oauth.ValidChallenge(p.CodeChallenge):
		return p, oauth.InvalidRequest("code_challenge must be the 43-character base64url S256 challenge")
	}

	var resourceValues []string
	for _, v := range q["resource"] {
		if v != "" {
			resourceValues = append(resourceValues, v)
		}
	}
	resources, oerr := oauth.ParseResources(resourceValues)
	if oerr != nil {
		return p, oerr
	}
	if len(resources) == 0 {
		// Older MCP clients send no resource. Bind the code to the default
		// resource now, with the same rule as /token, so the user consents
		// to the audience the token will really have.
		switch {
		case h.DefaultResource != "":
			resources = []string{h.DefaultResource}
		case len(h.Resources) == 1:
			resources = []string{h.Resources[0].URI}
		default:
			return p, oauth.InvalidTarget("the resource parameter is required: name the protected resource (RFC 8707) the token is for")
		}
	}
	for _, res := range resources {
		if _, ok := h.resource(res); !ok && !h.AllowAnyResource {
			return p, oauth.InvalidTarget("resource %s is not served by this authorization server", res)
		}
		if c.AllowedResources != nil && !slices.Contains(c.AllowedResources, res) {
			return p, oauth.InvalidTarget("the client may not request resource %s", res)
		}
	}
	p.Resources = resources

	// offline_access, openid and (unless unknown_scopes: reject) scopes
	// the server does not know are dropped here, before consent: the user
	// approves, and the code carries, only what can be granted.
	scopes, oerr := h.scopeRule().Requested(q.Get("scope"))
	if oerr != nil {
		return p, oerr
	}
	if len(scopes) == 0 {
		// RFC 6749 §3.3: omitted scope means the pre-defined default;
		// defaults this client or resource may not have are dropped.
		for _, s := range h.DefaultScopes {
			if h.scopeAllowed(s, c, resources) == "" {
				scopes = append(scopes, s)
			}
		}
	}
	for _, s := range scopes {
		if why := h.scopeAllowed(s, c, resources); why != "" {
			return p, oauth.InvalidScope("scope %s %s", s, why)
		}
	}
	p.Scopes = scopes

	prompt := strings.Fields(q.Get("prompt"))
	for _, v := range prompt {
		if v != promptNone && v != promptLogin && v != promptConsent {
			return p, oauth.InvalidRequest("prompt value %s is not supported (none, login, consent)", v)
		}
	}
	if slices.Contains(prompt, promptNone) && len(prompt) > 1 {
		return p, oauth.InvalidRequest("prompt=none cannot be combined with other values")
	}
	p.Prompt = prompt
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxMaxAge {
			return p, oauth.InvalidRequest("max_age must be a non-negative number of seconds")
		}
		p.MaxAge = &n
	}
	if p.LoginHint = q.Get("login_hint"); len(p.LoginHint) > maxLoginHintLen {
		return p, oauth.InvalidRequest("login_hint is too long")
	}
	if p.Nonce = q.Get("nonce"); len(p.Nonce) > maxNonceLen {
		return p, oauth.InvalidRequest("nonce is too long")
	}
	return p, nil
}

// scopeAllowed returns "" when scope s may be granted to client c for the
// given resources, or why not.
func (h *Handler) scopeAllowed(s string, c store.Client, resources []string) string {
	if len(h.Scopes) > 0 && !slices.ContainsFunc(h.Scopes, func(x Scope) bool { return x.Name == s }) {
		return "is not known to this server"
	}
	if c.AllowedScopes != nil && !slices.Contains(c.AllowedScopes, s) {
		return "is not allowed for this client"
	}
	for _, uri := range resources {
		if res, ok := h.resource(uri); ok && len(res.Scopes) > 0 && !slices.Contains(res.Scopes, s) {
			return "is not available for resource " + uri
		}
	}
	return ""
}

// storeRequest stores the pending request p under the digest of its id rid
// (a fresh oauth.PrefixRequest token, never stored in clear) and binds it
// to this browser with a cookie holding rid.
func (h *Handler) storeRequest(ctx context.Context, w http.ResponseWriter, rid string, p store.AuthRequest) error {
	p.IDDigest = oauth.Digest(rid)
	if err := h.Store.CreateAuthRequest(ctx, p); err != nil {
		return err
	}
	h.setCookie(w, h.requestCookieName(requestHandle(p.IDDigest)), rid, p.ExpiresAt.Sub(p.CreatedAt))
	return nil
}

// redirectError sends an error to the client's confirmed redirect URI with
// state and iss (RFC 6749 §4.1.2.1, RFC 9207 §2). Internal causes are
// logged, never sent.
func (h *Handler) redirectError(w http.ResponseWriter, r *http.Request, t target, oerr *oauth.Error) {
	if oerr.Status >= 500 {
		h.log().ErrorContext(r.Context(), "authorization failed", "error", oerr.Code, "cause", errString(oerr.Err))
	} else {
		h.log().DebugContext(r.Context(), "authorization request rejected", "error", oerr.Code, "description", oerr.Description)
	}
	v := url.Values{"error": {oerr.Code}, "iss": {h.Issuer}}
	if oerr.Description != "" {
		v.Set("error_description", oerr.Description)
	}
	if t.state != "" {
		v.Set("state", t.state)
	}
	h.toClient(w, r, t, v)
}

// toClient redirects to the client with the answer v, success or error,
// only if the client (as read while serving this request) is enabled and
// still lists the redirect URI: a client may have withdrawn it (RFC 7592
// PUT) or been disabled while the user was signing in or deciding.
// Otherwise the user gets an error page and nothing is redirected.
func (h *Handler) toClient(w http.ResponseWriter, r *http.Request, t target, v url.Values) {
	if !stillRegistered(t) {
		h.errorPage(w, r, http.StatusBadRequest, "Invalid redirect address",
			"The application no longer lists the address it asked to send you to. You were not redirected.", nil)
		return
	}
	redirect(w, r, appendQuery(t.redirectURI, v))
}

// stillRegistered reports whether t's client is enabled and lists t's
// redirect URI.
func stillRegistered(t target) bool {
	if t.client.ID == "" || t.client.Disabled {
		return false
	}
	_, ok := oauth.MatchRedirectURI(t.client.Metadata.RedirectURIs, t.redirectURI)
	return ok
}

// appendQuery adds v to uri, keeping uri's own query byte for byte (RFC
// 6749 §3.1.2: the registered query MUST be retained).
func appendQuery(uri string, v url.Values) string {
	switch {
	case !strings.Contains(uri, "?"):
		return uri + "?" + v.Encode()
	case strings.HasSuffix(uri, "?"), strings.HasSuffix(uri, "&"):
		return uri + v.Encode()
	default:
		return uri + "&" + v.Encode()
	}
}

// redirect answers 303 to a POST (RFC 9700 §4.12: a 307 would re-send the
// form, credentials included) and 302 to a GET. Location is set verbatim:
// redirect URIs may use private-use schemes that http.Redirect must not
// touch.
func redirect(w http.ResponseWriter, r *http.Request, location string) {
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Location", location)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
