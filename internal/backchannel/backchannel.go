// Package backchannel receives OpenID Connect Back-Channel Logout 1.0
// logout tokens from the upstream OpenID Providers authd signs users in
// with: when a user signs out at the provider (or the provider ends their
// session), authd ends their sign-in too, and, when the upstream is so
// configured, revokes their grants and tokens.
//
//	POST /upstream/{id}/backchannel-logout   logout_token=<JWT>
//
// The provider is told this URL as the relying party's
// backchannel_logout_uri (§2.2). Answers follow §2.8: 200 when the logout
// was done (also when authd knows no such user: there is nothing left to
// end), 400 invalid_request otherwise, always Cache-Control: no-store.
package backchannel

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// Path is the route of the receiver under the issuer.
const Path = "/upstream/{id}/backchannel-logout"

// Store is the part of store.Store the receiver uses.
type Store interface {
	LogoutUpstreamUser(ctx context.Context, l store.UpstreamLogout, now time.Time) (store.UserLogout, error)
}

// Handler serves Path for the connectors with back-channel logout on.
type Handler struct {
	Store      Store
	Connectors []upstream.Connector
	// OnEvent, if set, is told each outcome (for metrics):
	// "upstream_logout", "upstream_logout_unknown_user" or
	// "upstream_logout_refused", with the upstream id ("unknown" for a path
	// naming no upstream with back-channel logout).
	OnEvent func(outcome, upstream string)
	Now     func() time.Time
	Log     *slog.Logger
}

// maxBody bounds the form: a logout token is a JWT of a few hundred bytes.
const maxBody = 16 << 10

// Routes mounts the receiver on r.
func (h *Handler) Routes(r chi.Router) {
	r.Post(Path, h.logout)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	oauth.NoStore(w)
	id := chi.URLParam(r, "id")
	conn := h.verifier(id)
	if conn == nil {
		// No such endpoint: an unknown upstream, or one that sends no
		// logout tokens (never echo the caller's path into logs).
		oe := oauth.InvalidRequest("no back-channel logout is configured for this upstream")
		oe.Status = http.StatusNotFound
		h.refuse(w, r, "unknown", oe)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		h.refuse(w, r, id, oauth.InvalidRequest("the body must be a form with logout_token (application/x-www-form-urlencoded)"))
		return
	}
	if oe := oauth.CheckParams(r.PostForm); oe != nil {
		h.refuse(w, r, id, oe)
		return
	}
	raw := r.PostForm["logout_token"]
	if len(raw) != 1 || raw[0] == "" {
		h.refuse(w, r, id, oauth.InvalidRequest("exactly one logout_token is required"))
		return
	}
	l, err := conn.VerifyLogoutToken(ctx, raw[0])
	if err != nil {
		var ue *upstream.Error
		if errors.As(err, &ue) && ue.Code == upstream.CodeUnavailable {
			// The provider's discovery document cannot be fetched: the
			// token could not be checked, which is not its fault.
			h.refuse(w, r, id, oauth.TemporarilyUnavailable(err))
			return
		}
		h.refuse(w, r, id, oauth.InvalidRequest("%s", err.Error()).WithCause(err))
		return
	}
	if l.Subject == "" {
		// authd keeps no record of the provider's sessions, so a token
		// naming only a session (sid) names nobody here.
		h.refuse(w, r, id, oauth.InvalidRequest("the logout token has no sub: authd ends sign-ins per user and needs the subject"))
		return
	}
	// A token is acted on once (on any replica): a replay must not sign
	// the user out again after they signed back in. Recording the jti and
	// the logout are one transaction: a failure records nothing, so the
	// provider's retry of this token (§2.8) is acted on, not refused.
	res, err := h.Store.LogoutUpstreamUser(ctx, store.UpstreamLogout{
		Upstream: id, Subject: l.Subject, JTI: l.JTI, Expiry: l.Expiry,
		RevokeGrants: conn.BackChannelLogout() == upstream.BackChannelLogoutGrants,
	}, h.now())
	switch {
	case errors.Is(err, store.ErrConflict):
		h.refuse(w, r, id, oauth.InvalidRequest("this logout token was already used (jti replayed)"))
		return
	case err != nil:
		h.refuse(w, r, id, oauth.AsError(err))
		return
	case res.UserID == "":
		h.audit(ctx, "logout_unknown_user", id)
		w.WriteHeader(http.StatusOK)
		return
	}
	h.audit(ctx, "logout", id, "user_id", res.UserID, "sessions", res.Sessions, "grants_revoked", len(res.Grants),
		"refresh_tokens_revoked", res.RefreshTokens, "access_tokens_revoked", res.AccessTokens)
	w.WriteHeader(http.StatusOK)
}

// verifier returns the connector id with back-channel logout on, or nil.
func (h *Handler) verifier(id string) upstream.LogoutVerifier {
	for _, c := range h.Connectors {
		if v, ok := c.(upstream.LogoutVerifier); ok && c.ID() == id && v.BackChannelLogout() != "" {
			return v
		}
	}
	return nil
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, upstreamID string, oe *oauth.Error) {
	if oe.Status < 500 {
		h.log().InfoContext(r.Context(), "audit", "event", "upstream_logout_refused", "upstream", upstreamID, "reason", oe.Description)
		h.observe("logout_refused", upstreamID)
	}
	oauth.WriteError(w, r, h.log(), oe)
}

func (h *Handler) audit(ctx context.Context, event, upstreamID string, attrs ...any) {
	h.log().InfoContext(ctx, "audit", append([]any{"event", "upstream_" + event, "upstream", upstreamID}, attrs...)...)
	h.observe(event, upstreamID)
}

func (h *Handler) observe(outcome, upstreamID string) {
	if h.OnEvent != nil {
		h.OnEvent("upstream_"+outcome, upstreamID)
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}
