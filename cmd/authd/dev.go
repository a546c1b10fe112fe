package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/register"
)

// devResourceServerID is the client --dev adds for resource servers, so
// that /introspect works out of the box: dynamically registered clients may
// not introspect, and a new user has nothing else to call it with.
const devResourceServerID = "dev-resource-server"

// devCredential is the introspection credential the --dev banner prints.
type devCredential struct{ id, secret string }

// withDevResourceServer returns cfg with a resource-server client that may
// introspect, with a secret fresh at every start, unless the configuration
// already declares a client of that id. cfg itself is not changed.
func withDevResourceServer(cfg *config.Config) (*config.Config, *devCredential) {
	if !cfg.Dev || slices.ContainsFunc(cfg.Clients, func(c register.StaticClient) bool { return c.ID == devResourceServerID }) {
		return cfg, nil
	}
	cred := &devCredential{id: devResourceServerID, secret: oauth.RandomString(24)}
	c := *cfg
	c.Clients = append(slices.Clone(cfg.Clients), register.StaticClient{
		ID: cred.id, Name: "Development resource server", Secret: cred.secret, Introspect: true,
	})
	return &c, cred
}

// storeDescription says which store cfg uses, naming a database by host and
// name only (never its credentials).
func storeDescription(cfg *config.Config) string {
	if cfg.DatabaseURL == "" {
		return "in-memory store"
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil || u.Host == "" {
		return "PostgreSQL store"
	}
	return "PostgreSQL store at " + u.Host + u.Path
}

// printDevBanner tells a developer what --dev offers, with everything the
// README's examples need.
func printDevBanner(w io.Writer, cfg *config.Config, cred *devCredential) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n  authd %s is running in DEVELOPMENT mode (%s, dev login).\n", version, storeDescription(cfg))
	fmt.Fprintf(&b, "  Discovery: %s/.well-known/oauth-authorization-server\n", cfg.Issuer)
	fmt.Fprintf(&b, "  Point an MCP client at %s; sign in with any user name on the dev login page.\n", cfg.Issuer)
	if cfg.AllowAnyResource {
		fmt.Fprintf(&b, "  Any resource URL is accepted; requests without one get tokens for %s.\n", cfg.DefaultResource)
		fmt.Fprintf(&b, "  ForwardAuth: %s/verify?resource=<your MCP server's URL>\n", cfg.Issuer)
	}
	if cred != nil {
		fmt.Fprintf(&b, "  Introspection (RFC 7662) for resource servers: client_id %s, client_secret %s\n", cred.id, cred.secret)
		fmt.Fprintf(&b, "    curl -u %s:%s -d token=<access token> %s/introspect\n", cred.id, cred.secret, cfg.Issuer)
		if cfg.DatabaseURL != "" {
			// Config clients outlive the configuration that made them.
			fmt.Fprintf(&b, "    (stored in the database: `authd clients delete %s` before using it outside --dev)\n", cred.id)
		}
	}
	b.WriteString("\n")
	_, _ = io.WriteString(w, b.String())
}
