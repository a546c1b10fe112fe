package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Grant is the user's grant at the provider, as its token endpoint
// answered: what authd keeps (encrypted, internal/upstreamtokens) for
// upstreams with store_tokens, so that MCP servers can call the provider's
// API as the user and authd can re-read memberships later.
//
// It holds secrets: String, GoString and LogValue print no token, so a
// Grant (or an Identity carrying one) that reaches a log or an error
// message by mistake leaks nothing.
type Grant struct {
	AccessToken  string
	RefreshToken string // empty: the provider issued none
	TokenType    string // "bearer" as the provider spelled it
	Expiry       time.Time
	// ExpiresIn is the provider's expires_in (0: not sent), for callers
	// that count the expiry on a clock of their own.
	ExpiresIn time.Duration
	Scopes    []string // what the provider granted
}

func (g Grant) String() string   { return "upstream.Grant{tokens redacted}" }
func (g Grant) GoString() string { return g.String() }

// LogValue keeps the tokens out of structured logs.
func (g Grant) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expiry", g.Expiry), slog.Any("scopes", g.Scopes),
		slog.Bool("refreshable", g.RefreshToken != ""))
}

// grantFrom reads a token response. The granted scopes are the response's
// scope member (space-separated per RFC 6749 §5.1, comma-separated at
// GitHub), or, when it is absent, the requested ones (§5.1: the server
// may omit it when it granted what was asked).
//
// The expiry is expires_in counted from now, the connector's clock
// (x/oauth2 counts from time.Now).
func grantFrom(tok *oauth2.Token, requested []string, now time.Time) *Grant {
	g := &Grant{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.TokenType,
		Expiry:       tok.Expiry,
	}
	if in := expiresIn(tok); in > 0 {
		g.Expiry, g.ExpiresIn = now.Add(in), in
	}
	if s, ok := tok.Extra("scope").(string); ok {
		g.Scopes = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
		slices.Sort(g.Scopes)
		g.Scopes = slices.Compact(g.Scopes)
	} else {
		g.Scopes = slices.Clone(requested)
	}
	return g
}

// expiresIn reads expires_in from a JSON (ExpiresIn) or form-encoded
// (Extra) token response; 0 when absent.
func expiresIn(tok *oauth2.Token) time.Duration {
	if tok.ExpiresIn > 0 {
		return time.Duration(tok.ExpiresIn) * time.Second
	}
	switch v := tok.Extra("expires_in").(type) {
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	case float64:
		if v > 0 {
			return time.Duration(v) * time.Second
		}
	}
	return 0
}

// ErrGrantRevoked means the provider refused a refresh token for good
// (invalid_grant, GitHub's bad_refresh_token): the user revoked the app,
// the token expired or was used already. Only a new sign-in helps.
var ErrGrantRevoked = errors.New("upstream: the provider refused the refresh token (grant revoked or expired)")

// Refresher is implemented by connectors that can renew a kept grant.
type Refresher interface {
	// Refresh redeems refreshToken at the provider's token endpoint and
	// returns the new grant; when the provider sends no new refresh
	// token, the old one stays in it. A refusal for good wraps
	// ErrGrantRevoked; anything else (unreachable, 5xx) is an *Error with
	// Code CodeUnavailable or CodeUpstreamError.
	Refresh(ctx context.Context, refreshToken string) (*Grant, error)
}

// Memberships is what the allowlist may depend on, read again from the
// provider with a kept access token.
type Memberships struct {
	Subject string   // must be the user's: a token of someone else is refused
	Groups  []string // GitHub "org" and "org/team"; OIDC groups
	Domain  string   // Google Workspace hd
}

// ErrTokenRejected: the provider answered 401 to a kept access token
// that has not expired: the user (or an admin) revoked the grant there.
// GitHub OAuth App tokens never expire, so no refresh would notice.
var ErrTokenRejected = errors.New("upstream: the provider rejected the access token (grant revoked)")

// MembershipReader is implemented by connectors that can re-read a
// user's memberships with their access token (deprovisioning).
type MembershipReader interface {
	Memberships(ctx context.Context, accessToken string) (Memberships, error)
}

// refresh is Refresh for a connector whose token endpoint is oc.
func refresh(ctx context.Context, oc oauth2.Config, hc *http.Client, provider, refreshToken string, now func() time.Time) (*Grant, error) {
	if refreshToken == "" {
		return nil, fmt.Errorf("%w: no refresh token kept", ErrGrantRevoked)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// An already expired token makes the source refresh at once.
	ts := oc.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, hc), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := ts.Token()
	if err != nil {
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok && refusedForGood(re) {
			return nil, fmt.Errorf("%w: error=%q", ErrGrantRevoked, clip(re.ErrorCode))
		}
		return nil, apiError(provider, err)
	}
	g := grantFrom(tok, nil, now())
	if _, ok := tok.Extra("scope").(string); !ok {
		g.Scopes = nil // the caller keeps the scopes it knew
	}
	return g, nil
}

// refusedForGood: RFC 6749 §5.2 invalid_grant, and GitHub's
// bad_refresh_token (sent with HTTP 200).
func refusedForGood(re *oauth2.RetrieveError) bool {
	return re.ErrorCode == "invalid_grant" || re.ErrorCode == "bad_refresh_token"
}

// withScopes is base with extra appended, without repeats, in order.
func withScopes(base, extra []string) []string {
	out := slices.Clone(base)
	for _, s := range extra {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
