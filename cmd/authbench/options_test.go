package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"-op", "register"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 15*time.Second || o.concurrency != 32 || o.target.String() != "http://localhost:8080" {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseOptions([]string{"-op", "code-flow", "-target", "https://auth.example.com/", "-allow-remote", "-requests", "10"}, io.Discard)
	if err != nil || o.target.String() != "https://auth.example.com" || o.duration != 0 || o.requests != 10 {
		t.Fatalf("remote target with -allow-remote: %+v, %v", o, err)
	}
	for _, target := range []string{"http://127.0.0.1:9000", "http://[::1]:9000", "http://LOCALHOST"} {
		if _, err := parseOptions([]string{"-op", "register", "-target", target}, io.Discard); err != nil {
			t.Errorf("loopback target %s refused: %v", target, err)
		}
	}
}

func TestParseOptionsRefuses(t *testing.T) {
	intro := []string{"-introspect-token", "t"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "-op must be one of"},
		{[]string{"-op", "password"}, "-op must be one of"},
		{[]string{"-op", "register", "-concurrency", "0"}, "-concurrency"},
		{[]string{"-op", "register", "-concurrency", "100000"}, "-concurrency"},
		{[]string{"-op", "register", "-duration", "1h"}, "-duration"},
		{[]string{"-op", "register", "-duration", "-1s"}, "-duration"},
		{[]string{"-op", "register", "-requests", "1000000000"}, "-requests"},
		{[]string{"-op", "register", "-requests", "-5"}, "-requests"},
		{[]string{"-op", "register", "-requests", "5", "-duration", "5s"}, "not both"},
		{[]string{"-op", "register", "-warmup", "2h"}, "-warmup"},
		{[]string{"-op", "register", "-timeout", "0s"}, "-timeout"},
		{[]string{"-op", "register", "-target", "http://192.0.2.1:8080"}, "not a loopback"},
		{[]string{"-op", "register", "-target", "http://auth.example.com"}, "not a loopback"},
		{[]string{"-op", "register", "-target", "ftp://127.0.0.1"}, "http or https"},
		{[]string{"-op", "register", "-target", "http://127.0.0.1/?x=1"}, "no query"},
		{[]string{"-op", "client-credentials", "-client-id", "a"}, "go together"},
		{[]string{"-op", "introspect"}, "needs -introspect-client-id"},
		{append([]string{"-op", "introspect-opaque"}, intro...), "needs -opaque-resource"},
		{append([]string{"-op", "introspect", "-introspect-client-id", "a", "-introspect-client-secret", "b"}, intro...), "not both"},
		{append([]string{"-op", "introspect", "-token-from", "magic"}, intro...), "-token-from"},
		{[]string{"-op", "code-flow", "-user", "has space"}, "-user"},
		{[]string{"-op", "register", "extra"}, "unexpected arguments"},
	} {
		_, err := parseOptions(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestPrefillSpecValidate(t *testing.T) {
	if err := (prefillSpec{clients: 100_000, users: 10_000, grants: 1_000_000, expired: 1_000_000}).validate(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []prefillSpec{
		{clients: maxPrefillRows + 1},
		{clients: -1},
		{grants: 10, users: 1},    // no clients
		{expired: 10, clients: 1}, // no users
	} {
		if s.validate() == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if got := params("SELECT $1, $12, $3"); got != 12 {
		t.Errorf("params = %d, want 12", got)
	}
}
