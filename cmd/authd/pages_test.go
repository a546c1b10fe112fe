package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesAThemeWithoutTheConsentFacts: a pages.template_dir whose
// consent page drops the facts stops `authd serve` before it listens,
// naming the setting, the file and the reason.
func TestServeRefusesAThemeWithoutTheConsentFacts(t *testing.T) {
	t.Parallel()
	theme := t.TempDir()
	if err := os.WriteFile(filepath.Join(theme, "consent.html"), []byte(`{{define "content"}}<p>Looks fine to us.</p>{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--dev"}, envOf(map[string]string{
		"AUTHD_LISTEN": freeAddr(t), "AUTHD_PAGES_TEMPLATE_DIR": theme,
	}), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "pages.template_dir") || !strings.Contains(err.Error(), "{{.Facts}}") {
		t.Fatalf("serve with a theme that drops the consent facts: %v", err)
	}
}
