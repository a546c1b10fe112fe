package main

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd/internal/config"
)

// TestREADMEDocumentsEveryKey keeps the configuration reference honest:
// every configuration key, and its environment variable, appears in the
// README, either literally or (for keys of a repeated group such as rate
// limits) as `<group>.*` with the leaf named in the text.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, k := range leafKeys(reflect.ValueOf(config.Defaults()), "") {
		if strings.Contains(readme, "`"+k.name+"`") || strings.Contains(readme, "`"+k.name+"`,") {
			if !strings.Contains(readme, envName(k.name)) {
				t.Errorf("README documents %s but not its variable %s", k.name, envName(k.name))
			}
			continue
		}
		dot := strings.LastIndex(k.name, ".")
		if dot > 0 && strings.Contains(readme, "`"+k.name[:dot]+".*`") && strings.Contains(readme, "`"+k.name[dot+1:]+"`") {
			continue
		}
		t.Errorf("README's configuration reference lacks %s (%s)", k.name, envName(k.name))
	}
}

// TestCIRunsTheREADMECommands keeps the newcomer's set-up honest: .ci/run
// runs, verbatim, the README's set-up line and test command ("Two
// commands"), and installs nothing the README does not show, so a green CI means a fresh
// machine following the README gets a green suite. (The other command,
// `serve --dev`, runs a server; TestDockerBuild runs it for real.)
func TestCIRunsTheREADMECommands(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Two commands")
	if start < 0 {
		t.Fatal(`README has no "## Two commands" section`)
	}
	section = section[start+3:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var lines []string
	inBlock := false
	for _, l := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(l, "```"):
			inBlock = !inBlock
		case inBlock && strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#"):
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	ciLines := map[string]bool{}
	var ciInstalls []string
	for _, l := range strings.Split(string(ci), "\n") {
		l = strings.TrimSpace(l)
		ciLines[l] = true
		if strings.Contains(l, "apt-get install") || strings.Contains(l, "apt install") {
			ciInstalls = append(ciInstalls, l)
		}
	}
	var sawTest, sawInstall bool
	for _, l := range lines {
		if strings.HasPrefix(l, "go run ./cmd/authd serve") {
			continue
		}
		if !ciLines[l] {
			t.Errorf(".ci/run does not run the README's line %q verbatim", l)
		}
		sawTest = sawTest || l == "go test -race ./..."
		sawInstall = sawInstall || strings.Contains(l, "apt-get install")
	}
	if !sawTest {
		t.Errorf("README's Two commands lack `go test -race ./...`; found %q", lines)
	}
	if !sawInstall {
		t.Errorf("README's Two commands show no install line; found %q", lines)
	}
	// Any other install (an extra gate's) is shown in the README too.
	for _, l := range ciInstalls {
		if !slices.Contains(lines, l) && !strings.Contains(string(readme), "\n"+l+"\n") {
			t.Errorf(".ci/run installs more than the README shows: %q", l)
		}
	}
}
