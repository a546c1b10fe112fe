package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/metrics"
	"github.com/authd/authd/internal/token"
)

// tokenExchange builds RFC 8693 token exchange from the clients'
// token_exchange settings; nil when no client has one. Subject tokens are
// judged by introspection's own inspection, never parsed here.
func tokenExchange(cfg *config.Config, intro *introspect.Handler, m *metrics.Metrics) *token.Exchange {
	if !cfg.TokenExchangeEnabled() {
		return nil
	}
	x := &token.Exchange{
		Clients:  map[string]token.ExchangePolicy{},
		Subjects: subjectInspector{intro},
		Observe:  m.ObserveExchange,
	}
	for _, c := range cfg.Clients {
		if te := c.TokenExchange; te != nil {
			x.Clients[c.ID] = token.ExchangePolicy{ResourceServer: te.ResourceServer, Upstreams: te.Upstreams, Resources: te.Resources}
		}
	}
	return x
}

// subjectInspector adapts introspection to token.SubjectInspector.
type subjectInspector struct{ h *introspect.Handler }

func (s subjectInspector) InspectSubject(ctx context.Context, raw string, now time.Time) (token.Subject, error) {
	t, err := s.h.InspectAccessToken(ctx, raw, now)
	if errors.Is(err, introspect.ErrInactive) {
		return token.Subject{}, errors.Join(token.ErrSubjectInactive, err)
	} else if err != nil {
		return token.Subject{}, err
	}
	sub := token.Subject{
		ClientID: t.ClientID, User: t.User, GrantID: t.GrantID,
		Audience: t.Audience, Scopes: t.Scopes, AuthTime: t.AuthTime, ExpiresAt: t.ExpiresAt,
	}
	if t.User != nil {
		sub.UserID = t.Subject
	}
	if len(t.Act) > 0 {
		var act token.Actor
		if err := json.Unmarshal(t.Act, &act); err != nil || act.Subject == "" {
			// authd signed it, so this cannot happen; refuse rather than
			// lose the chain.
			return token.Subject{}, errors.Join(token.ErrSubjectInactive, errors.New("unreadable act claim"))
		}
		sub.Act = &act
	}
	return sub, nil
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
