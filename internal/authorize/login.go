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
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, t target, p store.AuthRequest, idpHint string) error {
	ctx := r.Context()
	if len(h.Connectors) == 0 {
		return t.fail(oauth.ServerError(errors.New("no upstream identity provider configured")))
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
			return errUpstreamUnavailable(err)
		}
		next = u
	}
	if err := h.storeRequest(ctx, w, rid, p); errors.Is(err, store.ErrNotFound) {
		return clientGone(err) // deleted since it was read (another replica)
	} else if err != nil {
		return t.fail(err)
	}
	redirect(w, r, next)
	return nil
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
	opts.Scopes = h.upstreamScopes(conn.ID(), p.Resources)
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

type choice struct {
	Name string
	URL  string
}

// login serves GET /login: the chooser of upstream identity providers, and
// (with idp=ID) the redirect to the chosen one. Choices are links, not a
// form: a form submission that redirects to the provider would be stopped
// by CSP form-action in some browsers, and starting a sign-in changes
// nothing an attacker could use (the request stays bound to this browser).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	handle := r.URL.Query().Get("req")
	req, rid, err := h.pendingRequest(r, handle)
	if err != nil {
		return err
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
		return nil
	}
	u, err := h.prepareUpstream(ctx, &req, rid, conn)
	if err != nil {
		return errUpstreamUnavailable(err)
	}
	if err := h.Store.UpdateAuthRequest(ctx, req); err != nil {
		return err
	}
	redirect(w, r, u)
	return nil
}

// callback serves GET /callback/{provider}: the upstream's answer. The
// state finds the pending request, which must belong to this browser and
// be waiting for this provider; it is consumed before the code exchange so
// that a replayed callback finds nothing. Failures create nothing and are
// pages, except the user's decline at the provider, which the client is
// told (upstreamFailed).
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := h.now()
	provider := chi.URLParam(r, "provider")
	logProvider := provider // the path is the caller's: log only known ids
	if h.connector(provider) == nil {
		logProvider = "unknown"
	}
	failed := func(msg string) error {
		h.event(ctx, EventLoginFailed, "upstream", logProvider, "reason", msg)
		return pageError(http.StatusBadRequest, "Sign-in failed", msg)
	}

	state := r.URL.Query().Get("state")
	if state == "" {
		return failed("The identity provider's answer is incomplete. Return to the application and start again.")
	}
	stateDigest := oauth.Digest(state)
	req, err := h.Store.GetAuthRequestByUpstreamState(ctx, stateDigest, now)
	if errors.Is(err, store.ErrNotFound) {
		return failed("This sign-in has expired or was already completed. Return to the application and start again.")
	}
	if err != nil {
		return err
	}
	reqlog.Set(ctx, "client_id", req.ClientID)
	rid := h.requestIDFromCookie(r, req.IDDigest)
	if rid == "" {
		// Another browser (a stolen or forwarded callback URL, or login
		// CSRF): leave the request alone for its rightful browser.
		return failed("This sign-in was started in a different browser, or your browser blocked cookies. Return to the application and start again in this browser.")
	}
	conn := h.connector(provider)
	if conn == nil || req.Upstream != provider {
		return failed("The answer came from a different identity provider than the one you chose. Return to the application and start again.")
	}
	req, err = h.Store.ConsumeAuthRequest(ctx, req.IDDigest, now)
	if errors.Is(err, store.ErrNotFound) {
		return failed("This sign-in was already completed. Return to the application and start again.")
	}
	if err != nil {
		return err
	}
	handleCookie := h.requestCookieName(requestHandle(req.IDDigest))
	if !oauth.ConstantTimeEqual(req.UpstreamStateDigest, stateDigest) {
		// The user started another upstream sign-in for this request
		// (back button) between our read and the consume: put it back
		// for the newer one.
		if err := h.Store.CreateAuthRequest(ctx, req); err != nil {
			return err
		}
		return failed("This sign-in was replaced by a newer one. Finish the newest sign-in window, or return to the application and start again.")
	}
	req.UpstreamStateDigest = ""

	// From here the request is consumed: every failure ends it, and its
	// cookie with it.
	ident, err := conn.HandleCallback(ctx, r, loginOptions(rid, state, req))
	if err != nil {
		h.clearCookie(w, handleCookie)
		return h.upstreamFailed(r, provider, req, err)
	}
	userID, authTime, err := h.signIn(w, r, conn, ident, now)
	if err != nil {
		h.clearCookie(w, handleCookie)
		return err
	}
	req.UserID = userID
	req.AuthTime = &authTime
	h.event(ctx, EventLogin, "upstream", conn.ID(), "user_id", userID, "client_id", req.ClientID)
	return h.afterLogin(w, r, req, handleCookie)
}

// upstreamFailed is the answer to the upstream's refusal or failure (err
// from HandleCallback) for the consumed request req.
func (h *Handler) upstreamFailed(r *http.Request, provider string, req store.AuthRequest, err error) error {
	ctx := r.Context()
	var ue *upstream.Error
	switch {
	case errors.As(err, &ue) && ue.Code == upstream.CodeAccessDenied && r.URL.Query().Get("error") == upstream.CodeAccessDenied:
		// The user declined at the provider: the client and its
		// redirect URI were confirmed at /authorize, so tell the
		// client, as RFC 6749 §4.1.2.1 does for a declined request.
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", "declined")
		if req.ClientID == "" { // the sign-in offered on /apps: no client to tell
			return pageError(http.StatusForbidden, "Sign-in cancelled", "You declined to sign in.").withCause(err)
		}
		// The client as it is now: it may have withdrawn the
		// redirect URI, or gone, while the user was away.
		client, cerr := h.Store.GetClient(ctx, req.ClientID, h.now())
		if cerr != nil {
			return clientGone(cerr)
		}
		return targetOf(client, req).fail(oauth.AccessDenied("the user declined to sign in at the identity provider").WithCause(err))
	case errors.As(err, &ue) && ue.Code == upstream.CodeAccessDenied:
		// The connector refused the account (e.g. another Workspace
		// domain): the user must learn why.
		h.event(ctx, EventLoginDenied, "upstream", provider, "reason", ue.Code)
		return pageError(http.StatusForbidden, "Access denied", ue.Message).withCause(err)
	case errors.As(err, &ue) && ue.Code == upstream.CodeUnavailable:
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", ue.Code)
		return errUpstreamUnavailable(err)
	case errors.As(err, &ue):
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", ue.Code)
		return pageError(http.StatusBadGateway, "Sign-in failed",
			ue.Message+" Return to the application and start again.").withCause(err)
	default:
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", "error")
		return pageError(http.StatusBadGateway, "Sign-in failed",
			"The identity provider's answer could not be used. Return to the application and start again.").withCause(err)
	}
}

// signIn turns the upstream's identity into a user of authd, if the
// allowlist admits it, and starts the browser's session. It returns the
// user's id and when they authenticated.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, conn upstream.Connector, ident upstream.Identity, now time.Time) (string, time.Time, error) {
	ctx := r.Context()
	if ident.Subject == "" {
		// The provider's fault, not authd's: a 502 page, not a 500.
		return "", time.Time{}, pageError(http.StatusBadGateway, "Sign-in failed",
			"The identity provider did not say who you are. Return to the application and start again.")
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
		return "", time.Time{}, h.denied(ctx, conn, u, reason)
	}
	user, err := h.Store.UpsertUser(ctx, u)
	if err != nil {
		return "", time.Time{}, err
	}
	reqlog.Set(ctx, "user_id", user.ID)
	if user.Disabled {
		return "", time.Time{}, h.denied(ctx, conn, user, "Your account has been disabled by the operator of this server.")
	}

	// store_tokens: keep the upstream grant before the session exists,
	// so that no sign-in completes whose grant the MCP servers it was
	// for cannot get.
	if h.UpstreamGrants != nil {
		if err := h.UpstreamGrants.Keep(ctx, user.ID, conn.ID(), ident.Grant); err != nil {
			return "", time.Time{}, err
		}
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
		return "", time.Time{}, err
	}
	return user.ID, authTime, nil
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

// denied records a sign-in the allowlist or the operator refused and
// returns the page that tells the user why.
func (h *Handler) denied(ctx context.Context, conn upstream.Connector, u store.User, reason string) error {
	who := u.Login
	if who == "" {
		who = u.Email
	}
	h.event(ctx, EventLoginDenied, "upstream", conn.ID(), "subject", u.Subject, "login", who, "reason", reason)
	msg := "You signed in"
	if who != "" {
		msg += " as " + who
	}
	msg += " with " + conn.DisplayName() + ", but you are not allowed to use this server."
	return pageError(http.StatusForbidden, "Access denied", msg).withHint(reason)
}

// afterLogin continues a request the callback consumed, now signed in:
// straight to the code when no consent is needed, else the request is
// stored again (with its user) for the consent page.
func (h *Handler) afterLogin(w http.ResponseWriter, r *http.Request, req store.AuthRequest, requestCookie string) error {
	ctx := r.Context()
	if req.ClientID == "" { // the sign-in offered on /apps (appsLogin)
		h.clearCookie(w, requestCookie)
		redirect(w, r, h.path("/apps"))
		return nil
	}
	client, err := h.Store.GetClient(ctx, req.ClientID, h.now())
	if err != nil {
		h.clearCookie(w, requestCookie)
		return clientGone(err)
	}
	need, err := h.needsConsent(ctx, client, req)
	if err != nil {
		h.clearCookie(w, requestCookie)
		return err
	}
	if !need {
		h.clearCookie(w, requestCookie)
		return h.complete(w, r, client, req)
	}
	if err := h.Store.CreateAuthRequest(ctx, req); err != nil {
		h.clearCookie(w, requestCookie)
		return err
	}
	redirect(w, r, h.path("/consent?req="+requestHandle(req.IDDigest)))
	return nil
}
