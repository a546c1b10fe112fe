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
	if conn.Type() == upstream.TypeDev && p.ClientID != "" { // "": the sign-in offered on /apps
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
// be waiting for this provider. Before the upstream is asked anything (its
// one-time code exchanged), one conditional write claims the request for
// this answer (ClaimAuthRequest): it matches only while the request still
// waits for this very answer, and makes it wait for none. So of two
// callbacks for one request (a reload, the back button, a double submit)
// exactly one presents the upstream's code and signs in, and a replayed
// callback finds nothing: the upstream sees each code once (RFC 6749
// §4.1.2 lets it revoke what a reused code issued). Once the upstream
// answered and the user is admitted, a second conditional write settles
// the claimed request (SettleAuthRequest): signed in for the consent page,
// or deleted when the code follows at once; it matches only while the
// request is as this callback's claim left it (store.ClaimedState of its
// state), so a callback whose request the user sent to a newer upstream
// sign-in meanwhile, claimed by that sign-in's callback or not, signs
// nobody in and ends nothing. Every
// failure after the claim ends the request. Failures are pages, except the
// user's decline at the provider, which the client is told once
// (upstreamFailed).
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
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
	req, err := h.Store.GetAuthRequestByUpstreamState(ctx, stateDigest, h.now())
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
	handleCookie := h.requestCookieName(requestHandle(req.IDDigest))
	notWaiting := func(cur store.AuthRequest, err error) error {
		return h.notWaiting(ctx, logProvider, stateDigest, cur, err)
	}

	// The claim, before the upstream sees the answer's code: from here the
	// answer is this callback's alone, and every failure ends the request.
	if cur, err := h.Store.ClaimAuthRequest(ctx, req.IDDigest, stateDigest, h.now()); errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return notWaiting(cur, err)
	} else if err != nil {
		return err
	}
	ident, err := conn.HandleCallback(ctx, r, loginOptions(rid, state, req))
	if err != nil {
		return h.upstreamFailed(w, r, provider, stateDigest, req, err)
	}
	now := h.now() // the upstream took its time
	user, err := h.admit(ctx, conn, ident, now)
	if err != nil {
		_, _ = h.endClaimed(ctx, w, req.IDDigest, stateDigest) // the refusal is the answer
		return err
	}
	authTime := authTimeOf(ident, now)

	// Whether the consent page follows decides how the request is
	// settled: kept with its user for that page, or deleted now.
	var client store.Client
	consent := false
	if req.ClientID != "" { // "": the sign-in offered on /apps (appsLogin)
		client, err = h.Store.GetClient(ctx, req.ClientID, now)
		if err == nil {
			signedIn := req
			signedIn.UserID = user.ID
			consent, err = h.needsConsent(ctx, client, signedIn)
		}
		if err != nil {
			cur, endErr := h.endClaimed(ctx, w, req.IDDigest, stateDigest)
			if errors.Is(endErr, store.ErrNotFound) || errors.Is(endErr, store.ErrConflict) {
				return notWaiting(cur, endErr) // e.g. the client's deletion took its requests along
			}
			return clientGone(err)
		}
	}
	var signIn *store.SignIn
	if consent {
		signIn = &store.SignIn{UserID: user.ID, AuthTime: authTime}
	}
	settled, err := h.Store.SettleAuthRequest(ctx, req.IDDigest, stateDigest, h.now(), signIn)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return notWaiting(settled, err) // expired, or a newer upstream sign-in took it over
	}
	if err != nil {
		_, _ = h.endClaimed(ctx, w, req.IDDigest, stateDigest)
		return err
	}
	req = settled
	req.UserID, req.AuthTime = user.ID, &authTime

	// The request is settled: a failure now ends it, signed in or not
	// (the code path deleted it already), and its cookie with it.
	if err := h.startSignedIn(ctx, w, r, conn, user.ID, ident.Grant, authTime, h.now()); err != nil {
		h.clearCookie(w, handleCookie)
		if consent {
			// Not after the request's budget or cancellation: a request
			// left signed in without its session must not wait for expiry.
			if _, err := h.Store.ConsumeAuthRequest(context.WithoutCancel(ctx), req.IDDigest, h.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
				h.log().WarnContext(ctx, "could not end a signed-in request after a failed sign-in", "error", err.Error())
			}
		}
		return err
	}
	h.event(ctx, EventLogin, "upstream", conn.ID(), "user_id", user.ID, "client_id", req.ClientID)
	return h.afterLogin(w, r, client, req, consent, handleCookie)
}

// notWaiting answers a callback whose claim or settle (ClaimAuthRequest,
// SettleAuthRequest: err ErrNotFound or ErrConflict with the request as it
// is, cur) found the request no longer waiting for its answer: gone
// (expired, completed, its client deleted), claimed by another callback,
// or waiting for a newer upstream sign-in.
func (h *Handler) notWaiting(ctx context.Context, provider, stateDigest string, cur store.AuthRequest, err error) error {
	msg := "This sign-in has expired or was already completed. Return to the application and start again."
	// Waiting for, or claimed by, another answer than this one (a claim
	// of this answer is a twin of this callback: a reload, a double submit).
	if errors.Is(err, store.ErrConflict) && cur.UpstreamStateDigest != "" && cur.UpstreamStateDigest != store.ClaimedState(stateDigest) {
		msg = "This sign-in was replaced by a newer one. Finish the newest sign-in window, or return to the application and start again."
	}
	h.event(ctx, EventLoginFailed, "upstream", provider, "reason", msg)
	return pageError(http.StatusBadRequest, "Sign-in failed", msg)
}

// endClaimed ends a pending request this callback claimed, as a failed
// sign-in always does: only while it is as the claim left it
// (SettleAuthRequest without a sign-in), so that it never ends a newer
// upstream sign-in the user started meanwhile. Not after the request's
// budget or cancellation: a claimed request waits for nothing and would
// only expire. The request's cookie goes with it, unless the newer sign-in
// still needs it. It returns the settle's result.
func (h *Handler) endClaimed(ctx context.Context, w http.ResponseWriter, idDigest, stateDigest string) (store.AuthRequest, error) {
	cur, err := h.Store.SettleAuthRequest(context.WithoutCancel(ctx), idDigest, stateDigest, h.now(), nil)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		h.clearCookie(w, h.requestCookieName(requestHandle(idDigest)))
	}
	return cur, err
}

// upstreamFailed is the answer to the upstream's refusal or failure (err
// from HandleCallback) for the pending request req, which this callback
// claimed. Every failure ends the request: the answer's code may have been
// presented to the upstream, which must not see it again, and no other
// callback can use the answer (the claim was this one's).
func (h *Handler) upstreamFailed(w http.ResponseWriter, r *http.Request, provider, stateDigest string, req store.AuthRequest, err error) error {
	ctx := r.Context()
	var ue *upstream.Error
	switch {
	case errors.As(err, &ue) && ue.Code == upstream.CodeAccessDenied && r.URL.Query().Get("error") == upstream.CodeAccessDenied:
		// The user declined at the provider: the client and its
		// redirect URI were confirmed at /authorize, so tell the
		// client, as RFC 6749 §4.1.2.1 does for a declined request,
		// once: only the callback that claimed and ended the request
		// tells it (a reloaded decline finds nothing to claim).
		if cur, endErr := h.endClaimed(ctx, w, req.IDDigest, stateDigest); errors.Is(endErr, store.ErrNotFound) || errors.Is(endErr, store.ErrConflict) {
			return h.notWaiting(ctx, provider, stateDigest, cur, endErr)
		} else if endErr != nil {
			// The claim already made the request unusable (it expires
			// unanswered): the client is still told of the decline.
			h.log().WarnContext(ctx, "could not end a declined sign-in's request", "error", endErr.Error())
		}
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
		_, _ = h.endClaimed(ctx, w, req.IDDigest, stateDigest) // the refusal is the answer
		h.event(ctx, EventLoginDenied, "upstream", provider, "reason", ue.Code)
		return pageError(http.StatusForbidden, "Access denied", ue.Message).withCause(err)
	case errors.As(err, &ue) && ue.Code == upstream.CodeUnavailable:
		_, _ = h.endClaimed(ctx, w, req.IDDigest, stateDigest) // the outage is the answer
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", ue.Code)
		return errUpstreamUnavailable(err)
	case errors.As(err, &ue):
		_, _ = h.endClaimed(ctx, w, req.IDDigest, stateDigest) // the answer is spent
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", ue.Code)
		return pageError(http.StatusBadGateway, "Sign-in failed",
			ue.Message+" Return to the application and start again.").withCause(err)
	default:
		_, _ = h.endClaimed(ctx, w, req.IDDigest, stateDigest) // the answer is spent
		h.event(ctx, EventLoginFailed, "upstream", provider, "reason", "error")
		return pageError(http.StatusBadGateway, "Sign-in failed",
			"The identity provider's answer could not be used. Return to the application and start again.").withCause(err)
	}
}

// admit turns the upstream's identity into a user of authd, if the
// allowlist admits it and the operator has not disabled them.
func (h *Handler) admit(ctx context.Context, conn upstream.Connector, ident upstream.Identity, now time.Time) (store.User, error) {
	if ident.Subject == "" {
		// The provider's fault, not authd's: a 502 page, not a 500.
		return store.User{}, pageError(http.StatusBadGateway, "Sign-in failed",
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
		return store.User{}, h.denied(ctx, conn, u, reason)
	}
	user, err := h.Store.UpsertUser(ctx, u)
	if err != nil {
		return store.User{}, err
	}
	reqlog.Set(ctx, "user_id", user.ID)
	if user.Disabled {
		return store.User{}, h.denied(ctx, conn, user, "Your account has been disabled by the operator of this server.")
	}
	return user, nil
}

// authTimeOf is when the user authenticated: when the upstream says (OIDC
// auth_time), which is earlier than now when it signed them in from its
// own session. GitHub does not say, and a time ahead of our clock is not
// believed: then now.
func authTimeOf(ident upstream.Identity, now time.Time) time.Time {
	if at := ident.AuthTime; !at.IsZero() && !at.After(now) {
		return at
	}
	return now
}

// startSignedIn signs the browser in as userID, who just authenticated at
// conn: the upstream grant is kept (store_tokens) before the session
// exists, so that no sign-in completes whose grant the MCP servers it was
// for cannot get.
func (h *Handler) startSignedIn(ctx context.Context, w http.ResponseWriter, r *http.Request, conn upstream.Connector, userID string, grant *upstream.Grant, authTime, now time.Time) error {
	if h.UpstreamGrants != nil {
		if err := h.UpstreamGrants.Keep(ctx, userID, conn.ID(), grant); err != nil {
			return err
		}
	}
	return h.startSession(ctx, w, r, userID, authTime, now)
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

// afterLogin continues a request the callback settled, now signed in:
// straight to the code when no consent is needed (the settle deleted it),
// else to the consent page (the settle kept it with its user). client is
// the request's, read before the settle.
func (h *Handler) afterLogin(w http.ResponseWriter, r *http.Request, client store.Client, req store.AuthRequest, consent bool, requestCookie string) error {
	if req.ClientID == "" { // the sign-in offered on /apps (appsLogin)
		h.clearCookie(w, requestCookie)
		redirect(w, r, h.path("/apps"))
		return nil
	}
	if !consent {
		h.clearCookie(w, requestCookie)
		return h.complete(w, r, client, req)
	}
	redirect(w, r, h.path("/consent?req="+requestHandle(req.IDDigest)))
	return nil
}
