package upstreamtest

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// oidcTokens is the fake OpenID Provider's token state: access tokens
// that expire (default one hour), single-use refresh tokens (issued for
// scope offline_access, or access_type=offline as at Google) that rotate
// at every refresh, and UserInfo answering with the user's claims as they
// are now (so that group changes show).
type oidcTokens struct {
	life      time.Duration
	access    map[string]oidcToken
	refresh   map[string]oidcToken
	refreshes int
	refused   int
}

type oidcToken struct {
	sub, clientID, scope string
	expires              time.Time
}

// SetTokenLifetime sets the lifetime of access tokens issued from now on
// (expires_in); 0 restores the default, one hour.
func (o *OIDC) SetTokenLifetime(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tok.life = d
}

// Refreshes counts refresh_token grants answered with tokens, and refused
// those answered invalid_grant.
func (o *OIDC) Refreshes() (ok, refused int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tok.refreshes, o.tok.refused
}

// RevokeGrant ends every access and refresh token of the user (subject),
// as when they revoke the application at the provider or an administrator
// ends their sessions.
func (o *OIDC) RevokeGrant(sub string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range []map[string]oidcToken{o.tok.access, o.tok.refresh} {
		for k, t := range m {
			if t.sub == sub {
				delete(m, k)
			}
		}
	}
}

// SetGroups replaces the user's (subject) groups, as a directory change
// does; tokens stay valid and UserInfo answers with the new groups.
func (o *OIDC) SetGroups(sub string, groups []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if u := o.find(sub); u != nil {
		u.Groups = slices.Clone(groups)
	}
}

// SetHostedDomain replaces the user's (subject) Google Workspace domain.
func (o *OIDC) SetHostedDomain(sub, hd string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if u := o.find(sub); u != nil {
		u.HostedDomain = hd
	}
}

// issue makes the tokens of a token response (without id_token). o.mu is
// held.
func (o *OIDC) issue(sub, clientID, scope string, offline bool) map[string]any {
	if o.tok.access == nil {
		o.tok.access, o.tok.refresh = map[string]oidcToken{}, map[string]oidcToken{}
	}
	life := o.tok.life
	if life <= 0 {
		life = time.Hour
	}
	t := oidcToken{sub: sub, clientID: clientID, scope: scope, expires: o.now().Add(life)}
	at := "at-" + randomHex(16)
	o.tok.access[at] = t
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(life / time.Second),
		"scope":        scope,
	}
	if offline || slices.Contains(strings.Fields(scope), "offline_access") {
		rt := "rt-" + randomHex(24)
		o.tok.refresh[rt] = t
		resp["refresh_token"] = rt
	}
	return resp
}

// refreshGrant answers grant_type=refresh_token (RFC 6749 §6): the
// refresh token is single-use and rotates; an unknown, spent or revoked
// one, or another client's, gets invalid_grant. o.mu is held.
func (o *OIDC) refreshGrant(w http.ResponseWriter, rt, clientID string) {
	t, ok := o.tok.refresh[rt]
	delete(o.tok.refresh, rt)
	if !ok || t.clientID != clientID || o.find(t.sub) == nil {
		o.tok.refused++
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "refresh token is invalid, expired or revoked"})
		return
	}
	o.tok.refreshes++
	writeJSON(w, http.StatusOK, o.issue(t.sub, clientID, t.scope, true))
}

// userinfo is OpenID Connect Core §5.3: the claims of the access token's
// user as they are now.
func (o *OIDC) userinfo(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	scheme, at, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	t, ok := o.tok.access[at]
	u := o.find(t.sub)
	if !ok || u == nil || !strings.EqualFold(scheme, "bearer") || !o.now().Before(t.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	claims := map[string]any{"sub": u.Subject, "email_verified": u.EmailVerified}
	for k, v := range map[string]string{"email": u.Email, "name": u.Name, "preferred_username": u.PreferredUsername, "hd": u.HostedDomain} {
		if v != "" {
			claims[k] = v
		}
	}
	if u.Groups != nil {
		claims["groups"] = u.Groups
	}
	for k, v := range u.Claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	writeJSON(w, http.StatusOK, claims)
}
