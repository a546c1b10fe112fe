// Package authd knows one thing about the module as a whole: the Go release
// its go.mod asks for. go.mod is embedded, so a binary can tell at start-up
// that it was built with an older Go (GOTOOLCHAIN=local ignores go.mod's
// toolchain line and silently builds with whatever Go is installed, which
// may lack security fixes that SECURITY.md counts on).
package authd

import (
	_ "embed"
	"strconv"
	"strings"
)

//go:embed go.mod
var goMod string

// RequiredGo is the Go release go.mod names: its toolchain line, else its
// go line, e.g. "go1.26.11".
func RequiredGo() string {
	var goLine string
	for _, l := range strings.Split(goMod, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "toolchain":
			return f[1]
		case len(f) == 2 && f[0] == "go":
			goLine = "go" + f[1]
		}
	}
	return goLine
}

// OlderGo reports whether the Go release have (as runtime.Version prints
// it, e.g. "go1.26.8") is older than want. Development builds of Go
// ("devel …") are never older.
func OlderGo(have, want string) bool {
	h, ok1 := goRelease(have)
	w, ok2 := goRelease(want)
	if !ok1 || !ok2 {
		return false
	}
	for i := range h {
		if h[i] != w[i] {
			return h[i] < w[i]
		}
	}
	return false
}

// goRelease parses "go1.26.8" (or "go1.26", "go1.26rc1") into [1 26 8].
func goRelease(v string) ([3]int, bool) {
	var out [3]int
	v, ok := strings.CutPrefix(v, "go")
	if !ok {
		return out, false
	}
	if i := strings.IndexAny(v, " -+"); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexAny(v, "abcdefghijklmnopqrstuvwxyz"); i >= 0 {
		v = v[:i] // release candidates count as the release before .0
	}
	parts := strings.Split(v, ".")
	if len(parts) > 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	return out, true
}
