package mcpsdk

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/authd/authd/resource"
)

func TestCalledTools(t *testing.T) {
	for body, want := range map[string][]string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note"}}`:                                                             {"add_note"},
		` [{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"method":"ping"},{"method":"tools/call","params":{"name":"b"}}]`: {"a", "b"},
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`:                                                                                          nil,
		`{"method":`: nil,
		`not json`:   nil,
		``:           nil,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`: nil,
	} {
		if got := calledTools([]byte(body)); !slices.Equal(got, want) {
			t.Errorf("calledTools(%s) = %q, want %q", body, got, want)
		}
	}
}

// TestEnforceToolScopesWithoutHTTP: the SDK-level check refuses a call
// that reaches the server without an identity carrying the tool's scopes,
// whatever the HTTP layer did or did not see.
func TestEnforceToolScopesWithoutHTTP(t *testing.T) {
	ctx := context.Background()
	server := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, nil)
	ran := false
	mcp.AddTool(server, &mcp.Tool{Name: "add_note"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		ran = true
		return &mcp.CallToolResult{}, nil, nil
	})
	mcp.AddTool(server, &mcp.Tool{Name: "list_notes"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	})
	EnforceToolScopes(server, ToolScopes{"add_note": {"notes:write"}})
	st, ct := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "add_note"}); err == nil || !strings.Contains(err.Error(), "insufficient scope") || ran {
		t.Errorf("add_note without a token: %v (ran: %v)", err, ran)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_notes"}); err != nil {
		t.Errorf("list_notes needs no scope of its own: %v", err)
	}
}

// TestTokenVerifier: the SDK's hook reuses the identity the middleware
// found, and maps a token the Protector refuses to auth.ErrInvalidToken
// (the SDK's 401).
func TestTokenVerifier(t *testing.T) {
	p, err := resource.New(resource.Config{Issuer: "http://127.0.0.1:1", Resource: "https://mcp.example.com/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	v := TokenVerifier(p)
	exp := time.Now().Add(time.Hour)
	id := &resource.Identity{Subject: "u1", Scopes: []string{"a"}, ExpiresAt: exp}
	info, err := v(resource.WithIdentity(context.Background(), id), "tok", nil)
	if err != nil || info.UserID != "u1" || !slices.Equal(info.Scopes, []string{"a"}) || !info.Expiration.Equal(exp) || info.Extra[identityKey] != id {
		t.Errorf("with the middleware's identity: %+v %v", info, err)
	}
	if _, err := v(context.Background(), "not-a-jwt", nil); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token the Protector refuses: %v, want auth.ErrInvalidToken", err)
	}
}
