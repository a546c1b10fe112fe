package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// opFunc performs one timed operation. It returns the HTTP status of the
// response that decided the outcome (0: none) and an error when the
// operation failed.
type opFunc func(ctx context.Context) (int, error)

// bench prepares an op: it registers clients and obtains tokens before
// timing starts, then hands out one opFunc per worker (workers that keep
// state, like a refresh token chain, get their own).
type bench struct {
	o   *options
	api *api
	// Set by prepare.
	newWorker func(ctx context.Context, i int) (opFunc, error)
}

func (b *bench) prepare(ctx context.Context) error {
	if err := b.api.checkIssuer(ctx); err != nil {
		return err
	}
	switch b.o.op {
	case opClientCredentials:
		return b.prepareClientCredentials(ctx)
	case opIntrospect:
		return b.prepareIntrospect(ctx, b.o.resource, false)
	case opIntrospectOpaque:
		return b.prepareIntrospect(ctx, b.o.opaqueResource, true)
	case opRegister:
		return b.prepareRegister()
	case opRefresh:
		return b.prepareRefresh(ctx)
	case opCodeFlow:
		return b.prepareCodeFlow(ctx)
	}
	return fmt.Errorf("unknown op %q", b.o.op)
}

// machineClient returns the configured client_credentials client, or
// registers one.
func (b *bench) machineClient(ctx context.Context) (id, secret string, err error) {
	if b.o.clientID != "" {
		return b.o.clientID, b.o.clientSecret, nil
	}
	_, reg, err := b.api.register(ctx, map[string]any{
		"client_name":                "authbench machine client",
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	if err != nil {
		return "", "", fmt.Errorf("registering a client_credentials client (the server needs registration.allow_client_credentials: true, or pass -client-id and -client-secret of a configured one): %w", err)
	}
	return reg.ClientID, reg.ClientSecret, nil
}

func (b *bench) clientCredentialsForm(resource string) url.Values {
	form := url.Values{"grant_type": {"client_credentials"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	return form
}

func (b *bench) prepareClientCredentials(ctx context.Context) error {
	id, secret, err := b.machineClient(ctx)
	if err != nil {
		return err
	}
	form := b.clientCredentialsForm(b.o.resource)
	if _, _, err := b.api.token(ctx, form, id, secret); err != nil {
		return fmt.Errorf("trial client_credentials request: %w", err)
	}
	b.newWorker = func(context.Context, int) (opFunc, error) {
		return func(ctx context.Context) (int, error) {
			status, _, err := b.api.token(ctx, form, id, secret)
			return status, err
		}, nil
	}
	return nil
}

// prepareIntrospect obtains one access token for resource (a JWT, or an
// opaque token when opaque) and times its introspection.
func (b *bench) prepareIntrospect(ctx context.Context, resource string, opaque bool) error {
	var tok string
	if b.o.tokenFrom == opCodeFlow && !opaque {
		clientID, err := b.publicClient(ctx)
		if err != nil {
			return err
		}
		_, t, err := b.api.codeFlow(ctx, clientID, resource, b.o.user+"-introspect")
		if err != nil {
			return fmt.Errorf("code flow for a user token: %w", err)
		}
		tok = t.AccessToken
	} else {
		id, secret, err := b.machineClient(ctx)
		if err != nil {
			return err
		}
		_, t, err := b.api.token(ctx, b.clientCredentialsForm(resource), id, secret)
		if err != nil {
			return fmt.Errorf("obtaining the access token to introspect: %w", err)
		}
		tok = t.AccessToken
	}
	isOpaque := strings.HasPrefix(tok, "authd_at_")
	if opaque != isOpaque {
		return fmt.Errorf("the token for resource %q is not %s: check that resource's token_format", resource, map[bool]string{true: "opaque", false: "a JWT"}[opaque])
	}
	form := url.Values{"token": {tok}}
	user, pass := b.o.introspectClientID, b.o.introspectSecret
	newReq := func(ctx context.Context) *http.Request {
		req := b.api.postForm(ctx, "/introspect", form, user, pass)
		if b.o.introspectToken != "" {
			req.Header.Set("Authorization", "Bearer "+b.o.introspectToken)
		}
		return req
	}
	do := func(ctx context.Context) (int, error) {
		status, body, err := b.api.exchange(newReq(ctx), http.StatusOK)
		if err == nil && !bytes.Contains(body, []byte(`"active":true`)) {
			err = fmt.Errorf("token reported inactive: %s", truncate(string(body), 200))
		}
		return status, err
	}
	if _, err := do(ctx); err != nil {
		return fmt.Errorf("trial introspection: %w", err)
	}
	b.newWorker = func(context.Context, int) (opFunc, error) { return do, nil }
	return nil
}

// prepareRegister times registrations of confidential clients: each is a
// new durable row (public clients with identical metadata from one
// address share a row, which would time an UPDATE instead).
func (b *bench) prepareRegister() error {
	var n atomic.Int64
	b.newWorker = func(context.Context, int) (opFunc, error) {
		return func(ctx context.Context) (int, error) {
			status, _, err := b.api.register(ctx, map[string]any{
				"client_name":                "authbench client " + strconv.FormatInt(n.Add(1), 10),
				"redirect_uris":              []string{redirectURI},
				"grant_types":                []string{"authorization_code", "refresh_token"},
				"token_endpoint_auth_method": "client_secret_basic",
			})
			return status, err
		}, nil
	}
	return nil
}

// publicClient registers the public client the code flows use.
func (b *bench) publicClient(ctx context.Context) (string, error) {
	_, reg, err := b.api.register(ctx, map[string]any{
		"client_name":                "authbench MCP client " + randomString(6),
		"redirect_uris":              []string{redirectURI},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "none",
	})
	if err != nil {
		return "", fmt.Errorf("registering a public client: %w", err)
	}
	return reg.ClientID, nil
}

func (b *bench) prepareCodeFlow(ctx context.Context) error {
	clientID, err := b.publicClient(ctx)
	if err != nil {
		return err
	}
	if _, _, err := b.api.codeFlow(ctx, clientID, b.o.resource, b.o.user+"-0"); err != nil {
		return fmt.Errorf("trial code flow: %w", err)
	}
	b.newWorker = func(_ context.Context, i int) (opFunc, error) {
		user := b.o.user + "-" + strconv.Itoa(i)
		return func(ctx context.Context) (int, error) {
			status, _, err := b.api.codeFlow(ctx, clientID, b.o.resource, user)
			return status, err
		}, nil
	}
	return nil
}

// prepareRefresh gives every worker its own grant (a code flow each) and
// times rotations along its chain. A failed rotation ends a chain (the
// server may have revoked the grant); the worker then starts a new one,
// and that time counts against the run.
func (b *bench) prepareRefresh(ctx context.Context) error {
	clientID, err := b.publicClient(ctx)
	if err != nil {
		return err
	}
	b.newWorker = func(ctx context.Context, i int) (opFunc, error) {
		user := b.o.user + "-" + strconv.Itoa(i)
		_, t, err := b.api.codeFlow(ctx, clientID, b.o.resource, user)
		if err != nil {
			return nil, fmt.Errorf("code flow for worker %d: %w", i, err)
		}
		if t.RefreshToken == "" {
			return nil, errors.New("the token response carried no refresh token")
		}
		current := t.RefreshToken
		return func(ctx context.Context) (int, error) {
			if current == "" {
				_, t, err := b.api.codeFlow(ctx, clientID, b.o.resource, user)
				if err != nil {
					return 0, fmt.Errorf("restarting the chain: %w", err)
				}
				current = t.RefreshToken
			}
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {current}, "client_id": {clientID}}
			status, t, err := b.api.token(ctx, form, "", "")
			current = t.RefreshToken
			if err == nil && current == "" {
				err = errors.New("rotation returned no refresh token")
			}
			return status, err
		}, nil
	}
	return nil
}
