package config

import (
	"slices"

	"github.com/authd/authd/internal/idclaims"
	"github.com/authd/authd/internal/policy"
)

// Policy is the resource and scope policy c describes, built once at
// start-up and handed to every endpoint that applies it. Call it on a
// validated Config: identity claims that do not parse are left out.
func (c *Config) Policy() *policy.Policy {
	p := &policy.Policy{
		AllowAnyResource:    c.AllowAnyResource,
		DefaultResource:     c.DefaultResource,
		RejectUnknownScopes: c.UnknownScopes == UnknownScopesReject,
		DefaultScopes:       slices.Clone(c.DefaultScopes),
		TokenFormat:         c.Tokens.Format,
	}
	for _, s := range c.Scopes {
		p.Scopes = append(p.Scopes, policy.Scope{Name: s.Name, Description: s.Description})
	}
	for _, r := range c.Resources {
		ids, _ := idclaims.Parse(r.Claims) // checked by Validate
		res := policy.Resource{
			URI: r.URI, Name: r.Name, Documentation: r.Documentation,
			Scopes: slices.Clone(r.Scopes), RequiredScopes: slices.Clone(r.RequiredScopes),
			TokenFormat: r.TokenFormat, Claims: ids,
			ForwardUpstreamToken: r.ForwardUpstreamToken,
		}
		for id, scopes := range r.UpstreamScopes {
			if res.UpstreamScopes == nil {
				res.UpstreamScopes = map[string][]string{}
			}
			res.UpstreamScopes[id] = slices.Clone(scopes)
		}
		for _, rs := range r.RouteScopes {
			res.RouteScopes = append(res.RouteScopes, policy.RouteScope{Method: rs.Method, Path: rs.Path, Scopes: slices.Clone(rs.Scopes)})
		}
		p.Resources = append(p.Resources, res)
	}
	return p
}
