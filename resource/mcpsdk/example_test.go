package mcpsdk_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/authd/authd/resource"
	"github.com/authd/authd/resource/mcpsdk"
)

type addArgs struct {
	Text string `json:"text"`
}

// An MCP Go SDK server protected by authd: list_notes needs notes:read
// (every request does), add_note notes:write as well. A client without a
// token is sent to sign in with notes:read.
func ExampleHandler() {
	server := mcp.NewServer(&mcp.Implementation{Name: "notes", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "add_note"}, func(ctx context.Context, req *mcp.CallToolRequest, args addArgs) (*mcp.CallToolResult, any, error) {
		id, _ := mcpsdk.IdentityOf(req) // who is calling
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "added by " + id.Subject}}}, nil, nil
	})

	p, err := resource.New(resource.Config{
		Issuer:   "https://auth.example.com",
		Resource: "https://mcp.example.com/mcp",
		Scopes:   []string{"notes:read"},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(p.MetadataPath(), p.MetadataHandler())
	mux.Handle("/mcp", mcpsdk.Handler(p, server, mcpsdk.ToolScopes{"add_note": {"notes:write"}}, nil))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil))
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 401 Bearer scope="notes:read", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
}
