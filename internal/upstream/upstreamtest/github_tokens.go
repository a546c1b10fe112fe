package upstreamtest

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ghExpiring is the state of GitHub App user tokens: with a lifetime set,
// every access token expires and comes with a single-use refresh token
// (ghr_...), as GitHub Apps with "expire user authorization tokens" do.
type ghExpiring struct {
	now       func() time.Time
	life      time.Duration
	refresh   map[string]ghToken // refresh token → whose, what scopes
	refreshes int                // refresh_token grants answered with tokens
	refused   int                // refresh_token grants refused
	delay     time.Duration
}

// Refresh token lifetime GitHub announces (six months).
const ghRefreshLifetime = 15897600

// SetTokenLifetime makes access tokens issued from now on expire after d
// (GitHub Apps: 8 hours) and come with a single-use refresh token; 0 (the
// default) issues OAuth app tokens that never expire and have no refresh
// token.
func (g *GitHub) SetTokenLifetime(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exp.life = d
}

// SetClock sets the fake's clock for token expiry; nil: time.Now.
func (g *GitHub) SetClock(now func() time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exp.now = now
}

// SetRefreshDelay makes each refresh_token grant take d, so that callers
// racing to refresh really overlap.
func (g *GitHub) SetRefreshDelay(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exp.delay = d
}

// Refreshes counts refresh_token grants answered with new tokens, and
// Refused those answered bad_refresh_token.
func (g *GitHub) Refreshes() (ok, refused int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.exp.refreshes, g.exp.refused
}

// RevokeGrant ends every token of the user (login), as when they revoke
// the app at github.com/settings/applications: access tokens answer 401,
// refresh tokens bad_refresh_token.
func (g *GitHub) RevokeGrant(login string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := g.byLogin(login)
	if u == nil {
		return
	}
	for k, t := range g.tokens {
		if t.userID == u.ID {
			delete(g.tokens, k)
		}
	}
	for k, t := range g.exp.refresh {
		if t.userID == u.ID {
			delete(g.exp.refresh, k)
		}
	}
}

// SetMemberships replaces the user's (login) organizations and teams, as
// when an org owner removes or adds them; tokens stay valid.
func (g *GitHub) SetMemberships(login string, orgs []string, teams map[string][]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u := g.byLogin(login); u != nil {
		u.Orgs, u.Teams = slices.Clone(orgs), teams
	}
}

func (g *GitHub) now() time.Time {
	if g.exp.now != nil {
		return g.exp.now()
	}
	return time.Now()
}

// issue makes an access token (and, for expiring tokens, a refresh token)
// and the token response GitHub sends. g.mu is held.
func (g *GitHub) issue(userID int64, scopes []string) url.Values {
	t := ghToken{userID: userID, scopes: scopes}
	v := url.Values{"token_type": {"bearer"}, "scope": {strings.Join(scopes, ",")}}
	prefix := "gho_"
	if g.exp.life > 0 {
		prefix = "ghu_" // GitHub App user-to-server token
		t.expires = g.now().Add(g.exp.life)
		rt := "ghr_" + randomHex(30)
		if g.exp.refresh == nil {
			g.exp.refresh = map[string]ghToken{}
		}
		g.exp.refresh[rt] = ghToken{userID: userID, scopes: scopes}
		v.Set("expires_in", strconv.Itoa(int(g.exp.life/time.Second)))
		v.Set("refresh_token", rt)
		v.Set("refresh_token_expires_in", strconv.Itoa(ghRefreshLifetime))
	}
	at := prefix + randomHex(18)
	g.tokens[at] = t
	v.Set("access_token", at)
	return v
}

// refreshGrant answers grant_type=refresh_token: the refresh token is
// spent whatever happens next (single use); an unknown or spent one gets
// bad_refresh_token with HTTP 200, as at github.com. g.mu is held; it is
// released during the configured delay.
func (g *GitHub) refreshGrant(rt string, reply func(url.Values), fail func(code, desc string)) {
	t, ok := g.exp.refresh[rt]
	delete(g.exp.refresh, rt)
	if d := g.exp.delay; d > 0 {
		g.mu.Unlock()
		time.Sleep(d)
		g.mu.Lock()
	}
	if !ok || g.byID(t.userID) == nil {
		g.exp.refused++
		fail("bad_refresh_token", "The refresh token passed is incorrect or expired.")
		return
	}
	g.exp.refreshes++
	reply(g.issue(t.userID, t.scopes))
}
