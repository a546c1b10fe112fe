package register

import (
	"fmt"
	"slices"

	"github.com/authd/authd/internal/grants"
	"github.com/authd/authd/internal/oauth"
)

// GrantTokenExchange is RFC 8693's grant type. Only clients the operator
// configures with token_exchange may use it: registration and metadata
// documents refuse it (the grant registry serves it to configured clients
// only), because a token exchange hands a resource server the user's
// upstream tokens or tokens for other resources, which only the operator
// can vouch for.
const GrantTokenExchange = grants.TokenExchange

// TokenExchange is what a configured resource-server client may obtain
// at /token with RFC 8693 token exchange (clients[].token_exchange).
type TokenExchange struct {
	// ResourceServer is the resource (resources[].uri) this client serves:
	// the subject tokens it exchanges must be for it.
	ResourceServer string `mapstructure:"resource_server"`
	// Upstreams are the upstream ids (upstreams[].id) whose access token
	// for the signed-in user the client may obtain (audience=<id>).
	Upstreams []string `mapstructure:"upstreams"`
	// Resources are the resources it may obtain delegated tokens for
	// (resource=<uri>), tokens that name it as the actor (RFC 8693 §4.1).
	Resources []string `mapstructure:"resources"`
}

// validate lists the problems with x that need no other configuration
// (config.Validate checks that the resources and upstreams exist).
func (x *TokenExchange) validate(confidential bool) []string {
	var errs []string
	if !confidential {
		errs = append(errs, "token_exchange needs a confidential client (a secret or secret_hash)")
	}
	if x.ResourceServer == "" {
		errs = append(errs, "token_exchange.resource_server is required: the resource this client serves, whose tokens it exchanges")
	} else if c, err := oauth.CanonicalResource(x.ResourceServer); err != nil || c != x.ResourceServer {
		errs = append(errs, fmt.Sprintf("token_exchange.resource_server %q must be a resource URI as written in resources[].uri", x.ResourceServer))
	}
	for _, r := range x.Resources {
		if c, err := oauth.CanonicalResource(r); err != nil || c != r {
			errs = append(errs, fmt.Sprintf("token_exchange.resources: %q must be a resource URI as written in resources[].uri", r))
		}
	}
	if len(x.Upstreams) == 0 && len(x.Resources) == 0 {
		errs = append(errs, "token_exchange: list upstreams or resources (or both) the client may exchange tokens for")
	}
	return errs
}

// withoutTokenExchange is grants without RFC 8693's grant type, which
// checkGrantTypes (the rule for registered metadata) refuses.
func withoutTokenExchange(grants []string) []string {
	return slices.DeleteFunc(slices.Clone(grants), func(g string) bool { return g == GrantTokenExchange })
}
