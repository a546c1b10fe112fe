// Package upstream signs users in at the identity providers authd federates
// to: GitHub (and GitHub Enterprise), Google, any OpenID Connect issuer, and
// a development-only login. Each sits behind the small Connector interface
// (dex's CallbackConnector), built on golang.org/x/oauth2, with every
// endpoint URL configurable so tests run against local fakes.
package upstream

import (
	"context"
	"net/http"
)

// Identity is who the upstream says the user is. Subject is the provider's
// immutable identifier (GitHub's numeric id, OIDC sub), never a login name
// or email, which can change hands.
type Identity struct {
	Provider      string // connector id
	Subject       string
	Login         string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string // OIDC groups; GitHub "org" and "org/team" (when org/team rules are configured)
	Domain        string   // Google Workspace hd claim
}

// Connector is one configured upstream identity provider.
type Connector interface {
	// ID is the configured id, used in the callback path /callback/{id}.
	ID() string
	// Type is "github", "google", "oidc" or "dev".
	Type() string
	// DisplayName is shown on the chooser page.
	DisplayName() string
	// AuthCodeURL returns where to send the browser: state is authd's
	// opaque state towards the upstream, verifier the PKCE verifier (the
	// connector sends its S256 challenge), nonce the OIDC nonce (ignored
	// by non-OIDC connectors), loginHint an optional hint to pass on.
	AuthCodeURL(state, verifier, nonce, loginHint string) string
	// HandleCallback completes the login from the request that arrived at
	// /callback/{id} (after authd has matched state): it exchanges the
	// code with the same verifier and returns the identity. An upstream
	// error response (e.g. the user declined) is returned as *Error.
	HandleCallback(ctx context.Context, r *http.Request, verifier, nonce string) (Identity, error)
}

// Error is a failure the user should see explained (declined at the
// provider, unverified email, provider answered an error).
type Error struct {
	Code    string // e.g. "access_denied", "upstream_error"
	Message string // safe to show the user
	Err     error  // internal cause, for the log
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }
