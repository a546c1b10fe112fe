package authorize

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/allowlist"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/upstream"
)

// startLogin stores the pending request and sends the browser to sign in:
// straight to the upstream when there is one (or idp_hint names one),
// otherwise to the chooser.
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, t target, p store.AuthRequest, idpHint string) {
	ctx := r.Context()
	if len(h.Connectors) == 0 {
		h.redirectError(w, r, t, oauth.ServerError(errors.New("no upstream identity provider configured")))
		return
	}
	conn := h.connector(idpHint)
	if conn == nil && len(h.Connectors) == 1 {
		conn = h.Connectors[0]
	}
	rid := oauth.NewToken(oauth.PrefixRequest)
	next := h.path("/login?req=" + requestHandle(oauth.Digest(rid)))
	if conn != nil {
		u, err := h.prepareUpstream(ctx, &p, rid, conn)
		if err != nil {
			h.upstreamUnavailable(w, r, err)
			return
		}
		next = u
	}
	if err := h.storeRequest(ctx, w, rid, p); errors.Is(err, store.ErrNotFound) {
		h.clientGone(w, r, err) // deleted since it was read (another replica)
		return
	} else if err != nil {
		h.redirectError(w, r, t, oauth.AsError(err))
		return
	}
	redirect(w, r, next)
}

// prepareUpstream picks a fresh upstream state for p (replacing any earlier
// one, so only the latest upstream redirect can complete) and returns the
// upstream's authorization URL. The PKCE verifier and nonce are derived
// from the request id, which only the browser's cookie holds.
func (h *Handler) prepareUpstream(ctx context.Context, p *store.AuthRequest, rid string, conn upstream.Connector) (string, error) {
	if err := upstream.Prepare(ctx, conn); err != nil {
		return "", err
	}
	state := oauth.NewToken(oauth.PrefixState)
	opts := loginOptions(rid, state, *p)
	if conn.Type() == upstream.TypeDev {
		// The development login names the application asking, as the
		// chooser and consent pages do (display only).
		if c, err := h.Store.GetClient(ctx, p.ClientID, h.now()); err == nil {
			opts.ClientName = clientName(c)
		}
	}
	u := conn.AuthCodeURL(state, opts)
	if u == "" {
		return "", &upstream.Error{Code: upstream.CodeUnavailable, Message: "The identity provider cannot be reached right now."}
	}
	p.Upstream = conn.ID()
	p.UpstreamStateDigest = oauth.Digest(state)
	return u, nil
}

// loginOptions is what the upstream sign-in for p asks (the same at the
// redirect and at the callback): the client's prompt=login and max_age
// are passed on, so that an upstream that still has a session does not
// sign the user in silently while authd records a fresh auth_time.
// max_age=0 is prompt=login (OpenID Connect Core §3.1.2.1).
func loginOptions(rid, state string, p store.AuthRequest) upstream.LoginOptions {
	return upstream.LoginOptions{
		Verifier:   upstreamVerifier(rid, state),
		Nonce:      upstreamNonce(rid, state),
		LoginHint:  p.LoginHint,
		ForceLogin: slices.Contains(p.Prompt, promptLogin) || (p.MaxAge != nil && *p.MaxAge == 0),
		MaxAge:     p.MaxAge,
	}
}

func (h *Handler) upstreamUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Retry-After", "5")
	h.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in unavailable",
		"The identity provider cannot be reached right now. Please try again in a moment.", err)
}

// pendingRequest returns the pending request named by handle and the
// request id this browser holds for it. ok is false (and an error page has
// been written) when the browser holds no such request.
func (h *Handler) pendingRequest(w http.ResponseWriter, r *http.Request, handle string) (store.AuthRequest, string, bool) {
	expired := func() (store.AuthRequest, string, bool) {
		h.requestExpired(w, r)
		return store.AuthRequest{}, "", false
	}
	if !validHandle(handle) {
		return expired()
	}
	rid := cookieValue(r, h.requestCookieName(handle))
	if rid == "" {
		return expired()
	}
	d := oauth.Digest(rid)
	if requestHandle(d) != handle {
		return expired()
	}
	req, err := h.Store.GetAuthRequest(r.Context(), d, h.now())
	if errors.Is(err, store.ErrNotFound) {
		return expired()
	}
	if err != nil {
		h.internalErrorPage(w, r, err)
		return store.AuthRequest{}, "", false
	}
	reqlog.Set(r.Context(), "client_id", req.ClientID)
	return req, rid, true
}

func (h *Handler) requestExpired(w http.ResponseWriter, r *http.Request) {
	h.errorPage(w, r, http.StatusBadRequest, "Authorization expired",
		"This authorization request has expired, was already completed, or was started in another browser. Return to the application and start again.", nil)
}

type choice struct {
	Name string
	URL  string
}

// login serves GET /login: the chooser of upstream identity providers, and
// (with idp=ID) the redirect to the chosen one. Choices are links, not a
// form: a form submission that redirects to the provider would be stopped
// by CSP form-action in some browsers, and starting a sign-in changes
// nothing an attacker could use (the request stays bound to this browser).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	handle := r.URL.Query().Get("req")
	req, rid, ok := h.pendingRequest(w, r, handle)
	if !ok {
		return
	}
	conn := h.connector(r.URL.Query().Get("idp"))
	if conn == nil && len(h.Connectors) == 1 {
		conn = h.Connectors[0]
	}
	if conn == nil {
		name := req.ClientID
		if c, err := h.Store.GetClient(ctx, req.ClientID, h.now()); err == nil {
			name = clientName(c)
		}
		choices := make([]choice, 0, len(h.Connectors))
		for _, c := range h.Connectors {
			choices = append(choices, choice{
				Name: c.DisplayName(),
				URL:  h.path("/login?" + url.Values{"req": {handle}, "idp": {c.ID()}}.Encode()),
			})
		}
		h.render(w, r, http.StatusOK, "chooser", "Sign in", struct {
			ClientName string
			Choices    []choice
		}{name, choices})
		return
	}
	u, err := h.prepareUpstream(ctx, &req, rid, conn)
	if err != nil {
		h.upstreamUnavailable(w, r, err)
		return
	}
	if err := h.Store.UpdateAuthRequest(ctx, req); err != nil {
		h.internalErrorPage(w, r, err)
		return
	}
	redirect(w, r, u)
}

// callback serves GET /callback/{provider}: the upstream's answer. The
// state finds the pending request, which must belong to this browser and
// be waiting for this provider; it is consumed before the code exchange so
// that a replayed callback finds nothing. Failures show a page and create
// nothing.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := h.now()
	provider := chi.URLParam(r, "provider")
	logProvider := provider // the path is the caller's: log only known ids
	if h.connector(provider) == nil {
		logProvider = "unknown"
	}
	failed := func(msg string, cause error) {
		h.event(ctx, EventLoginFailed, "upstream", logProvider, "reason", msg)
		h.errorPage(w, r, http.StatusBadRequest, "Sign-in failed", msg, cause)
	}

	state := r.URL.Query().Get("state")
	if state == "" {
		failed("The identity provider's answer is incomplete. Return to the application and start again.", nil)
		return
	}
	stateDigest := oauth.Digest(state)
	req, err := h.Store.GetAuthRequestByUpstreamState(ctx, stateDigest, now)
	if errors.Is(err, store.ErrNotFound) {
		failed("This sign-in has expired or was already completed. Return to the application and start again.", nil)
		return
	}
	if err != nil {
		h.internalErrorPage(w, r, err)
		return
	}
	reqlog.Set(ctx, "client_id", req.ClientID)
	rid := h.requestIDFromCookie(r, req.IDDigest)
	if rid == "" {
		// Another browser (a stolen or forwarded callback URL, or login
		// CSRF): leave the request alone for its rightful browser.
		failed("This sign-in was started in a different browser, or your browser blocked cookies. Return to the application and start again in this browser.", nil)
		return
	}
	conn := h.connector(provider)
	if conn == nil || req.Upstream != provider {
		failed("The answer came from a different identity provider than the one you chose. Return to the application and start again.", nil)
		return
	}
	req, err = h.Store.ConsumeAuthRequest(ctx, req.IDDigest, now)
	if errors.Is(err, store.ErrNotFound) {
		failed("This sign-in was already completed. Return to the application and start again.", nil)
		return
	}
	if err != nil {
		h.internalErrorPage(w, r, err)
		return
	}
	handleCookie := h.requestCookieName(requestHandle(req.IDDigest))
	if !oauth.ConstantTimeEqual(req.UpstreamStateDigest, stateDigest) {
		// The user started another upstream sign-in for this request
		// (back button) between our read and the consume: put it back
		// for the newer one.
		if err := h.Store.CreateAuthRequest(ctx, req); err != nil {
			h.internalErrorPage(w, r, err)
			return
		}
		failed("This sign-in was replaced by a newer one. Finish the newest sign-in window, or return to the application and start again.", nil)
		return
	}
	req.UpstreamStateDigest = ""

	ident, err := conn.HandleCallback(ctx, r, loginOptions(rid, state, req))
	if err != nil {
		h.clearCookie(w, handleCookie)
		var ue *upstream.Error
		switch {
		case errors.As(err, &ue) && ue.Code == upstream.CodeAccessDenied && r.URL.Query().Get("error") == upstream.CodeAccessDenied:
			// The user declined at the provider: the client and its
			// redirect URI were confirmed at /authorize, so tell the
			// client, as RFC 6749 §4.1.2.1 does for a declined request.
			h.event(ctx, EventLoginFailed, "upstream", provider, "reason", "declined")
			if req.ClientID == "" { // the sign-in offered on /apps: no client to tell
				h.errorPage(w, r, http.StatusForbidden, "Sign-in cancelled", "You declined to sign in.", err)
				return
			}
			// The client as it is now: it may have withdrawn the
			// redirect URI, or gone, while the user was away.
			client, cerr := h.Store.GetClient(ctx, req.ClientID, now)
			if cerr != nil {
				h.clientGone(w, r, cerr)
				return
			}
			h.redirectError(w, r, targetOf(client, req), oauth.AccessDenied("the user declined to sign in at the identity provider").WithCause(err))
		case errors.As(err, &ue) && ue.Code == upstream.CodeAccessDenied:
			// The connector refused the account (e.g. another Workspace
			// domain): the user must learn why.
			h.event(ctx, EventLoginDenied, "upstream", provider, "reason", ue.Code)
			h.errorPage(w, r, http.StatusForbidden, "Access denied", ue.Message, err)
		case errors.As(err, &ue) && ue.Code == upstream.CodeUnavailable:
			h.event(ctx, EventLoginFailed, "upstream", provider, "reason", ue.Code)
			h.upstreamUnavailable(w, r, err)
		case errors.As(err, &ue):
			h.event(ctx, EventLoginFailed, "upstream", provider, "reason", ue.Code)
			h.errorPage(w, r, http.StatusBadGateway, "Sign-in failed",
				ue.Message+" Return to the application and start again.", err)
		default:
			h.event(ctx, EventLoginFailed, "upstream", provider, "reason", "error")
			h.errorPage(w, r, http.StatusBadGateway, "Sign-in failed",
				"The identity provider's answer could not be used. Return to the application and start again.", err)
		}
		return
	}
	if ident.Subject == "" {
		h.clearCookie(w, handleCookie)
		h.internalErrorPage(w, r, errors.New("upstream identity without subject"))
		return
	}

	u := store.User{
		Provider:      conn.ID(),
		Subject:       ident.Subject,
		Login:         ident.Login,
		Email:         ident.Email,
		EmailVerified: ident.EmailVerified,
		Name:          ident.Name,
		Groups:        ident.Groups,
		Domain:        ident.Domain,
		CreatedAt:     now, // kept by the store for an existing user
		UpdatedAt:     now,
		LastLoginAt:   now,
	}
	// The allowlist decides before anything is stored about the user.
	if reason, allowed := h.allowed(conn.Type(), u); !allowed {
		h.clearCookie(w, handleCookie)
		h.denied(w, r, conn, u, reason)
		return
	}
	user, err := h.Store.UpsertUser(ctx, u)
	if err != nil {
		h.clearCookie(w, handleCookie)
		h.internalErrorPage(w, r, err)
		return
	}
	reqlog.Set(ctx, "user_id", user.ID)
	if user.Disabled {
		h.clearCookie(w, handleCookie)
		h.denied(w, r, conn, user, "Your account has been disabled by the operator of this server.")
		return
	}

	// The user authenticated when the upstream says (OIDC auth_time),
	// which is earlier than now when it signed them in from its own
	// session. GitHub does not say, and a time ahead of our clock is not
	// believed: then now.
	authTime := now
	if at := ident.AuthTime; !at.IsZero() && !at.After(now) {
		authTime = at
	}
	if err := h.startSession(ctx, w, r, user.ID, authTime, now); err != nil {
		h.clearCookie(w, handleCookie)
		h.internalErrorPage(w, r, err)
		return
	}
	req.UserID = user.ID
	req.AuthTime = &authTime
	h.event(ctx, EventLogin, "upstream", conn.ID(), "user_id", user.ID, "client_id", req.ClientID)
	h.afterLogin(w, r, req, handleCookie)
}

// allowed asks the allowlist; without one nobody may sign in (deny by
// default).
func (h *Handler) allowed(providerType string, u store.User) (string, bool) {
	if h.Allowlist == nil {
		return "This server has no sign-in policy configured.", false
	}
	if err := h.Allowlist.Check(providerType, u); err != nil {
		return deniedReason(err), false
	}
	return "", true
}

// deniedReason is what the denied page says about an allowlist refusal:
// the policy's own reason (written to be shown), or a generic sentence for
// any other error, whose text may carry internals.
func deniedReason(err error) string {
	var d *allowlist.Denied
	if errors.As(err, &d) && d.Reason != "" {
		return d.Reason
	}
	return "Your account is not on this server's list of allowed users."
}

func (h *Handler) denied(w http.ResponseWriter, r *http.Request, conn upstream.Connector, u store.User, reason string) {
	who := u.Login
	if who == "" {
		who = u.Email
	}
	h.event(r.Context(), EventLoginDenied, "upstream", conn.ID(), "subject", u.Subject, "login", who, "reason", reason)
	msg := "You signed in"
	if who != "" {
		msg += " as " + who
	}
	msg += " with " + conn.DisplayName() + ", but you are not allowed to use this server."
	h.render(w, r, http.StatusForbidden, "error", "Access denied", errorData{Message: msg, Hint: reason})
}

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
	s, err := h.Store.GetSession(ctx, oauth.Digest(sid), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	u, err := h.Store.GetUser(ctx, s.UserID)
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

// afterLogin continues a request the callback consumed, now signed in:
// straight to the code when no consent is needed, else the request is
// stored again (with its user) for the consent page.
func (h *Handler) afterLogin(w http.ResponseWriter, r *http.Request, req store.AuthRequest, requestCookie string) {
	ctx := r.Context()
	if req.ClientID == "" { // the sign-in offered on /apps (appsLogin)
		h.clearCookie(w, requestCookie)
		redirect(w, r, h.path("/apps"))
		return
	}
	client, err := h.Store.GetClient(ctx, req.ClientID, h.now())
	if err != nil {
		h.clearCookie(w, requestCookie)
		h.clientGone(w, r, err)
		return
	}
	need, err := h.needsConsent(ctx, client, req)
	if err != nil {
		h.clearCookie(w, requestCookie)
		h.internalErrorPage(w, r, err)
		return
	}
	if !need {
		h.clearCookie(w, requestCookie)
		h.complete(w, r, client, req)
		return
	}
	if err := h.Store.CreateAuthRequest(ctx, req); err != nil {
		h.clearCookie(w, requestCookie)
		h.internalErrorPage(w, r, err)
		return
	}
	redirect(w, r, h.path("/consent?req="+requestHandle(req.IDDigest)))
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

// clientGone answers a pending request whose client disappeared or was
// disabled since /authorize: nothing may be sent to its redirect URI now.
func (h *Handler) clientGone(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.internalErrorPage(w, r, err)
		return
	}
	if msg, ok := unusableClient(err); ok {
		h.errorPage(w, r, http.StatusBadRequest, "Application not accepted", msg, err)
		return
	}
	h.errorPage(w, r, http.StatusBadRequest, "Unknown application",
		"The application that sent you here is no longer registered with this server. You were not redirected.", err)
}
