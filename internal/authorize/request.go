package authorize

import (
	"errors"
	"net/http"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

// A pending authorization request lives between /authorize and the code:
// stored under the digest of its id (storeRequest), bound to the browser
// by a cookie that holds the id, and named in URLs by its handle (see the
// package documentation).

// pendingRequest returns the pending request named by handle and the
// request id this browser holds for it; errExpired when the browser holds
// no such request.
func (h *Handler) pendingRequest(r *http.Request, handle string) (store.AuthRequest, string, error) {
	if !validHandle(handle) {
		return store.AuthRequest{}, "", errExpired()
	}
	rid := cookieValue(r, h.requestCookieName(handle))
	if rid == "" {
		return store.AuthRequest{}, "", errExpired()
	}
	d := oauth.Digest(rid)
	if requestHandle(d) != handle {
		return store.AuthRequest{}, "", errExpired()
	}
	req, err := h.Store.GetAuthRequest(r.Context(), d, h.now())
	if errors.Is(err, store.ErrNotFound) {
		return store.AuthRequest{}, "", errExpired()
	}
	if err != nil {
		return store.AuthRequest{}, "", err
	}
	reqlog.Set(r.Context(), "client_id", req.ClientID)
	return req, rid, nil
}
