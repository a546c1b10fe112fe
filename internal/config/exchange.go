package config

import (
	"fmt"
	"slices"

	"github.com/authd/authd/internal/register"
	"github.com/authd/authd/internal/upstream"
)

// validateTokenExchange checks that a client's token_exchange names only
// configured resources and upstreams (register validates the rest).
func (c *Config) validateTokenExchange(x *register.TokenExchange) []error {
	if x == nil {
		return nil
	}
	var errs []error
	isResource := func(uri string) bool {
		return slices.ContainsFunc(c.Resources, func(r ResourceConfig) bool { return r.URI == uri })
	}
	if x.ResourceServer != "" && !isResource(x.ResourceServer) {
		errs = append(errs, fmt.Errorf("resource_server: %q is not in resources[].uri", x.ResourceServer))
	}
	for _, r := range x.Resources {
		if !isResource(r) {
			errs = append(errs, fmt.Errorf("resources: %q is not in resources[].uri", r))
		}
	}
	for _, id := range x.Upstreams {
		if err := c.keptUpstream(id); err != nil {
			errs = append(errs, fmt.Errorf("upstreams: %w", err))
			continue
		}
		// The consent page shows the user the upstream access each
		// resource declares; a resource server must not get upstream
		// access the user was never shown.
		if i := slices.IndexFunc(c.Resources, func(r ResourceConfig) bool { return r.URI == x.ResourceServer }); i >= 0 && len(c.Resources[i].UpstreamScopes[id]) == 0 {
			errs = append(errs, fmt.Errorf("upstreams: resources[%q].upstream_scopes.%s must list the %s scopes its server uses (the consent page shows them; without them the user never agreed to %s access)", x.ResourceServer, id, id, id))
		}
	}
	return errs
}

// validateForwardUpstreamTokens checks resources[].forward_upstream_token.
func (c *Config) validateForwardUpstreamTokens() []error {
	var errs []error
	for i, r := range c.Resources {
		if id := r.ForwardUpstreamToken; id != "" {
			if err := c.keptUpstream(id); err != nil {
				errs = append(errs, fmt.Errorf("resources[%d].forward_upstream_token: %w", i, err))
			} else if len(r.UpstreamScopes[id]) == 0 {
				errs = append(errs, fmt.Errorf("resources[%d].forward_upstream_token: resources[%d].upstream_scopes.%s must list the %s scopes the server uses (the consent page shows them)", i, i, id, id))
			}
			// Without the secret /verify cannot tell the proxy's auth
			// subrequest from a client calling it through the same proxy.
			if n := len(c.Introspection.ForwardAuthSecret); n < 32 {
				what := "is not set"
				if n > 0 {
					what = "is shorter than 32 characters"
				}
				errs = append(errs, fmt.Errorf("resources[%d].forward_upstream_token: introspection.forward_auth_secret %s; set a random secret of at least 32 characters and have the proxy send it as X-Authd-Forward-Secret on its /verify subrequest (see Calling upstream APIs in the README)", i, what))
			}
		}
	}
	return errs
}

// keptUpstream checks that id is an upstream that keeps users' tokens.
func (c *Config) keptUpstream(id string) error {
	i := slices.IndexFunc(c.Upstreams, func(u upstream.Config) bool { return u.ID == id })
	switch {
	case i < 0:
		return fmt.Errorf("%q is not in upstreams[].id", id)
	case !c.Upstreams[i].StoreTokens:
		return fmt.Errorf("upstream %q needs store_tokens: true (authd keeps no token of it to hand out)", id)
	}
	return nil
}

// TokenExchangeEnabled reports whether any client may use RFC 8693 token
// exchange, which discovery then advertises.
func (c *Config) TokenExchangeEnabled() bool {
	return slices.ContainsFunc(c.Clients, func(cl register.StaticClient) bool { return cl.TokenExchange != nil })
}
