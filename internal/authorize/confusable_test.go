package authorize

import "testing"

func TestDeceptiveName(t *testing.T) {
	for _, tc := range []struct {
		name      string
		deceptive bool
	}{
		{"Claude", false},
		{"Claude Desktop 2.0 (beta)", false},
		{"Кларa", true},           // Cyrillic with a Latin a
		{"\u0421laude", true},     // Cyrillic С + "laude"
		{"Cl\u0430ude", true},     // Latin with a Cyrillic а
		{"G\u03bfogle", true},     // Greek ο
		{"Ｃｌａｕｄｅ", true},          // full-width forms
		{"Claude１", true},         // one full-width digit
		{"Яндекс", false},         // wholly Cyrillic
		{"Ελληνικά", false},       // wholly Greek
		{"日本語アプリ for MCP", false}, // Han + Katakana + Latin: ordinary Japanese
		{"한국어 앱 MCP", false},      // Hangul + Latin
		{"Café Ünïcode", false},   // Latin with diacritics
		{"", false},
	} {
		if got := deceptiveName(tc.name); got != tc.deceptive {
			t.Errorf("deceptiveName(%q) = %v, want %v", tc.name, got, tc.deceptive)
		}
	}
}
