package authorize

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// consentFactsID is the id of the element that holds the consent page's
// facts: who asks and how far that is verified, where the result goes,
// which resources and scopes it gets, and the Approve and Deny buttons.
// They are rendered from the embedded consent_facts.html only; a theme
// places them ({{.Facts}}) but cannot change, hide or imitate them:
// checkConsentFacts runs on every consent page a theme renders, and
// NewPages probes the consent page with every kind of client before authd
// starts (authd's own templates escape what they show, so the probe
// covers them).
const consentFactsID = "authd-consent-facts"

// factsAncestors are the elements the facts may sit in: plain containers.
// Anything else could hide them (hidden, <details>, <template>,
// <noscript>, <dialog>), make them inert, or turn them into something
// else (<a>, <button>, <label>, <select>).
var factsAncestors = map[atom.Atom]bool{
	atom.Html: true, atom.Body: true, atom.Main: true, atom.Div: true,
	atom.Section: true, atom.Article: true,
}

// factsAncestorAttrs are the attributes those containers may carry. Not
// style (the CSP blocks it anyway), hidden, inert, aria-hidden, or the
// presentational attributes of old HTML.
var factsAncestorAttrs = map[string]bool{
	"class": true, "id": true, "lang": true, "dir": true, "role": true,
	"aria-label": true, "aria-labelledby": true,
}

// badgeWords are what the facts say about verification; a theme saying
// them elsewhere on the page could fake a badge.
var badgeWords = []string{"verified", "✔", "✓", "☑", "⚠", "🛡"}

// checkConsentFacts checks a rendered consent page: exactly one facts
// element, inside plain visible containers only. With words, it also
// refuses verification words outside the facts (at start-up, with probe
// data; not per request, where a client or user name may contain them).
func checkConsentFacts(page []byte, words bool) error {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return fmt.Errorf("consent page: %v", err)
	}
	var found []*html.Node
	var outside strings.Builder
	var walk func(n *html.Node, inFacts bool)
	walk = func(n *html.Node, inFacts bool) {
		if n.Type == html.ElementNode && attr(n, "id") == consentFactsID {
			found = append(found, n)
			inFacts = true
		}
		if !inFacts {
			switch n.Type {
			case html.TextNode:
				if p := n.Parent; p == nil || p.DataAtom != atom.Style {
					outside.WriteString(n.Data + " ")
				}
			case html.ElementNode:
				for _, a := range n.Attr {
					if a.Key == "alt" || a.Key == "title" || strings.HasPrefix(a.Key, "aria-") || a.Key == "value" || a.Key == "placeholder" {
						outside.WriteString(a.Val + " ")
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inFacts)
		}
	}
	walk(doc, false)
	switch len(found) {
	case 0:
		return errors.New("the consent page does not show the consent facts: consent.html must contain {{.Facts}} (as HTML, not inside an attribute, comment, <title>, <textarea> or <noscript>), and layout.html {{template \"content\" .Data}}")
	case 1:
	default:
		return fmt.Errorf("the consent page has %d elements with id %q: show {{.Facts}} once and do not imitate it", len(found), consentFactsID)
	}
	for p := found[0].Parent; p != nil && p.Type != html.DocumentNode; p = p.Parent {
		if p.Type != html.ElementNode {
			continue
		}
		if !factsAncestors[p.DataAtom] {
			return fmt.Errorf("the consent facts are inside <%s>, which may hide or alter them; place {{.Facts}} inside <main>, <div>, <section> or <article> only", p.Data)
		}
		for _, a := range p.Attr {
			if !factsAncestorAttrs[a.Key] {
				return fmt.Errorf("the consent facts are inside <%s %s=…>, which may hide them; the containers around {{.Facts}} may carry only class, id, lang, dir, role and aria-label(ledby)", p.Data, a.Key)
			}
		}
	}
	if words {
		text := strings.ToLower(outside.String())
		for _, w := range badgeWords {
			if strings.Contains(text, w) {
				return fmt.Errorf("the consent page says %q outside the consent facts: only authd's own badge may speak of verification (a theme could claim an unverified application is verified)", w)
			}
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// probeConsent renders the consent page for every kind of client
// (operator-registered, metadata document, self-registered, loopback,
// suspicious name, more access) and checks each with checkConsentFacts, so
// that a theme that drops, hides or fakes the facts stops authd at
// start-up rather than on a user's consent page.
func (p *Pages) probeConsent() error {
	base := consentData{
		ClientName: "Probe Client", RedirectHost: "app.example.net", UserName: "probe-user",
		Handle: "probe-handle", CSRF: "probe-csrf",
		Resources:      []consentResource{{Name: "Probe MCP", URI: "https://mcp.example.net/mcp", New: true}},
		NewScopes:      []consentScope{{Name: "probe:read", Description: "Read probes"}},
		OldScopes:      []consentScope{{Name: "probe:old", Description: "Old probes"}},
		UpstreamAccess: []consentUpstream{{Resource: "Probe MCP", Upstream: "Probe SSO", Scopes: []string{"repo"}}},
	}
	var probes []consentData
	for _, v := range []string{"config", "metadata", "dynamic"} {
		d := base
		d.Verified = v
		if v == "metadata" {
			d.ClientHost = "client.example.net"
		}
		probes = append(probes, d)
		d.Loopback, d.RedirectHost, d.StepUp, d.Deceptive = true, "127.0.0.1:8765", true, true
		probes = append(probes, d)
	}
	for _, dev := range []bool{false, true} {
		for _, d := range probes {
			page, err := p.execute("consent", "Authorize "+d.ClientName, dev, d)
			if err != nil {
				return fmt.Errorf("consent page (client verification %q): %v", d.Verified, err)
			}
			if err := checkConsentFacts(page, true); err != nil {
				return fmt.Errorf("consent page (client verification %q): %v", d.Verified, err)
			}
		}
	}
	return nil
}
