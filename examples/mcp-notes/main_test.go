package main

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/authd/authd/internal/authdtest"
)

func TestMain(m *testing.M) { os.Exit(authdtest.Main(m)) }

// recorder remembers the MCP server's 401 and 403 answers as the client
// saw them.
type recorder struct {
	mu         sync.Mutex
	challenges []string // "<status> <WWW-Authenticate>"
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		r.mu.Lock()
		r.challenges = append(r.challenges, resp.Status[:3]+" "+resp.Header.Get("WWW-Authenticate"))
		r.mu.Unlock()
	}
	return resp, err
}

// TestStepUpWithGoSDKClient is the example end to end, against authd on
// PostgreSQL: the MCP Go SDK's client connects, is sent by the 401 to the
// metadata and to authd, registers itself, signs in (fake GitHub) with
// notes:read, lists the notes, is refused add_note with 403
// insufficient_scope, authorizes again with notes:write as well, and adds
// the note.
func TestStepUpWithGoSDKClient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resourceURL := "http://" + l.Addr().String() + "/mcp"
	s := authdtest.Start(t, authdtest.Options{Config: `
scopes:
  - {name: notes:read, description: Read your notes}
  - {name: notes:write, description: Add notes}
resources:
  - uri: ` + resourceURL + `
    name: Notes
    claims: [login]
`})
	h, err := newHandler(s.URL, resourceURL)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	const redirect = "http://127.0.0.1:47002/callback"
	browser := s.Browser(redirect)
	var asked []string // the scope of each authorization the client ran
	oauth, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "notes test client", RedirectURIs: []string{redirect},
			GrantTypes: []string{"authorization_code", "refresh_token"}, TokenEndpointAuthMethod: "none",
		}},
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			u, err := url.Parse(args.URL)
			if err != nil {
				return nil, err
			}
			asked = append(asked, u.Query().Get("scope"))
			q, err := browser.Authorize(args.URL)
			if err != nil {
				return nil, err
			}
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	ctx := context.Background()
	client := mcp.NewClient(&mcp.Implementation{Name: "notes-test", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: resourceURL, OAuthHandler: oauth, HTTPClient: &http.Client{Transport: rec, Timeout: 30 * time.Second},
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nauthd:\n%s", err, s.Logs())
	}
	defer session.Close()

	text := func(r *mcp.CallToolResult) string {
		var b strings.Builder
		for _, c := range r.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return b.String()
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "list_notes"})
	if err != nil || res.IsError || text(res) != "no notes" {
		t.Fatalf("list_notes: %v %+v", err, res)
	}
	if len(asked) != 1 || asked[0] != "notes:read" {
		t.Fatalf("first sign-in asked for %q, want notes:read", asked)
	}

	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "add_note", Arguments: map[string]any{"text": "buy milk"}})
	if err != nil || res.IsError || text(res) != "added" {
		t.Fatalf("add_note after step-up: %v %+v", err, res)
	}
	// The server's challenge is in a fixed order (checked exactly below);
	// the SDK client's request is not: go-sdk v1.8.0 unions the granted
	// and challenged scopes through a map (internal/authutil.UnionScopes),
	// so it asks for "notes:write notes:read" in some runs. Order
	// means nothing in a scope (RFC 6749 §3.3), so compare sorted.
	if len(asked) != 2 || strings.Join(slices.Sorted(slices.Values(strings.Fields(asked[1]))), " ") != "notes:read notes:write" {
		t.Fatalf("step-up asked for %q, want notes:read and notes:write", asked)
	}
	metadata := strings.Replace(resourceURL, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1)
	want := []string{
		`401 Bearer scope="notes:read", resource_metadata="` + metadata + `"`,
		`403 Bearer error="insufficient_scope", scope="notes:read notes:write", resource_metadata="` + metadata + `"`,
	}
	rec.mu.Lock()
	got := rec.challenges
	rec.mu.Unlock()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("challenges seen by the client:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "list_notes"})
	if err != nil || text(res) != "buy milk (by alice)" {
		t.Fatalf("list_notes after add_note: %v %q", err, text(res))
	}
}
