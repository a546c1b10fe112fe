package authorize

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// finish consumes a signed-in, consented pending request and issues its
// code. Consuming first makes the request single-use even under races.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, req store.AuthRequest) error {
	ctx := r.Context()
	now := h.now()
	req, err := h.Store.ConsumeAuthRequest(ctx, req.IDDigest, now)
	if errors.Is(err, store.ErrNotFound) {
		return errExpired()
	}
	if err != nil {
		return err
	}
	h.clearCookie(w, h.requestCookieName(requestHandle(req.IDDigest)))
	// The client's registration may have changed while the user was away.
	client, err := h.Store.GetClient(ctx, req.ClientID, now)
	if err != nil {
		return clientGone(err)
	}
	return h.complete(w, r, client, req)
}

// complete issues the code of a consumed request after checking that its
// client (read after the user's sign-in or consent) is still enabled and
// still lists the redirect URI.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request, client store.Client, req store.AuthRequest) error {
	if client.Disabled {
		return clientGone(nil)
	}
	if req.UserID == "" || req.AuthTime == nil {
		return errors.New("completing a request without a signed-in user")
	}
	return h.issueCode(w, r, client, req)
}

// issueCode creates the authorization code for a complete request and
// redirects to the client with code, state and iss (RFC 9207). Only the
// code's digest is stored; the code itself appears only in the Location
// header.
func (h *Handler) issueCode(w http.ResponseWriter, r *http.Request, client store.Client, req store.AuthRequest) error {
	ctx := r.Context()
	now := h.now()
	t := targetOf(client, req)
	if !stillRegistered(t) {
		return errNoLongerRegistered() // no code is made
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
		return t.fail(err)
	}
	h.event(ctx, EventCodeIssued, "client_id", client.ID, "user_id", req.UserID,
		"scope", oauth.JoinScope(req.Scopes), "resources", req.Resources)
	v := url.Values{"code": {code}, "iss": {h.Issuer}}
	if t.state != "" {
		v.Set("state", t.state)
	}
	redirect(w, r, appendQuery(t.redirectURI, v))
	return nil
}
