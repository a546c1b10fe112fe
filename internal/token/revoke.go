package token

import (
	"errors"
	"net/http"

	"github.com/authd/authd/internal/clientauth"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/tokens"
)

// serveRevoke implements RFC 7009. The client authenticates as at /token
// (public clients by client_id); the token core (tokens.Service.Revoke)
// recognises the token by its own shape, never by token_type_hint, which
// §2.1 makes a mere optimisation, and revokes it.
//
// Whatever cannot be revoked on the caller's behalf (unknown, malformed,
// expired, or another client's token) gets the same empty 200 as success
// (§2.2), so the endpoint reveals nothing about tokens it did not issue to
// the caller. unsupported_token_type is never needed: authd can revoke
// every kind of token it issues, and unknown hint values are ignored.
//
// Revoking a refresh token revokes its grant, and with it every token of
// the grant (§2.1: SHOULD). Revoking an access token revokes that token
// only: §2.1 leaves the grant to the server, and a client discarding one
// access token should not sign its user out.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if err := h.revoke(w, r); err != nil {
		oauth.WriteError(w, r, h.log(), err)
		return
	}
	oauth.NoStore(w)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) error {
	form, err := clientauth.ReadForm(w, r, h.MaxBodyBytes)
	if err != nil {
		return err
	}
	if err := clientauth.CheckSingle(form); err != nil {
		return err
	}
	client, _, err := h.Clients.Authenticate(r, form)
	if err != nil {
		return err
	}
	ctx := r.Context()
	reqlog.Set(ctx, "client_id", client.ID)
	value := form.Get("token")
	if value == "" {
		return oauth.InvalidRequest("token is required")
	}
	kind, err := h.tokens().Revoke(ctx, value, client.ID, h.now())
	switch {
	case errors.Is(err, tokens.ErrNothingRevoked):
		h.log().DebugContext(ctx, "revocation request for a token not revocable by this client", "client_id", client.ID)
		return nil
	case err != nil:
		return err
	}
	h.log().InfoContext(ctx, "token revoked", "event", "token_revoked", "token_kind", kind.String(), "client_id", client.ID)
	return nil
}
