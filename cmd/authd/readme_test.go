package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/authd/authd/internal/config"
)

// TestREADMEDocumentsEveryKey keeps the configuration reference honest:
// every configuration key, and its environment variable, appears in the
// README, either literally or (for keys of a repeated group such as rate
// limits) as `<group>.*` with the leaf named in the text.
func TestREADMEDocumentsEveryKey(t *testing.T) {
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
