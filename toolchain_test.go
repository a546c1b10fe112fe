package authd

import (
	"os"
	"strings"
	"testing"
)

func TestRequiredGoIsGoModsToolchain(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := RequiredGo(); want == "" || !strings.Contains(string(raw), "toolchain "+want+"\n") {
		t.Fatalf("RequiredGo() = %q, not go.mod's toolchain line:\n%s", want, raw)
	}
}

func TestOlderGo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		have, want string
		older      bool
	}{
		{"go1.26.8", "go1.26.11", true},
		{"go1.26.11", "go1.26.11", false},
		{"go1.26.12", "go1.26.11", false},
		{"go1.27.0", "go1.26.11", false},
		{"go1.25.9", "go1.26.11", true},
		{"go1.26", "go1.26.1", true},
		{"go1.27rc1", "go1.26.11", false},
		{"devel go1.27-abcdef", "go1.26.11", false},
	} {
		if got := OlderGo(tc.have, tc.want); got != tc.older {
			t.Errorf("OlderGo(%q, %q) = %v, want %v", tc.have, tc.want, got, tc.older)
		}
	}
}
