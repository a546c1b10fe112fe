package upstream

import (
	"net/http"
	"testing"
)

func TestNextLink(t *testing.T) {
	tests := []struct{ header, want string }{
		{`<https://api.github.com/user/orgs?page=2>; rel="next", <https://api.github.com/user/orgs?page=5>; rel="last"`, "https://api.github.com/user/orgs?page=2"},
		{`<https://api.github.com/user/orgs?page=1>; rel="first", <https://api.github.com/user/orgs?page=3>; rel=next`, "https://api.github.com/user/orgs?page=3"},
		{`<https://api.github.com/user/orgs?page=1>; rel="prev"`, ""},
		{`https://api.github.com/x; rel="next"`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Link", tt.header)
		}
		if got := nextLink(h); got != tt.want {
			t.Errorf("nextLink(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

// A Link header must not lead the access token off the API root.
func TestSameRoot(t *testing.T) {
	root := "https://ghe.example.com/api/v3"
	tests := map[string]bool{
		"https://ghe.example.com/api/v3/user/orgs?page=2": true,
		"https://GHE.example.com/api/v3/user/teams":       true,
		"http://ghe.example.com/api/v3/user/orgs":         false,
		"https://evil.example/api/v3/user/orgs":           false,
		"https://ghe.example.com/api/v3evil/user":         false,
		"https://ghe.example.com/other":                   false,
		"https://ghe.example.com.evil/api/v3/user":        false,
	}
	for next, want := range tests {
		if got := sameRoot(root, next); got != want {
			t.Errorf("sameRoot(%q) = %v, want %v", next, got, want)
		}
	}
}

func TestBoundedClientDoesNotModifyCaller(t *testing.T) {
	hc := &http.Client{}
	c := boundedClient(hc)
	if hc.Timeout != 0 || hc.CheckRedirect != nil {
		t.Error("caller's client was modified")
	}
	if c.Timeout != callTimeout || c.CheckRedirect == nil {
		t.Errorf("bounded client: timeout %v, redirect check %v", c.Timeout, c.CheckRedirect != nil)
	}
}
