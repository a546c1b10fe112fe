package authorize

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

type consentResource struct {
	Name, URI string
	New       bool
}

type consentScope struct {
	Name, Description string
}

type consentData struct {
	ClientName string
	Deceptive  bool // the name mixes scripts or uses full-width forms

	Verified     string // config, metadata or dynamic
	ClientHost   string // host of a metadata-document client_id
	RedirectHost string
	Loopback     bool
	Resources    []consentResource
	// UpstreamAccess says, per resource, what it may do as the user at
	// the upstream (resources[].upstream_scopes, store_tokens).
	UpstreamAccess []consentUpstream
	NewScopes      []consentScope
	OldScopes      []consentScope
	StepUp         bool
	UserName       string
	Handle         string
	CSRF           string
	Base           string // Handler.basePath, prefixed to authd's own URLs
}

// consentUpstream is one resource's access at the upstream.
type consentUpstream struct {
	Resource string
	Upstream string // display name
	Scopes   []string
}

// consentPage serves GET /consent?req=H.
func (h *Handler) consentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req, rid, client, user, ok := h.consentRequest(w, r, r.URL.Query().Get("req"))
	if !ok {
		return
	}
	prior, err := h.Store.GetConsent(ctx, req.UserID, req.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.internalErrorPage(w, r, err)
		return
	}
	d := consentData{
		Base:       h.basePath(),
		ClientName: clientName(client),
		Deceptive:  deceptiveName(clientName(client)),
		Verified:   verification(client),
		ClientHost: metadataHost(client),
		UserName:   displayName(user),
		Handle:     requestHandle(req.IDDigest),
		CSRF:       consentCSRF(rid),
	}
	d.RedirectHost, d.Loopback = redirectHost(req.RedirectURI)
	for _, uri := range req.Resources {
		name := uri
		if res, ok := h.resource(uri); ok && res.Name != "" {
			name = res.Name
		}
		_, approved := prior.Approvals[uri]
		d.Resources = append(d.Resources, consentResource{Name: name, URI: uri, New: !approved})
		if scopes := h.upstreamScopes(user.Provider, []string{uri}); len(scopes) > 0 {
			up := user.Provider
			if conn := h.connector(up); conn != nil {
				up = conn.DisplayName()
			}
			d.UpstreamAccess = append(d.UpstreamAccess, consentUpstream{Resource: name, Upstream: up, Scopes: scopes})
		}
	}
	for _, s := range req.Scopes {
		cs := consentScope{Name: s, Description: h.scopeDescription(s)}
		if cs.Description == "" {
			cs.Description = "Use “" + s + "”"
		}
		// Already allowed only if allowed for every resource asked for now.
		if prior.Covers(req.Resources, []string{s}) {
			d.OldScopes = append(d.OldScopes, cs)
		} else {
			d.NewScopes = append(d.NewScopes, cs)
		}
	}
	d.StepUp = len(prior.Scopes) > 0 && len(d.NewScopes) > 0
	title := "Authorize " + d.ClientName
	if d.StepUp {
		title = d.ClientName + " asks for more access"
	}
	h.render(w, r, http.StatusOK, "consent", title, d)
}

// consentSubmit serves POST /consent. Only the request handle, the CSRF
// token and the decision come from the form; what is approved (client,
// redirect URI, scopes, resources, PKCE challenge) is the server-side
// pending request.
func (h *Handler) consentSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.errorPage(w, r, http.StatusRequestEntityTooLarge, "Request too large", "The form was too large.", nil)
			return
		}
		h.errorPage(w, r, http.StatusBadRequest, "Invalid form", "The form could not be read.", nil)
		return
	}
	if oauth.CheckParams(r.PostForm) != nil {
		h.errorPage(w, r, http.StatusBadRequest, "Invalid form", "The form contains text that is not valid UTF-8.", nil)
		return
	}
	req, rid, client, user, ok := h.consentRequest(w, r, r.PostForm.Get("req"))
	if !ok {
		return
	}
	if !oauth.ConstantTimeEqual(r.PostForm.Get("csrf"), consentCSRF(rid)) {
		h.errorPage(w, r, http.StatusForbidden, "Request refused",
			"The form's security token is missing or wrong. Go back, reload the page and try again.", nil)
		return
	}
	switch r.PostForm.Get("decision") {
	case "approve":
		now := h.now()
		err := h.Store.AddConsent(ctx, store.Consent{
			UserID: user.ID, ClientID: client.ID,
			Scopes: req.Scopes, Resources: req.Resources,
			Approvals: store.ApprovalsFor(req.Resources, req.Scopes),
			CreatedAt: now, UpdatedAt: now,
		})
		if err != nil {
			h.internalErrorPage(w, r, err)
			return
		}
		h.event(ctx, EventConsentApproved, "client_id", client.ID, "user_id", user.ID,
			"scope", oauth.JoinScope(req.Scopes), "resources", req.Resources)
		h.finish(w, r, req)
	case "deny":
		if _, err := h.Store.ConsumeAuthRequest(ctx, req.IDDigest, h.now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				h.requestExpired(w, r)
				return
			}
			h.internalErrorPage(w, r, err)
			return
		}
		h.clearCookie(w, h.requestCookieName(requestHandle(req.IDDigest)))
		h.event(ctx, EventConsentDenied, "client_id", client.ID, "user_id", user.ID)
		// client was read for this request (consentRequest): a redirect
		// URI withdrawn meanwhile gets no error either.
		h.redirectError(w, r, targetOf(client, req), oauth.AccessDenied("the user denied the request"))
	default:
		h.errorPage(w, r, http.StatusBadRequest, "Invalid form", "Choose Approve or Deny.", nil)
	}
}

// consentRequest loads what the consent endpoints need: the pending
// request bound to this browser, signed in by the user whose session this
// browser still holds, and its client, which must still exist.
func (h *Handler) consentRequest(w http.ResponseWriter, r *http.Request, handle string) (store.AuthRequest, string, store.Client, store.User, bool) {
	ctx := r.Context()
	fail := func() (store.AuthRequest, string, store.Client, store.User, bool) {
		return store.AuthRequest{}, "", store.Client{}, store.User{}, false
	}
	req, rid, ok := h.pendingRequest(w, r, handle)
	if !ok {
		return fail()
	}
	sess, _, err := h.currentSession(ctx, r, h.now())
	if err != nil {
		h.internalErrorPage(w, r, err)
		return fail()
	}
	if req.UserID == "" || req.AuthTime == nil || sess == nil || sess.UserID != req.UserID {
		h.errorPage(w, r, http.StatusBadRequest, "Not signed in",
			"You are not signed in for this authorization (you may have signed out meanwhile). Return to the application and start again.", nil)
		return fail()
	}
	reqlog.Set(ctx, "user_id", req.UserID)
	client, err := h.Store.GetClient(ctx, req.ClientID, h.now())
	if err != nil || client.Disabled {
		h.clientGone(w, r, err)
		return fail()
	}
	// The session's user is the request's (checked above), just read.
	return req, rid, client, sess.User, true
}

// finish consumes a signed-in, consented pending request and issues its
// code. Consuming first makes the request single-use even under races.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, req store.AuthRequest) {
	ctx := r.Context()
	now := h.now()
	req, err := h.Store.ConsumeAuthRequest(ctx, req.IDDigest, now)
	if errors.Is(err, store.ErrNotFound) {
		h.requestExpired(w, r)
		return
	}
	if err != nil {
		h.internalErrorPage(w, r, err)
		return
	}
	h.clearCookie(w, h.requestCookieName(requestHandle(req.IDDigest)))
	// The client's registration may have changed while the user was away.
	client, err := h.Store.GetClient(ctx, req.ClientID, now)
	if err != nil {
		h.clientGone(w, r, err)
		return
	}
	h.complete(w, r, client, req)
}

// complete issues the code of a consumed request after checking that its
// client (read after the user's sign-in or consent) is still enabled and
// still lists the redirect URI.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request, client store.Client, req store.AuthRequest) {
	if client.Disabled {
		h.clientGone(w, r, nil)
		return
	}
	if req.UserID == "" || req.AuthTime == nil {
		h.internalErrorPage(w, r, errors.New("completing a request without a signed-in user"))
		return
	}
	h.issueCode(w, r, client, req)
}

// issueCode creates the authorization code for a complete request and
// redirects to the client with code, state and iss (RFC 9207). Only the
// code's digest is stored; the code itself appears only in the Location
// header.
func (h *Handler) issueCode(w http.ResponseWriter, r *http.Request, client store.Client, req store.AuthRequest) {
	ctx := r.Context()
	now := h.now()
	t := targetOf(client, req)
	if !stillRegistered(t) {
		h.toClient(w, r, t, nil) // the error page; no code is made
		return
	}
	code := oauth.NewToken(oauth.PrefixCode)
	err := h.Store.CreateAuthCode(ctx, store.AuthCode{
		Digest:              oauth.Digest(code),
		ClientID:            client.ID,
		UserID:              req.UserID,
		RedirectURI:         req.RedirectURI,
		RedirectURIProvided: req.RedirectURIProvided,
		Scopes:              req.Scopes,
		Resources:           req.Resources,
		CodeChallenge:       req.CodeChallenge,
		CodeChallengeMethod: req.CodeChallengeMethod,
		Nonce:               req.Nonce,
		AuthTime:            *req.AuthTime,
		CreatedAt:           now,
		ExpiresAt:           now.Add(h.codeLifetime()),
	})
	if err != nil {
		h.redirectError(w, r, t, oauth.AsError(err))
		return
	}
	h.event(ctx, EventCodeIssued, "client_id", client.ID, "user_id", req.UserID,
		"scope", oauth.JoinScope(req.Scopes), "resources", req.Resources)
	v := url.Values{"code": {code}, "iss": {h.Issuer}}
	if t.state != "" {
		v.Set("state", t.state)
	}
	h.toClient(w, r, t, v)
}

// unusableClient recognises a client that exists but cannot be used as
// it describes itself: a client ID metadata document that could not be
// fetched or is invalid (invalid_client, matching store.ErrNotFound). Its
// description names the document's problem, never an internal one, so
// the page shows it; the redirect URI cannot be trusted, so nothing is
// redirected.
func unusableClient(err error) (string, bool) {
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidClient || oe.Description == "" {
		return "", false
	}
	return "The application that sent you here cannot be accepted: " + oe.Description + ". You were not redirected.", true
}
