// Command mcp-notes is an MCP server, built with the official MCP Go SDK,
// protected by authd through the github.com/authd/authd/resource package.
// It has two tools: list_notes needs the scope notes:read, which every
// request needs; add_note needs notes:write too, so an MCP client that
// signed in with notes:read alone is answered 403 insufficient_scope and
// asks the user for more (MCP step-up authorization).
//
// Run authd with the resource configured (see README "Protecting a Go MCP
// server"), then:
//
//	go run ./examples/mcp-notes -issuer http://localhost:8080 -resource http://localhost:8090/mcp
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/authd/authd/resource"
	"github.com/authd/authd/resource/mcpsdk"
)

func main() {
	issuer := flag.String("issuer", "http://localhost:8080", "authd's issuer URL")
	resourceURL := flag.String("resource", "http://localhost:8090/mcp", "this server's URL, as configured in authd's resources")
	listen := flag.String("listen", "localhost:8090", "address to listen on")
	flag.Parse()

	h, err := newHandler(*issuer, *resourceURL)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("MCP server at %s, protected by %s", *resourceURL, *issuer)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newHandler is the MCP server behind authd: the RFC 9728 metadata, and
// the MCP endpoint whose tools need scopes.
func newHandler(issuer, resourceURL string) (http.Handler, error) {
	p, err := resource.New(resource.Config{
		Issuer:          issuer,
		Resource:        resourceURL,
		Scopes:          []string{"notes:read"},
		ScopesSupported: []string{"notes:read", "notes:write"},
	})
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(resourceURL)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(p.MetadataPath(), p.MetadataHandler())
	mux.Handle(u.Path, mcpsdk.Handler(p, newServer(), mcpsdk.ToolScopes{"add_note": {"notes:write"}}, nil))
	return mux, nil
}

// notes are shared by every user (an example, not a notes service).
type notes struct {
	mu   sync.Mutex
	list []string
}

type addNoteArgs struct {
	Text string `json:"text" jsonschema:"the note"`
}

// newServer is the MCP server with its two tools.
func newServer() *mcp.Server {
	n := &notes{}
	server := mcp.NewServer(&mcp.Implementation{Name: "mcp-notes", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "list_notes", Description: "List the notes (needs notes:read)"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			text := "no notes"
			if len(n.list) > 0 {
				text = strings.Join(n.list, "\n")
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "add_note", Description: "Add a note (needs notes:write)"},
		func(ctx context.Context, req *mcp.CallToolRequest, args addNoteArgs) (*mcp.CallToolResult, any, error) {
			// Who is calling: the token's identity, with the identity
			// claims authd is configured to give this resource.
			who := "someone"
			if id, ok := mcpsdk.IdentityOf(req); ok {
				who = id.Subject
				if id.Login != "" {
					who = id.Login
				}
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			n.list = append(n.list, fmt.Sprintf("%s (by %s)", args.Text, who))
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "added"}}}, nil, nil
		})
	return server
}
