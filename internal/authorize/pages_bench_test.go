package authorize

import "testing"

// BenchmarkConsentPage renders the consent page with authd's own
// templates, as every sign-in that asks for consent does.
func BenchmarkConsentPage(b *testing.B) {
	p, err := NewPages(Branding{})
	if err != nil {
		b.Fatal(err)
	}
	d := consentData{
		ClientName: "Bench Client", RedirectHost: "app.example.net", UserName: "bench-user",
		Handle: "bench-handle", CSRF: "bench-csrf", Verified: "dynamic",
		Resources: []consentResource{{Name: "Bench MCP", URI: "https://mcp.example.net/mcp", New: true}},
		NewScopes: []consentScope{{Name: "mcp:tools", Description: "Use tools"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.execute("consent", "Authorize Bench Client", false, d); err != nil {
			b.Fatal(err)
		}
	}
}
