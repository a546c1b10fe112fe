package authorize

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
)

// startSession signs the browser in as userID, who authenticated at
// authTime, with a new session (and a new cookie: never reuse an id from
// before the sign-in, against session fixation), ending the browser's
// previous session.
func (h *Handler) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, authTime, now time.Time) error {
	name := h.cookieName(sessionCookie)
	if old := cookieValue(r, name); old != "" {
		if err := h.Store.DeleteSession(ctx, oauth.Digest(old)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	sid := oauth.NewToken(oauth.PrefixSession)
	s := store.Session{
		IDDigest:  oauth.Digest(sid),
		UserID:    userID,
		AuthTime:  authTime,
		CreatedAt: now,
		ExpiresAt: now.Add(h.sessionLifetime()),
	}
	if err := h.Store.CreateSession(ctx, s); err != nil {
		return err
	}
	h.setCookie(w, name, sid, h.sessionLifetime())
	return nil
}

// session is a valid browser session with its user, as read to check it.
type session struct {
	store.Session
	User store.User
}

// currentSession returns the browser's session if it is valid and its user
// may still sign in (not disabled, provider still configured, allowed by
// the current allowlist), else nil: a user removed from the allowlist
// loses single sign-on at once and is sent to the upstream again. It also
// returns the session id, for the forms of /apps.
func (h *Handler) currentSession(ctx context.Context, r *http.Request, now time.Time) (*session, string, error) {
	sid := cookieValue(r, h.cookieName(sessionCookie))
	if sid == "" {
		return nil, "", nil
	}
	// One read for both (every authorization and consent step checks it).
	s, u, err := h.Store.GetSessionUser(ctx, oauth.Digest(sid), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	conn := h.connector(u.Provider)
	if u.Disabled || conn == nil {
		return nil, "", nil
	}
	if _, ok := h.allowed(conn.Type(), u); !ok {
		return nil, "", nil
	}
	return &session{Session: s, User: u}, sid, nil
}
