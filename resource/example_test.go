package resource_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/authd/authd/resource"
)

// A resource server behind authd: the RFC 9728 metadata, and an endpoint
// that needs a token with notes:read. A request without a token is told
// where to sign in.
func ExampleProtector_Middleware() {
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
	mux.Handle("/mcp", p.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := resource.IdentityFrom(r.Context())
		fmt.Fprintf(w, "hello %s", id.Subject)
	})))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil))
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 401 Bearer scope="notes:read", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
}

// A handler that needs more than every request: a token with notes:read
// alone gets the step-up challenge naming what this request needs.
func ExampleProtector_RequireScopes() {
	p, err := resource.New(resource.Config{
		Issuer:   "https://auth.example.com",
		Resource: "https://mcp.example.com/mcp",
		Scopes:   []string{"notes:read"},
	})
	if err != nil {
		log.Fatal(err)
	}
	write := p.RequireScopes("notes:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "written")
	}))

	// What Middleware puts in the context for a valid token with
	// notes:read only.
	req := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp/notes", nil)
	req = req.WithContext(resource.WithIdentity(req.Context(), &resource.Identity{Subject: "u1", Scopes: []string{"notes:read"}}))
	rec := httptest.NewRecorder()
	write.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 403 Bearer error="insufficient_scope", scope="notes:read notes:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
}

// The RFC 9728 document MCP clients fetch to find the authorization server.
func ExampleProtector_MetadataHandler() {
	p, err := resource.New(resource.Config{
		Issuer:          "https://auth.example.com",
		Resource:        "https://mcp.example.com/mcp",
		Scopes:          []string{"notes:read"},
		ScopesSupported: []string{"notes:read", "notes:write"},
	})
	if err != nil {
		log.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.MetadataHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://mcp.example.com"+p.MetadataPath(), nil))
	fmt.Println(p.MetadataPath())
	fmt.Println(rec.Body.String())
	// Output:
	// /.well-known/oauth-protected-resource/mcp
	// {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["notes:read","notes:write"],"bearer_methods_supported":["header"]}
}

// Checking tokens by introspection, on every request, so that a
// revocation at authd is seen at once (authd: a client with introspect:
// true).
func ExampleConfig_introspection() {
	p, err := resource.New(resource.Config{
		Issuer:   "https://auth.example.com",
		Resource: "https://mcp.example.com/mcp",
		Scopes:   []string{"notes:read"},
		Introspection: &resource.Introspection{
			ClientID:     "notes-server",
			ClientSecret: "a-long-random-secret",
			CacheTTL:     0, // ask authd every time
		},
	})
	fmt.Println(p != nil, err)
	// Output:
	// true <nil>
}

// Authorizing by who the user is: the identity claims authd gives this
// resource (resources[].claims: [groups, upstream]).
func ExampleIdentityFrom() {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resource.IdentityFrom(r.Context())
		if !ok || !id.InGroup("acme/admins") {
			http.Error(w, "admins only", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "hello %s (GitHub user %s)", id.Upstream.Login, id.Upstream.ID)
	})

	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req = req.WithContext(resource.WithIdentity(req.Context(), &resource.Identity{
		Subject: "u1", Groups: []string{"acme", "acme/admins"},
		Upstream: resource.Upstream{Provider: "github", ID: "583231", Login: "octocat"},
	}))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	// Output:
	// hello octocat (GitHub user 583231)
}
