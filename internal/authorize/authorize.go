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

	"github.com/authd/authd/internal/grants"
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

// authorize serves GET and POST /authorize (OAuth 2.1 §4.1.1).
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := h.now()

	q, err := readAuthorizeParams(w, r)
	if err != nil {
		return err
	}

	// Until both the client and the redirect URI are known to belong
	// together, nothing may be redirected: an error page, or the request
	// becomes an open redirector (RFC 6749 §4.1.2.1, RFC 9700 §4.11.2).
	for _, k := range []string{"client_id", "redirect_uri"} {
		if oauth.CheckParam(k, q[k]...) != nil {
			return pageError(http.StatusBadRequest, "Invalid authorization request",
				"The application's "+k+" is not valid text. You were not redirected.")
		}
	}
	client, err := h.authorizeClient(r, q, now)
	if err != nil {
		return err
	}
	t, err := authorizeRedirectURI(q, client)
	if err != nil {
		return err
	}
	// From here on, errors go to the client (t.fail). Every other
	// parameter must be text too (state, nonce and login_hint are
	// stored): invalid_request naming it.
	if oerr := oauth.CheckParams(q); oerr != nil {
		return t.fail(oerr)
	}

	p, oerr := h.validate(q, client)
	if oerr != nil {
		return t.fail(oerr)
	}
	p.RedirectURI = t.redirectURI
	p.RedirectURIProvided = q.Get("redirect_uri") != ""
	p.ClientID = client.ID
	p.CreatedAt = now
	p.ExpiresAt = now.Add(h.requestLifetime())

	sess, _, err := h.currentSession(ctx, r, now)
	if err != nil {
		return t.fail(err)
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
			return t.fail(err)
		}
		if !covered {
			signedIn, idpHint = false, provider
		}
	}

	if !signedIn {
		if slices.Contains(p.Prompt, promptNone) {
			return t.fail(oauth.LoginRequired("the user is not signed in"))
		}
		return h.startLogin(w, r, t, p, idpHint)
	}

	// Single sign-on: the browser's session stands for the user.
	p.UserID = sess.UserID
	authTime := sess.AuthTime
	p.AuthTime = &authTime
	reqlog.Set(ctx, "user_id", p.UserID)
	need, err := h.needsConsent(ctx, client, p)
	if err != nil {
		return t.fail(err)
	}
	if !need {
		return h.issueCode(w, r, client, p)
	}
	if slices.Contains(p.Prompt, promptNone) {
		return t.fail(oauth.ConsentRequired("the user has not approved this request"))
	}
	rid := oauth.NewToken(oauth.PrefixRequest)
	if err := h.storeRequest(ctx, w, rid, p); errors.Is(err, store.ErrNotFound) {
		return clientGone(err) // deleted since it was read (another replica)
	} else if err != nil {
		return t.fail(err)
	}
	redirect(w, r, h.path("/consent?req="+requestHandle(oauth.Digest(rid))))
	return nil
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
// the form body of a POST (OAuth 2.1 §4.1.1). An unusable request gets an
// error page.
func readAuthorizeParams(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	const title = "Invalid authorization request"
	malformed := pageError(http.StatusBadRequest, title, "The authorization request's parameters are malformed.")
	if r.Method == http.MethodGet {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, malformed
		}
		return q, nil
	}
	if _, params, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && oauth.CheckCharset(params) != nil {
		return nil, pageError(http.StatusUnsupportedMediaType, title, "The authorization request is not encoded in UTF-8.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, pageError(http.StatusRequestEntityTooLarge, title, "The authorization request is too large.")
		}
		return nil, malformed
	}
	return r.PostForm, nil
}

// authorizeClient is step 1: the client must exist and be enabled.
func (h *Handler) authorizeClient(r *http.Request, q url.Values, now time.Time) (store.Client, error) {
	if len(q["client_id"]) > 1 {
		return store.Client{}, pageError(http.StatusBadRequest, "Invalid authorization request", "The request names more than one client_id.")
	}
	id := q.Get("client_id")
	if id == "" {
		return store.Client{}, pageError(http.StatusBadRequest, "Invalid authorization request", "The application's request is missing its client_id.")
	}
	client, err := h.Store.GetClient(r.Context(), id, now)
	if msg, ok := unusableClient(err); ok {
		return store.Client{}, pageError(http.StatusBadRequest, "Application not accepted", msg).withCause(err)
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, pageError(http.StatusBadRequest, "Unknown application",
			"The application that sent you here is not registered with this server. You were not redirected.").withCause(err)
	}
	if err != nil {
		return store.Client{}, err
	}
	if client.Disabled {
		return store.Client{}, pageError(http.StatusBadRequest, "Application disabled",
			"The application that sent you here has been disabled by the operator of this server.")
	}
	reqlog.Set(r.Context(), "client_id", client.ID)
	return client, nil
}

// authorizeRedirectURI is step 2: redirect_uri must exactly match a
// registered one (RFC 9700 §4.1.3; loopback: any port, RFC 8252 §7.3), or
// be omitted when exactly one is registered (OAuth 2.1 §2.3.2). The
// redirect goes to the URI as requested (with its loopback port).
func authorizeRedirectURI(q url.Values, c store.Client) (target, error) {
	const title = "Invalid redirect address"
	registered := c.Metadata.RedirectURIs
	var uri string
	switch requested := q.Get("redirect_uri"); {
	case len(q["redirect_uri"]) > 1:
		return target{}, pageError(http.StatusBadRequest, title, "The request names more than one redirect_uri. You were not redirected.")
	case requested != "":
		if _, ok := oauth.MatchRedirectURI(registered, requested); !ok {
			return target{}, pageError(http.StatusBadRequest, title,
				"The application asked to send you to an address it has not registered. For your safety you were not redirected.")
		}
		uri = requested
	case len(registered) == 1:
		uri = registered[0]
	default:
		return target{}, pageError(http.StatusBadRequest, title,
			"The application did not say where to send you back (redirect_uri), and it has registered more than one address. You were not redirected.")
	}
	t := target{client: c, redirectURI: uri, state: q.Get("state")}
	if len(q["state"]) > 1 || len(t.state) > maxStateLen || !oauth.ValidText(t.state) {
		t.state = "" // an ambiguous, oversized or non-text state is not echoed
	}
	return t, nil
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
	if (len(gt) > 0 && !slices.Contains(gt, grants.AuthorizationCode)) || (len(rts) > 0 && !slices.Contains(rts, "code")) {
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
		// audience now (policy.DefaultAudienceFor, the rule client_credentials
		// applies too), so the user consents to the audience the token will
		// really have.
		if resources, oerr = h.Policy.DefaultAudienceFor(c.AllowedResources); oerr != nil {
			return p, oerr
		}
	}
	for _, res := range resources {
		if !h.Policy.Serves(res) {
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
	scopes, oerr := h.Policy.Requested(q.Get("scope"))
	if oerr != nil {
		return p, oerr
	}
	if len(scopes) == 0 {
		// RFC 6749 §3.3: omitted scope means the pre-defined default;
		// defaults this client or a requested resource may not have are
		// dropped.
		scopes = h.Policy.AllowedScopes(h.Policy.DefaultScopes, c.AllowedScopes, resources)
	} else if oerr := h.Policy.CheckScopes(scopes, c.AllowedScopes, resources); oerr != nil {
		// Named scopes every requested resource must offer
		// (policy.ScopeAllowed), as /token requires.
		return p, oerr
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
