package main

import (
	"log/slog"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/metrics"
	"github.com/authd/authd/internal/token"
)

// tokenExchange builds RFC 8693 token exchange from the clients'
// token_exchange settings; nil when no client has one.
func tokenExchange(cfg *config.Config, m *metrics.Metrics) *token.Exchange {
	if !cfg.TokenExchangeEnabled() {
		return nil
	}
	x := &token.Exchange{
		Clients: map[string]token.ExchangePolicy{},
		Observe: m.ObserveExchange,
	}
	for _, c := range cfg.Clients {
		if te := c.TokenExchange; te != nil {
			x.Clients[c.ID] = token.ExchangePolicy{ResourceServer: te.ResourceServer, Upstreams: te.Upstreams, Resources: te.Resources}
		}
	}
	return x
}

// forwardUpstreamToken is res's forward_upstream_token, announced once at
// start-up: every process between the proxy and the server sees the
// user's upstream token.
func forwardUpstreamToken(res config.ResourceConfig, log *slog.Logger) string {
	if res.ForwardUpstreamToken != "" {
		log.Warn("resources[].forward_upstream_token is set: /verify hands the user's upstream access token to the proxy, which passes it to the resource server in X-Forwarded-Access-Token; only for servers you trust with it, behind a proxy that strips the header from client requests",
			"resource", res.URI, "upstream", res.ForwardUpstreamToken)
	}
	return res.ForwardUpstreamToken
}
