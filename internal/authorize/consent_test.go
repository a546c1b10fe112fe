package authorize

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authd/authd/internal/policy"
	"github.com/authd/authd/internal/store"
)

func TestConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"})
	runSubtests(t, e,
		subtest{"deny", testConsentDeny},
		subtest{"CSRF", testConsentCSRF},
		subtest{"remembered, step-up, prompt=consent", testConsentRememberedStepUpAndPromptConsent},
		subtest{"first-party client skips", testSkipConsentClient},
		subtest{"page shows who and where", testConsentPageShowsWhoAndWhere},
		subtest{"server-side request", testConsentUsesServerSideRequest},
		subtest{"confused deputy", testConfusedDeputy},
	)
}

// testConfusedDeputy is the MCP confused-deputy scenario: the upstream
// approves authd's static upstream client silently, and the victim has
// used another client before. A freshly registered client of the
// attacker's still gets nothing without the victim approving it on authd's
// own page, whether or not the victim's browser is signed in.
func testConfusedDeputy(t *testing.T, e *env) {
	trusted := e.addClient(store.Client{})
	victim := e.browser(t)
	a := newAuthz(trusted.ID, appURI)
	e.expectCode(t, victim.decide(victim.get(a.url(e)), "approve"), a)

	attacker := e.addClient(store.Client{Metadata: store.ClientMetadata{ClientName: "Trusted App",
		RedirectURIs: []string{"https://attacker.example/cb"}}})
	for name, b := range map[string]*browser{"signed in": victim, "signed out": e.browser(t)} {
		t.Run(name, func(t *testing.T) {
			e.st.Writes()
			page := b.get(newAuthz(attacker.ID, "https://attacker.example/cb").url(e))
			if !isConsentPage(page) || !strings.Contains(page.body, "attacker.example") || !strings.Contains(page.body, "Unverified") {
				t.Fatalf("attacker's client was not stopped at consent: %d %v", page.status, page.location())
			}
			if w := e.st.Writes(); w["CreateAuthCode"] != 0 || w["AddConsent"] != 0 {
				t.Fatalf("writes %v", w)
			}
		})
	}
}

func testConsentDeny(t *testing.T, e *env) {
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	page := b.get(a.url(e))
	e.st.Writes()
	r := b.decide(page, "deny")
	if r.status != http.StatusSeeOther {
		t.Fatalf("status %d, want 303 after the POST", r.status)
	}
	e.expectRedirectError(t, r, appURI, "access_denied", a.state)
	if w := e.st.Writes(); w["CreateAuthCode"] != 0 || w["AddConsent"] != 0 {
		t.Fatalf("deny wrote %v", w)
	}
	// The request is gone: approving afterwards (double submit) fails.
	e.expectPage(t, b.decide(page, "approve"), http.StatusBadRequest, "expired")
	e.expectNoWrites(t)
}

func testConsentCSRF(t *testing.T, e *env) {
	client := e.addClient(store.Client{})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	page := b.get(a.url(e))
	form := consentForm(t, page)
	e.st.Writes()

	for _, tc := range []struct {
		name   string
		edit   func(f url.Values)
		header []string
		status int
		says   string
	}{
		{"missing token", func(f url.Values) { f.Del("csrf") }, nil, http.StatusForbidden, "security token"},
		{"wrong token", func(f url.Values) { f.Set("csrf", strings.Repeat("A", 43)) }, nil, http.StatusForbidden, "security token"},
		{"token of another request", func(f url.Values) { f.Set("csrf", consentCSRF("authd_rq_other")) }, nil, http.StatusForbidden, "security token"},
		{"cross-site POST", func(f url.Values) {}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "another site"},
		{"cross-origin POST", func(f url.Values) {}, []string{"Origin", "https://evil.example"}, http.StatusForbidden, "another site"},
		{"unknown handle", func(f url.Values) { f.Set("req", strings.Repeat("x", 22)) }, nil, http.StatusBadRequest, "expired"},
		{"no decision", func(f url.Values) { f.Del("decision") }, nil, http.StatusBadRequest, "Approve or Deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("decision", "approve")
			tc.edit(f)
			e.expectPage(t, b.post("/consent", f, tc.header...), tc.status, tc.says)
			e.expectNoWrites(t)
		})
	}
	t.Run("form from another browser", func(t *testing.T) {
		other := e.browser(t)
		f := url.Values{"decision": {"approve"}}
		for k, v := range form {
			f[k] = v
		}
		e.expectPage(t, other.post("/consent", f), http.StatusBadRequest, "expired")
		e.expectNoWrites(t)
	})
	// After all that, the real form still works.
	e.expectCode(t, b.decide(page, "approve"), a)
}

func testConsentRememberedStepUpAndPromptConsent(t *testing.T, e *env) {
	client := e.addClient(store.Client{})
	b := e.browser(t)

	a := newAuthz(client.ID, appURI)
	e.expectCode(t, b.decide(b.get(a.url(e)), "approve"), a)

	// Same scopes and resource again: no page, no upstream (SSO).
	logins := len(e.gh.AuthorizeRequests())
	a2 := newAuthz(client.ID, appURI)
	e.expectCode(t, b.get(a2.url(e)), a2)
	if len(e.gh.AuthorizeRequests()) != logins {
		t.Fatal("signed in browser was sent upstream again")
	}

	// Step-up (MCP insufficient_scope): asks again, showing only the new
	// scope as new.
	a3 := newAuthz(client.ID, appURI)
	a3.scopes = []string{"read", "write"}
	page := b.get(a3.url(e))
	if !isConsentPage(page) {
		t.Fatalf("step-up skipped consent: %d", page.status)
	}
	newSection, oldSection, _ := strings.Cut(page.body, "Already allowed")
	if !strings.Contains(page.body, "more access than you allowed before") ||
		!strings.Contains(newSection, "Change your notes") || strings.Contains(newSection, "Read your notes") ||
		!strings.Contains(oldSection, "Read your notes") {
		t.Fatalf("step-up page does not single out the new scope:\n%s", excerpt(page.body))
	}
	_, c := e.expectCode(t, b.decide(page, "approve"), a3)
	if !equalStrings(c.Scopes, []string{"read", "write"}) {
		t.Fatalf("scopes %v", c.Scopes)
	}
	consent, err := e.st.GetConsent(context.Background(), c.UserID, client.ID)
	if err != nil || !equalStrings(consent.Scopes, []string{"read", "write"}) {
		t.Fatalf("consent %+v %v", consent, err)
	}

	// A new resource is new too.
	a4 := newAuthz(client.ID, appURI)
	a4.resources = []string{resOther}
	page = b.get(a4.url(e))
	if !isConsentPage(page) || !strings.Contains(page.body, "Other MCP") {
		t.Fatalf("new resource skipped consent: %d", page.status)
	}
	b.decide(page, "deny")

	// prompt=consent forces the page although everything was approved.
	a5 := newAuthz(client.ID, appURI)
	a5.extra = map[string]string{"prompt": "consent"}
	page = b.get(a5.url(e))
	if !isConsentPage(page) {
		t.Fatalf("prompt=consent did not ask: %d", page.status)
	}
	e.expectCode(t, b.decide(page, "approve"), a5)

	// prompt=none with consent needed: consent_required, nothing stored.
	a6 := newAuthz(client.ID, appURI)
	a6.resources = []string{resOther}
	a6.extra = map[string]string{"prompt": "none"}
	e.st.Writes()
	e.expectRedirectError(t, b.get(a6.url(e)), appURI, "consent_required", a6.state)
	e.expectNoWrites(t)

	// prompt=none with everything approved: a code without interaction.
	a7 := newAuthz(client.ID, appURI)
	a7.extra = map[string]string{"prompt": "none"}
	e.expectCode(t, b.get(a7.url(e)), a7)
}

// TestConsentPerResource: consent is remembered per resource. Scope admin
// approved for one resource and read for another is no consent to admin on
// the second (a confused deputy through the unions of scopes and
// resources); the page asks, lists as already allowed only what was
// approved for the resources asked for now, and the approval is then
// remembered for that resource.
func TestConsentPerResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []string{"github"}, func(h *Handler) {
		h.Policy.Resources = []policy.Resource{
			{URI: resMCP, Name: "Example MCP", Scopes: []string{"read", "admin"}},
			{URI: resOther, Name: "Other MCP", Scopes: []string{"read", "admin"}},
		}
	})
	client := e.addClient(store.Client{})
	b := e.browser(t)
	ask := func(resources, scopes []string) *authz {
		a := newAuthz(client.ID, appURI)
		a.resources, a.scopes = resources, scopes
		return a
	}
	approve := func(what string, a *authz) {
		t.Helper()
		page := b.get(a.url(e))
		if !isConsentPage(page) {
			t.Fatalf("%s: no consent page: %d %v", what, page.status, page.location())
		}
		e.expectCode(t, b.decide(page, "approve"), a)
	}
	approve("admin on A", ask([]string{resMCP}, []string{"admin"}))
	approve("read on B", ask([]string{resOther}, []string{"read"}))

	a := ask([]string{resOther}, []string{"read", "admin"})
	page := b.get(a.url(e))
	if !isConsentPage(page) {
		t.Fatalf("admin on B, approved only for A, skipped consent: %d %v", page.status, page.location())
	}
	newSection, oldSection, _ := strings.Cut(page.body, "Already allowed")
	if !strings.Contains(newSection, "Administer the server") || strings.Contains(oldSection, "Administer the server") ||
		strings.Contains(newSection, "Read your notes") || !strings.Contains(oldSection, "Read your notes") {
		t.Fatalf("page does not single out admin as new for B:\n%s", excerpt(page.body))
	}
	e.expectCode(t, b.decide(page, "approve"), a)
	a = ask([]string{resOther}, []string{"admin"})
	e.expectCode(t, b.get(a.url(e)), a) // remembered for B now

	// Both resources at once: covered only where each has the scope. read
	// was never approved for A, so nothing is already allowed.
	a = ask([]string{resMCP, resOther}, []string{"read"})
	page = b.get(a.url(e))
	if !isConsentPage(page) || strings.Contains(page.body, "Already allowed") {
		t.Fatalf("read on A and B, approved only for B: %d\n%s", page.status, excerpt(page.body))
	}
	e.expectCode(t, b.decide(page, "approve"), a)
	a = ask([]string{resMCP, resOther}, []string{"admin", "read"})
	_, code := e.expectCode(t, b.get(a.url(e)), a)

	consent, err := e.st.GetConsent(context.Background(), code.UserID, client.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !equalStrings(consent.Approvals[resMCP], []string{"admin", "read"}) ||
		!equalStrings(consent.Approvals[resOther], []string{"read", "admin"}) || len(consent.Approvals) != 2 {
		t.Fatalf("approvals %v", consent.Approvals)
	}
}

func testSkipConsentClient(t *testing.T, e *env) {
	client := e.addClient(store.Client{Source: store.SourceConfig, SkipConsent: true})
	b := e.browser(t)
	a := newAuthz(client.ID, appURI)
	e.expectCode(t, b.get(a.url(e)), a)
	if w := e.st.Writes(); w["AddConsent"] != 0 {
		t.Fatalf("writes %v", w)
	}
}

func testConsentPageShowsWhoAndWhere(t *testing.T, e *env) {
	for _, tc := range []struct {
		name     string
		client   store.Client
		redirect string
		want     []string
		not      []string
	}{
		{"dynamic, loopback", store.Client{Metadata: store.ClientMetadata{ClientName: `<script>alert(1)</script>`, RedirectURIs: []string{"http://127.0.0.1/cb"}}},
			"http://127.0.0.1:4711/cb",
			[]string{"Unverified", "127.0.0.1:4711", "runs on your computer", "&lt;script&gt;alert(1)&lt;/script&gt;"},
			[]string{"<script>", "Verified:"}},
		{"config", store.Client{Source: store.SourceConfig, Metadata: store.ClientMetadata{ClientName: "Operator App"}},
			appURI, []string{"Verified: registered by the operator", "app.example.com"}, []string{"Unverified", "runs on your computer"}},
		{"metadata document", store.Client{ID: "https://client.example.org/oauth/metadata.json", Source: store.SourceMetadata,
			Metadata: store.ClientMetadata{ClientName: "Doc App"}},
			appURI, []string{"Verified domain", "client.example.org"}, []string{"Unverified"}},
		{"private-use scheme", store.Client{Metadata: store.ClientMetadata{RedirectURIs: []string{"cursor://anysphere.cursor-retrieval/oauth/callback"}}},
			"cursor://anysphere.cursor-retrieval/oauth/callback", []string{"cursor://anysphere.cursor-retrieval"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.addClient(tc.client)
			b := e.browser(t)
			page := b.get(newAuthz(c.ID, tc.redirect).url(e))
			e.expectPage(t, page, http.StatusOK, "Approve")
			for _, s := range tc.want {
				if !strings.Contains(page.body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(page.body, s) {
					t.Errorf("page shows %q", s)
				}
			}
			// The consent page may not restrict form-action: Chrome would
			// block the redirect to the client after approving.
			if strings.Contains(page.header.Get("Content-Security-Policy"), "form-action") {
				t.Error("consent page CSP has form-action")
			}
		})
	}
}

// testConsentUsesServerSideRequest: the form cannot change what is
// approved, and a client changed meanwhile is re-checked.
func testConsentUsesServerSideRequest(t *testing.T, e *env) {
	t.Run("extra form fields are ignored", func(t *testing.T) {
		client := e.addClient(store.Client{})
		b := e.browser(t)
		a := newAuthz(client.ID, appURI)
		f := consentForm(t, b.get(a.url(e)))
		f.Set("decision", "approve")
		f.Set("scope", "admin write")
		f.Set("redirect_uri", "https://evil.example/cb")
		f.Set("resource", resOther)
		f.Set("code_challenge", strings.Repeat("A", 43))
		f.Set("client_id", "other")
		_, c := e.expectCode(t, b.post("/consent", f), a)
		if !equalStrings(c.Scopes, []string{"read"}) || !equalStrings(c.Resources, []string{resMCP}) || c.RedirectURI != appURI || c.ClientID != client.ID {
			t.Fatalf("code %+v", c)
		}
	})
	t.Run("redirect URI removed meanwhile", func(t *testing.T) {
		client := e.addClient(store.Client{})
		b := e.browser(t)
		page := b.get(newAuthz(client.ID, appURI).url(e))
		client.Metadata.RedirectURIs = []string{"https://app.example.com/new"}
		if err := e.st.UpdateClient(context.Background(), client); err != nil {
			t.Fatal(err)
		}
		e.st.Writes()
		e.expectPage(t, b.decide(page, "approve"), http.StatusBadRequest, "not redirected")
		if w := e.st.Writes(); w["CreateAuthCode"] != 0 {
			t.Fatalf("writes %v", w)
		}
	})
	t.Run("client deleted meanwhile", func(t *testing.T) {
		client := e.addClient(store.Client{})
		b := e.browser(t)
		page := b.get(newAuthz(client.ID, appURI).url(e))
		if err := e.st.DeleteClient(context.Background(), client.ID); err != nil {
			t.Fatal(err)
		}
		e.st.Writes()
		r := b.decide(page, "approve")
		if r.status == http.StatusOK || r.location() != nil {
			t.Fatalf("status %d location %v", r.status, r.location())
		}
		if w := e.st.Writes(); w["CreateAuthCode"] != 0 {
			t.Fatalf("writes %v", w)
		}
	})
	t.Run("signed out meanwhile", func(t *testing.T) {
		client := e.addClient(store.Client{})
		b := e.browser(t)
		page := b.get(newAuthz(client.ID, appURI).url(e))
		apps := b.get("/apps")
		f := url.Values{"csrf": {csrfRe.FindStringSubmatch(apps.body)[1]}}
		// Logout answers 303 to /apps, which then says "not signed in".
		if r := b.post("/logout", f); r.status != http.StatusOK || r.url.Path != "/apps" || !strings.Contains(r.body, "You are not signed in") {
			t.Fatalf("logout ended at %d %s", r.status, r.url)
		}
		e.st.Writes()
		e.expectPage(t, b.decide(page, "approve"), http.StatusBadRequest, "not signed in")
		if w := e.st.Writes(); w["CreateAuthCode"] != 0 || w["AddConsent"] != 0 {
			t.Fatalf("writes %v", w)
		}
	})
}

var errDenied = errors.New("not on the list")
