package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
)

// maxPages bounds Link-header pagination; at 100 per page it allows 2,000
// orgs or teams, far beyond any real account.
const maxPages = 20

// githubConnector signs users in with a GitHub (or GitHub Enterprise)
// OAuth app: authorization code with PKCE, then the REST API for the
// user, the verified primary email and, when asked, org and team
// memberships.
type githubConnector struct {
	cfg     Config
	oauth   oauth2.Config
	hc      *http.Client // API calls
	tokenHC *http.Client // token exchange: asks for JSON
}

func newGitHub(c Config, hc *http.Client) *githubConnector {
	return &githubConnector{
		cfg: c,
		oauth: oauth2.Config{
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			RedirectURL:  c.RedirectURL,
			Scopes:       c.Scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL:  c.GitHub.BaseURL + "/login/oauth/authorize",
				TokenURL: c.GitHub.BaseURL + "/login/oauth/access_token",
				// GitHub takes the client credentials in the form; an
				// explicit style avoids x/oauth2 retrying on failure.
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		hc: hc,
		// Without this header GitHub answers form-encoded.
		tokenHC: withHeader(hc, "Accept", "application/json"),
	}
}

func (c *githubConnector) ID() string          { return c.cfg.ID }
func (c *githubConnector) Type() string        { return TypeGitHub }
func (c *githubConnector) DisplayName() string { return c.cfg.Name }

// AuthCodeURL ignores the nonce and max_age (GitHub OAuth apps are not
// OpenID Connect: no max_age, no auth_time); the login hint becomes
// GitHub's "login" parameter, which only suggests the account on the
// sign-in form. ForceLogin sends prompt=select_account, GitHub's only
// prompt: the account chooser instead of a silent sign-in. GitHub has no
// way to demand the password again, so for GitHub a forced login means
// the account chooser, which is the most it offers.
func (c *githubConnector) AuthCodeURL(state string, o LoginOptions) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(o.Verifier)}
	if len(o.Scopes) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("scope", strings.Join(withScopes(c.oauth.Scopes, o.Scopes), " ")))
	}
	if o.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login", o.LoginHint))
	}
	if o.ForceLogin {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "select_account"))
	}
	return c.oauth.AuthCodeURL(state, opts...)
}

type githubUser struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

type githubEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

type githubOrg struct {
	Login string `json:"login"`
}

type githubTeam struct {
	Slug         string    `json:"slug"`
	Organization githubOrg `json:"organization"`
}

// HandleCallback leaves Identity.AuthTime zero: GitHub does not say when
// the user signed in.
func (c *githubConnector) HandleCallback(ctx context.Context, r *http.Request, o LoginOptions) (Identity, error) {
	code, err := callbackCode(r, c.cfg.Name)
	if err != nil {
		return Identity{}, err
	}
	if o.Verifier == "" {
		return Identity{}, errors.New("upstream: HandleCallback needs the PKCE verifier")
	}
	ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
	defer cancel()

	tok, err := c.oauth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, c.tokenHC), code, oauth2.VerifierOption(o.Verifier))
	if err != nil {
		return Identity{}, apiError(c.cfg.Name, err)
	}
	at := tok.AccessToken

	var u githubUser
	if _, err := c.get(ctx, "/user", at, &u); err != nil {
		return Identity{}, apiError(c.cfg.Name, err)
	}
	if u.ID <= 0 || u.Login == "" {
		return Identity{}, apiError(c.cfg.Name, fmt.Errorf("GET /user: no id or login in the answer"))
	}
	id := Identity{
		Provider: c.cfg.ID,
		// The numeric id survives renames; the login can be given up
		// and claimed by someone else.
		Subject: strconv.FormatInt(u.ID, 10),
		Login:   u.Login,
		Name:    u.Name,
		Grant:   grantFrom(tok, c.oauth.Scopes, c.cfg.now()),
	}

	var emails []githubEmail
	if _, err := c.get(ctx, "/user/emails", at, &emails); err != nil {
		return Identity{}, apiError(c.cfg.Name, err)
	}
	// Only the primary address, and only once GitHub has verified it: an
	// unverified address proves nothing, so it is not recorded at all
	// (it would otherwise surface in pages and token claims).
	for _, e := range emails {
		if e.Primary && e.Verified && e.Email != "" {
			id.Email, id.EmailVerified = e.Email, true
		}
	}

	if c.cfg.GitHub.LoadTeams {
		groups, err := c.groups(ctx, at)
		if err != nil {
			return Identity{}, apiError(c.cfg.Name, err)
		}
		id.Groups = groups
	}
	return id, nil
}

// groups lists the user's orgs as "org" and teams as "org/team-slug", org
// logins lower-cased (GitHub treats them case-insensitively; slugs are
// lower-case already).
func (c *githubConnector) groups(ctx context.Context, at string) ([]string, error) {
	var groups []string
	err := c.paginate(ctx, "/user/orgs", at, func(get func(any) error) error {
		var orgs []githubOrg
		if err := get(&orgs); err != nil {
			return err
		}
		for _, o := range orgs {
			if o.Login != "" {
				groups = append(groups, strings.ToLower(o.Login))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = c.paginate(ctx, "/user/teams", at, func(get func(any) error) error {
		var teams []githubTeam
		if err := get(&teams); err != nil {
			return err
		}
		for _, t := range teams {
			if t.Organization.Login != "" && t.Slug != "" {
				org := strings.ToLower(t.Organization.Login)
				// A team implies membership of its org, even when
				// /user/orgs hides it (e.g. OAuth app restrictions).
				groups = append(groups, org, org+"/"+strings.ToLower(t.Slug))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(groups)
	return slices.Compact(groups), nil
}

// paginate follows the Link rel="next" chain from path, handing each page
// to page. A next link outside the API root is refused.
func (c *githubConnector) paginate(ctx context.Context, path, at string, page func(get func(any) error) error) error {
	next := c.cfg.GitHub.APIURL + path + "?per_page=100"
	for range maxPages {
		var hdr http.Header
		err := page(func(v any) error {
			var err error
			hdr, err = c.getURL(ctx, next, at, v)
			return err
		})
		if err != nil {
			return err
		}
		next = nextLink(hdr)
		if next == "" {
			return nil
		}
		if !sameRoot(c.cfg.GitHub.APIURL, next) {
			return fmt.Errorf("GET %s: next page link leaves the API root", path)
		}
	}
	return fmt.Errorf("GET %s: more than %d pages", path, maxPages)
}

func (c *githubConnector) get(ctx context.Context, path, at string, v any) (http.Header, error) {
	return c.getURL(ctx, c.cfg.GitHub.APIURL+path, at, v)
}

func (c *githubConnector) getURL(ctx context.Context, u, at string, v any) (http.Header, error) {
	return getJSON(ctx, c.hc, u, at, http.Header{
		"Accept":               {"application/vnd.github+json"},
		"X-Github-Api-Version": {"2022-11-28"},
		"User-Agent":           {"authd"},
	}, v)
}

// Refresh implements Refresher: GitHub Apps with expiring user tokens
// issue a single-use refresh token with each access token. The token
// endpoint answers a refused one with HTTP 200 and error
// bad_refresh_token.
func (c *githubConnector) Refresh(ctx context.Context, refreshToken string) (*Grant, error) {
	return refresh(ctx, c.oauth, c.tokenHC, c.cfg.Name, refreshToken, c.cfg.now)
}

// Memberships implements MembershipReader: the user's id, and their orgs
// and teams when load_teams is set (what allowlist.github_orgs and
// github_teams match).
func (c *githubConnector) Memberships(ctx context.Context, at string) (Memberships, error) {
	ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
	defer cancel()
	var u githubUser
	if _, err := c.get(ctx, "/user", at, &u); err != nil {
		if se, ok := errors.AsType[*statusError](err); ok && se.Status == http.StatusUnauthorized {
			return Memberships{}, fmt.Errorf("%w: GET /user: HTTP 401", ErrTokenRejected)
		}
		return Memberships{}, apiError(c.cfg.Name, err)
	}
	if u.ID <= 0 {
		return Memberships{}, apiError(c.cfg.Name, fmt.Errorf("GET /user: no id in the answer"))
	}
	m := Memberships{Subject: strconv.FormatInt(u.ID, 10)}
	if c.cfg.GitHub.LoadTeams {
		groups, err := c.groups(ctx, at)
		if err != nil {
			return Memberships{}, apiError(c.cfg.Name, err)
		}
		m.Groups = groups
	}
	return m, nil
}
