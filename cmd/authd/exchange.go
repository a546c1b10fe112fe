package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/metrics"
	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/internal/upstreamtokens"
)

// tokenExchange builds RFC 8693 token exchange from the clients'
// token_exchange settings; nil when no client has one.
func tokenExchange(cfg *config.Config, broker *upstreamtokens.Broker, m *metrics.Metrics) *token.Exchange {
	if !cfg.TokenExchangeEnabled() {
		return nil
	}
	x := &token.Exchange{
		Clients: map[string]token.ExchangePolicy{},
		Observe: m.ObserveExchange,
	}
	if broker != nil {
		x.Upstreams = func(ctx context.Context, userID, upstream string) (token.UpstreamToken, error) {
			t, err := broker.Token(ctx, userID, upstream)
			switch {
			case errors.Is(err, upstreamtokens.ErrNotStored), errors.Is(err, upstreamtokens.ErrDecrypt):
				// ErrDecrypt: sealed under a secret no longer configured;
				// a new sign-in replaces it.
				return token.UpstreamToken{}, errors.Join(token.ErrUpstreamNotStored, err)
			case errors.Is(err, upstreamtokens.ErrGrantDead):
				return token.UpstreamToken{}, errors.Join(token.ErrUpstreamGrantDead, err)
			case err != nil:
				return token.UpstreamToken{}, err
			}
			return token.UpstreamToken{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry, Scopes: t.Scopes}, nil
		}
	}
	for _, c := range cfg.Clients {
		if te := c.TokenExchange; te != nil {
			x.Clients[c.ID] = token.ExchangePolicy{ResourceServer: te.ResourceServer, Upstreams: te.Upstreams, Resources: te.Resources}
		}
	}
	return x
}

// forwardedUpstreamTokens is /verify's source of upstream tokens for
// resources with forward_upstream_token; nil without kept tokens.
func forwardedUpstreamTokens(broker *upstreamtokens.Broker) func(ctx context.Context, userID, upstream string) (string, error) {
	if broker == nil {
		return nil
	}
	return func(ctx context.Context, userID, upstream string) (string, error) {
		t, err := broker.Token(ctx, userID, upstream)
		if errors.Is(err, upstreamtokens.ErrNotStored) || errors.Is(err, upstreamtokens.ErrGrantDead) || errors.Is(err, upstreamtokens.ErrDecrypt) {
			return "", errors.Join(introspect.ErrUpstreamTokenGone, err)
		}
		return t.AccessToken, err
	}
}

// warnForwardUpstreamTokens announces, once at start-up, each resource
// with forward_upstream_token: every process between the proxy and the
// server sees the user's upstream token.
func warnForwardUpstreamTokens(p *policy.Policy, log *slog.Logger) {
	for _, res := range p.Resources {
		if res.ForwardUpstreamToken == "" {
			continue
		}
		log.Warn("resources[].forward_upstream_token is set: /verify hands the user's upstream access token to the proxy, which passes it to the resource server in X-Forwarded-Access-Token; only for servers you trust with it, behind a proxy that strips the header from client requests",
			"resource", res.URI, "upstream", res.ForwardUpstreamToken)
	}
}
