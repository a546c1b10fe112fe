package authorize

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
	"github.com/authd/authd/internal/store"
)

type appEntry struct {
	ClientID      string
	Name          string
	Verified      string // shown as "✔ ..."; empty: unverified
	RedirectHosts []string
	Resources     []string
	Scopes        []string
	LastUsed      time.Time
}

// apps serves GET /apps: the applications the signed-in user approved, and
// any other application holding a live grant of theirs (first-party
// clients that skip consent), so that every one can be revoked here.
func (h *Handler) apps(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := h.now()
	user, sid, ok, err := h.signedIn(r)
	if err != nil {
		return err
	}
	if !ok {
		h.notSignedIn(w, r)
		return nil
	}
	consents, err := h.Store.ListConsents(ctx, user.ID)
	if err != nil {
		return err
	}
	grants, err := h.Store.ListGrants(ctx, user.ID)
	if err != nil {
		return err
	}
	type access struct {
		scopes, resources []string
		consented         bool
		lastUsed          time.Time
	}
	byClient := map[string]*access{}
	for _, c := range consents {
		byClient[c.ClientID] = &access{scopes: c.Scopes, resources: c.Resources, consented: true}
	}
	for _, g := range grants {
		if g.RevokedAt != nil || !g.ExpiresAt.After(now) {
			continue // an ended grant lists no app by itself
		}
		a := byClient[g.ClientID]
		if a == nil {
			a = &access{}
			byClient[g.ClientID] = a
		}
		if !a.consented {
			a.scopes, a.resources = oauth.Union(a.scopes, g.Scopes), oauth.Union(a.resources, g.Resources)
		}
	}
	// Last used counts every grant of a listed app, ended ones too: an app
	// whose grant was revoked or expired was still used, not "never".
	for _, g := range grants {
		if a := byClient[g.ClientID]; a != nil && g.LastUsedAt.After(a.lastUsed) {
			a.lastUsed = g.LastUsedAt
		}
	}

	var entries []appEntry
	for clientID, a := range byClient {
		client, err := h.Store.GetClient(ctx, clientID, now)
		if _, unusable := unusableClient(err); unusable {
			// A metadata-document client whose document cannot be used
			// right now still holds this user's grants: list it by its id
			// (not as verified) so that it can be revoked.
			client, err = store.Client{ID: clientID}, nil
		}
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted or expired, and with it everything it held
		}
		if err != nil {
			return err
		}
		e := appEntry{ClientID: client.ID, Name: clientName(client), LastUsed: a.lastUsed}
		switch verification(client) {
		case "config":
			e.Verified = "Registered by the operator of this server"
		case "metadata":
			e.Verified = "Published by " + metadataHost(client)
		}
		for _, ru := range client.Metadata.RedirectURIs {
			if host, _ := redirectHost(ru); !slices.Contains(e.RedirectHosts, host) {
				e.RedirectHosts = append(e.RedirectHosts, host)
			}
		}
		for _, uri := range a.resources {
			if res, ok := h.resource(uri); ok && res.Name != "" {
				uri = res.Name + " (" + uri + ")"
			}
			e.Resources = append(e.Resources, uri)
		}
		for _, s := range a.scopes {
			if d := h.scopeDescription(s); d != "" {
				s = d + " (" + s + ")"
			}
			e.Scopes = append(e.Scopes, s)
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b appEntry) int {
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
	accounts, err := h.upstreamAccounts(r, user.ID)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "apps", "Connected apps", struct {
		UserName string
		Apps     []appEntry
		Accounts []upstreamAccount
		CSRF     string
		Base     string
	}{displayName(user), entries, accounts, sessionCSRF(sid), h.basePath()})
	return nil
}

// upstreamAccount is an upstream grant authd keeps for the user
// (store_tokens), as /apps shows it: never a token.
type upstreamAccount struct {
	Upstream string // id, posted back to disconnect
	Name     string // the upstream's display name
	Scopes   []string
	Since    time.Time
	Dead     bool
}

func (h *Handler) upstreamAccounts(r *http.Request, userID string) ([]upstreamAccount, error) {
	if h.UpstreamGrants == nil {
		return nil, nil
	}
	conns, err := h.UpstreamGrants.Connections(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	var out []upstreamAccount
	for _, c := range conns {
		a := upstreamAccount{Upstream: c.Upstream, Name: c.Upstream, Scopes: c.Scopes, Since: c.Since, Dead: c.Dead}
		if conn := h.connector(c.Upstream); conn != nil {
			a.Name = conn.DisplayName()
		}
		out = append(out, a)
	}
	return out, nil
}

// disconnectUpstream serves POST /apps/disconnect: authd forgets the
// user's kept grant at one upstream (its tokens are deleted), so no MCP
// server can get it any more. The grant at the upstream itself stays
// until the user revokes it there.
func (h *Handler) disconnectUpstream(w http.ResponseWriter, r *http.Request) error {
	user, _, signedOut, err := h.sessionForm(w, r)
	if signedOut {
		return pageError(http.StatusForbidden, "Not signed in",
			"You are not signed in, so there is nothing to disconnect here. Sign in through an application first.")
	}
	if err != nil {
		return err
	}
	id := r.PostForm.Get("upstream")
	if id == "" || h.UpstreamGrants == nil {
		return pageError(http.StatusBadRequest, "Invalid form", "No account was named.")
	}
	if err := h.UpstreamGrants.Disconnect(r.Context(), user.ID, id); err != nil {
		return err
	}
	redirect(w, r, h.path("/apps"))
	return nil
}

// revokeApp serves POST /apps/revoke: withdraws the consent for one client
// and revokes the user's grants for it (and with them every refresh and
// access token derived from them).
func (h *Handler) revokeApp(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user, _, signedOut, err := h.sessionForm(w, r)
	if signedOut {
		return pageError(http.StatusForbidden, "Not signed in",
			"You are not signed in, so there is nothing to revoke here. Sign in on the connected apps page first.")
	}
	if err != nil {
		return err
	}
	clientID := r.PostForm.Get("client_id")
	if clientID == "" {
		return pageError(http.StatusBadRequest, "Invalid form", "No application was named.")
	}
	err = h.Store.DeleteConsent(ctx, user.ID, clientID, h.now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	h.event(ctx, EventAppRevoked, "client_id", clientID, "user_id", user.ID)
	redirect(w, r, h.path("/apps"))
	return nil
}

// logout serves POST /logout: ends the browser's session and answers 303
// to /apps, which then says so.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	_, sid, signedOut, err := h.sessionForm(w, r)
	if signedOut {
		redirect(w, r, h.path("/apps")) // nothing to end
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.Store.DeleteSession(r.Context(), oauth.Digest(sid)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	h.clearCookie(w, h.cookieName(sessionCookie))
	redirect(w, r, h.path("/apps"))
	return nil
}

// signedIn returns the browser's signed-in user and session id; ok is
// false when there is none (and when err is set).
func (h *Handler) signedIn(r *http.Request) (store.User, string, bool, error) {
	ctx := r.Context()
	sess, sid, err := h.currentSession(ctx, r, h.now())
	if err != nil || sess == nil {
		return store.User{}, "", false, err
	}
	reqlog.Set(ctx, "user_id", sess.User.ID)
	return sess.User, sid, true, nil
}

// notSignedIn is /apps without a session: it offers a sign-in at each
// upstream, which returns here (appsLogin). 200, not 401: there is no HTTP
// authentication scheme to offer (RFC 9110 §15.5.2 requires
// WWW-Authenticate with a 401).
func (h *Handler) notSignedIn(w http.ResponseWriter, r *http.Request) {
	choices := make([]choice, 0, len(h.Connectors))
	for _, c := range h.Connectors {
		choices = append(choices, choice{Name: c.DisplayName(), URL: h.path("/apps/login?" + url.Values{"idp": {c.ID()}}.Encode())})
	}
	h.render(w, r, http.StatusOK, "signin", "Not signed in", struct {
		Message string
		Choices []choice
	}{"You are not signed in. Sign in to see the applications you have allowed to use your account, and to revoke them.", choices})
}

// appsLogin serves GET /apps/login?idp=ID: a sign-in no client asked for,
// which returns to /apps. It is a pending request without client, bound to
// this browser by its cookie like any other (so a callback URL sent to
// someone else signs nobody in); the callback sees no client and sends the
// browser back here instead of to a consent page.
func (h *Handler) appsLogin(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	conn := h.connector(r.URL.Query().Get("idp"))
	if conn == nil && len(h.Connectors) == 1 {
		conn = h.Connectors[0]
	}
	if conn == nil {
		redirect(w, r, h.path("/apps")) // the page lists the choices
		return nil
	}
	now := h.now()
	rid := oauth.NewToken(oauth.PrefixRequest)
	p := store.AuthRequest{CreatedAt: now, ExpiresAt: now.Add(h.requestLifetime())}
	u, err := h.prepareUpstream(ctx, &p, rid, conn)
	if err != nil {
		return errUpstreamUnavailable(err)
	}
	if err := h.storeRequest(ctx, w, rid, p); err != nil {
		return err
	}
	redirect(w, r, u)
	return nil
}

// sessionForm reads a POSTed form of the signed-in user and checks its
// CSRF token, which is bound to the session. signedOut is true (and err
// nil) when the browser has no session.
func (h *Handler) sessionForm(w http.ResponseWriter, r *http.Request) (user store.User, sid string, signedOut bool, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return store.User{}, "", false, pageError(http.StatusBadRequest, "Invalid form", "The form could not be read.")
	}
	if oauth.CheckParams(r.PostForm) != nil {
		return store.User{}, "", false, pageError(http.StatusBadRequest, "Invalid form", "The form contains text that is not valid UTF-8.")
	}
	user, sid, ok, err := h.signedIn(r)
	if err != nil {
		return store.User{}, "", false, err
	}
	if !ok {
		return store.User{}, "", true, nil
	}
	if !oauth.ConstantTimeEqual(r.PostForm.Get("csrf"), sessionCSRF(sid)) {
		return store.User{}, "", false, pageError(http.StatusForbidden, "Request refused",
			"The form's security token is missing or wrong. Go back, reload the page and try again.")
	}
	return user, sid, false, nil
}

// clientName is the name to show: the registered name, else the id.
func clientName(c store.Client) string {
	if c.Metadata.ClientName != "" {
		return c.Metadata.ClientName
	}
	return c.ID
}

// verification says how far the client's identity is known: "config"
// (registered by the operator), "metadata" (a client ID metadata document
// fetched from an https URL, so the host vouches for it) or "dynamic"
// (self-asserted at dynamic registration: unverified).
func verification(c store.Client) string {
	switch c.Source {
	case store.SourceConfig:
		return "config"
	case store.SourceMetadata:
		if metadataHost(c) != "" {
			return "metadata"
		}
	}
	return "dynamic"
}

// metadataHost is the host of a metadata-document client's id (an https
// URL), or "".
func metadataHost(c store.Client) string {
	if c.Source != store.SourceMetadata {
		return ""
	}
	u, err := url.Parse(c.ID)
	if err != nil || u.Scheme != "https" {
		return ""
	}
	return u.Host
}

// redirectHost is what the consent page shows of a redirect URI: the host
// (with port) for http and https, scheme://host for private-use schemes;
// loopback reports an http(s) loopback host.
func redirectHost(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil {
		return uri, false
	}
	switch u.Scheme {
	case "http", "https":
		return u.Host, oauth.IsLoopbackHost(u.Hostname())
	}
	if u.Host != "" {
		return u.Scheme + "://" + u.Host, false
	}
	return u.Scheme + ":", false
}

func displayName(u store.User) string {
	switch {
	case u.Login != "":
		return u.Login
	case u.Email != "":
		return u.Email
	case u.Name != "":
		return u.Name
	}
	return u.Subject
}
