// Package mcpsdk protects a server built with the official MCP Go SDK
// (github.com/modelcontextprotocol/go-sdk) with a [resource.Protector]:
// tokens are checked by the Protector, the SDK sees them through its auth
// package's token-verifier hook (so tool handlers find the caller in
// req.Extra.TokenInfo, and the SDK binds sessions to their user), and a call
// to a tool that needs more scopes than the token carries is answered with
// HTTP 403 error="insufficient_scope" before it reaches the SDK, which is
// what makes MCP clients run step-up authorization.
//
//	server := mcp.NewServer(&mcp.Implementation{Name: "notes"}, nil)
//	// ... server.AddTool / mcp.AddTool ...
//	p, _ := resource.New(resource.Config{Issuer: issuer, Resource: "https://mcp.example.com/mcp", Scopes: []string{"notes:read"}})
//	mux.Handle(p.MetadataPath(), p.MetadataHandler())
//	mux.Handle("/mcp", mcpsdk.Handler(p, server, mcpsdk.ToolScopes{"add_note": {"notes:write"}}, nil))
package mcpsdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/authd/authd/resource"
)

// ToolScopes maps a tool's name to the scopes a call to it needs, beyond
// the Protector's Config.Scopes that every request needs.
type ToolScopes map[string][]string

// identityKey is where the adapter keeps the resource.Identity in the
// SDK's TokenInfo.Extra.
const identityKey = "authd.identity"

// Handler serves server over the SDK's streamable HTTP transport (opts may
// be nil) behind p: p.Middleware checks the token (401 challenges,
// Config.Scopes); a tools/call of a tool listed in tools whose token lacks
// the tool's scopes gets 403 insufficient_scope naming them; what passes
// reaches the SDK with its TokenInfo (auth.TokenInfoFromContext) set from
// the identity. Handler also adds EnforceToolScopes to server, so call it
// once per server.
func Handler(p *resource.Protector, server *mcp.Server, tools ToolScopes, opts *mcp.StreamableHTTPOptions) http.Handler {
	EnforceToolScopes(server, tools)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, opts)
	sdk := auth.RequireBearerToken(TokenVerifier(p), nil)(h)
	// Bodies are read to find tool calls within the limit the SDK applies.
	limit := int64(mcp.DefaultMaxRequestBodyBytes)
	if opts != nil && opts.MaxRequestBodyBytes > 0 {
		limit = opts.MaxRequestBodyBytes
	}
	return p.Middleware(requireToolScopes(p, tools, limit, sdk))
}

// EnforceToolScopes makes server refuse, with a JSON-RPC error, a call to a
// tool in tools whose caller's token lacks its scopes. Handler answers such
// calls with the HTTP 403 step-up challenge before they reach the SDK; this
// check runs on the call as the SDK itself decoded it, so no JSON trick that
// makes the two readings differ lets a call through.
func EnforceToolScopes(server *mcp.Server, tools ToolScopes) {
	if len(tools) == 0 {
		return
	}
	server.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if call, ok := req.(*mcp.CallToolRequest); ok && call.Params != nil {
				if need := tools[call.Params.Name]; len(need) > 0 {
					id, ok := IdentityOf(req)
					if !ok || !id.HasScopes(need...) {
						return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "insufficient scope: this tool needs " + strings.Join(need, " ")}
					}
				}
			}
			return next(ctx, method, req)
		}
	})
}

// TokenVerifier is an auth.TokenVerifier that checks tokens with p, for use
// with the SDK's own auth.RequireBearerToken. Behind p.Middleware it reuses
// the identity the middleware found for this request instead of checking
// the token again. The TokenInfo's UserID is the token's subject; its
// Extra carries the resource.Identity (see IdentityOf).
func TokenVerifier(p *resource.Protector) auth.TokenVerifier {
	return func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		id, ok := resource.IdentityFrom(ctx)
		if !ok {
			var err error
			if id, err = p.Check(ctx, token); errors.Is(err, resource.ErrInvalidToken) {
				return nil, errors.Join(auth.ErrInvalidToken, err)
			} else if err != nil {
				return nil, err
			}
		}
		return &auth.TokenInfo{
			Scopes:     id.Scopes,
			Expiration: id.ExpiresAt,
			UserID:     id.Subject,
			Extra:      map[string]any{identityKey: id},
		}, nil
	}
}

// IdentityOf returns the caller's identity in a tool, prompt or resource
// handler of a server protected by Handler or TokenVerifier.
func IdentityOf(req mcp.Request) (*resource.Identity, bool) {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return nil, false
	}
	id, ok := extra.TokenInfo.Extra[identityKey].(*resource.Identity)
	return id, ok && id != nil
}

// requireToolScopes answers a tools/call whose token lacks the tool's
// scopes with 403 insufficient_scope. It must read the JSON-RPC body to know
// the tool; the body is handed on unchanged.
func requireToolScopes(p *resource.Protector, tools ToolScopes, limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(tools) == 0 || r.Method != http.MethodPost || r.Body == nil {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read the request body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		// The challenge names every scope of the tools called, not only
		// the missing ones: what the request needs (RFC 6750 §3).
		var need []string
		for _, name := range calledTools(body) {
			for _, s := range tools[name] {
				if !contains(need, s) {
					need = append(need, s)
				}
			}
		}
		if id, ok := resource.IdentityFrom(r.Context()); len(need) > 0 && (!ok || !id.HasScopes(need...)) {
			p.InsufficientScope(w, need...)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// calledTools returns the names of the tools a JSON-RPC message (or batch)
// calls. Anything else, or what does not parse, calls none; the SDK then
// answers it as it would without this check.
func calledTools(body []byte) []string {
	type message struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	var msgs []message
	body = bytes.TrimLeft(body, " \t\r\n")
	if len(body) > 0 && body[0] == '[' {
		if json.Unmarshal(body, &msgs) != nil {
			return nil
		}
	} else {
		var m message
		if json.Unmarshal(body, &m) != nil {
			return nil
		}
		msgs = []message{m}
	}
	var names []string
	for _, m := range msgs {
		if m.Method == "tools/call" {
			names = append(names, m.Params.Name)
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
