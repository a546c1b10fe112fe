package authorize

import (
	"context"
	"errors"
	"net/http"
	"slices"

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
	NewScopes    []consentScope
	OldScopes    []consentScope
	StepUp       bool
	UserName     string
	Handle       string
	CSRF         string
	Base         string // Handler.basePath, prefixed to authd's own URLs

	// UpstreamAccess says, per resource, what it may do as the user at
	// the upstream (resources[].upstream_scopes, store_tokens).
	UpstreamAccess []consentUpstream
}

// consentUpstream is one resource's access at the upstream.
type consentUpstream struct {
	Resource string
	Upstream string // display name
	Scopes   []string
}

// consentPage serves GET /consent?req=H.
func (h *Handler) consentPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	req, rid, client, user, err := h.consentRequest(r, r.URL.Query().Get("req"))
	if err != nil {
		return err
	}
	prior, err := h.Store.GetConsent(ctx, req.UserID, req.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
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
	return nil
}

// consentSubmit serves POST /consent. Only the request handle, the CSRF
// token and the decision come from the form; what is approved (client,
// redirect URI, scopes, resources, PKCE challenge) is the server-side
// pending request.
func (h *Handler) consentSubmit(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return pageError(http.StatusRequestEntityTooLarge, "Request too large", "The form was too large.")
		}
		return pageError(http.StatusBadRequest, "Invalid form", "The form could not be read.")
	}
	if oauth.CheckParams(r.PostForm) != nil {
		return pageError(http.StatusBadRequest, "Invalid form", "The form contains text that is not valid UTF-8.")
	}
	req, rid, client, user, err := h.consentRequest(r, r.PostForm.Get("req"))
	if err != nil {
		return err
	}
	if !oauth.ConstantTimeEqual(r.PostForm.Get("csrf"), consentCSRF(rid)) {
		return pageError(http.StatusForbidden, "Request refused",
			"The form's security token is missing or wrong. Go back, reload the page and try again.")
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
			return err
		}
		h.event(ctx, EventConsentApproved, "client_id", client.ID, "user_id", user.ID,
			"scope", oauth.JoinScope(req.Scopes), "resources", req.Resources)
		return h.finish(w, r, req)
	case "deny":
		if _, err := h.Store.ConsumeAuthRequest(ctx, req.IDDigest, h.now()); errors.Is(err, store.ErrNotFound) {
			return errExpired()
		} else if err != nil {
			return err
		}
		h.clearCookie(w, h.requestCookieName(requestHandle(req.IDDigest)))
		h.event(ctx, EventConsentDenied, "client_id", client.ID, "user_id", user.ID)
		// client was read for this request (consentRequest): a redirect
		// URI withdrawn meanwhile gets no error either.
		return targetOf(client, req).fail(oauth.AccessDenied("the user denied the request"))
	default:
		return pageError(http.StatusBadRequest, "Invalid form", "Choose Approve or Deny.")
	}
}

// needsConsent reports whether the user must be asked: prompt=consent
// always asks; first-party clients never; otherwise unless earlier
// approvals cover every requested scope for each requested resource (an
// approval for one resource says nothing about another).
func (h *Handler) needsConsent(ctx context.Context, client store.Client, req store.AuthRequest) (bool, error) {
	if slices.Contains(req.Prompt, promptConsent) {
		return true, nil
	}
	if client.SkipConsent {
		return false, nil
	}
	c, err := h.Store.GetConsent(ctx, req.UserID, req.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !c.Covers(req.Resources, req.Scopes), nil
}

// consentRequest loads what the consent endpoints need: the pending
// request bound to this browser, signed in by the user whose session this
// browser still holds, and its client, which must still exist.
func (h *Handler) consentRequest(r *http.Request, handle string) (store.AuthRequest, string, store.Client, store.User, error) {
	ctx := r.Context()
	fail := func(err error) (store.AuthRequest, string, store.Client, store.User, error) {
		return store.AuthRequest{}, "", store.Client{}, store.User{}, err
	}
	req, rid, err := h.pendingRequest(r, handle)
	if err != nil {
		return fail(err)
	}
	sess, _, err := h.currentSession(ctx, r, h.now())
	if err != nil {
		return fail(err)
	}
	if req.UserID == "" || req.AuthTime == nil || sess == nil || sess.UserID != req.UserID {
		return fail(pageError(http.StatusBadRequest, "Not signed in",
			"You are not signed in for this authorization (you may have signed out meanwhile). Return to the application and start again."))
	}
	reqlog.Set(ctx, "user_id", req.UserID)
	client, err := h.Store.GetClient(ctx, req.ClientID, h.now())
	if err != nil {
		return fail(clientGone(err))
	}
	if client.Disabled {
		return fail(clientGone(nil))
	}
	// The session's user is the request's (checked above), just read.
	return req, rid, client, sess.User, nil
}
