package tokens

import (
	"strings"
	"testing"
)

// The JWT shape test moved here from internal/introspect's TestTokenShapes
// with the code it tests.
func TestJWTShape(t *testing.T) {
	for s, want := range map[string]bool{
		"a.b.c": true, "eyJ.eyJ.sig-_": true, "a.b.": false, ".b.c": false, "a..c": false,
		"a.b": false, "a.b.c.d": false, "a.b.c=": false, "a b.c.d": false, "": false,
	} {
		if isJWT(s) != want {
			t.Errorf("isJWT(%q) = %v", s, !want)
		}
	}
}

// TestKindOf: the one place that tells tokens apart, by shape alone.
func TestKindOf(t *testing.T) {
	for raw, want := range map[string]Kind{
		"authd_at_abc":                          KindOpaque,
		"authd_rt_abc":                          KindRefresh,
		"eyJhbGciOiJFUzI1NiJ9.eyJ9.c2ln":        KindJWT,
		"a.b":                                   KindUnknown,
		"":                                      KindUnknown,
		"Bearer x":                              KindUnknown,
		strings.Repeat("a.", 5000) + "a":        KindUnknown,
		"authd_at_" + strings.Repeat("a", 9000): KindUnknown, // over maxTokenLen
	} {
		if got := KindOf(raw); got != want {
			t.Errorf("KindOf(%.30q) = %v, want %v", raw, got, want)
		}
	}
}
