package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Operations authbench can time. Each request of an op is one unit of
// work: one HTTP request, except code-flow, where one unit is a whole
// authorization (every redirect, the login form, consent and /token).
const (
	opClientCredentials = "client-credentials"
	opIntrospect        = "introspect"
	opIntrospectOpaque  = "introspect-opaque"
	opRegister          = "register"
	opRefresh           = "refresh"
	opCodeFlow          = "code-flow"
)

var ops = []string{opClientCredentials, opIntrospect, opIntrospectOpaque, opRegister, opRefresh, opCodeFlow}

// Bounds that keep a mistyped flag from turning a benchmark into a
// denial-of-service tool or a run that never ends.
const (
	maxConcurrency = 1024
	maxDuration    = 10 * time.Minute
	maxRequests    = 5_000_000
	maxWarmup      = time.Minute
)

// options are the load run's flags, validated.
type options struct {
	target      *url.URL
	op          string
	concurrency int
	duration    time.Duration // exclusive with requests; one of them is set
	requests    int
	warmup      time.Duration
	timeout     time.Duration // per HTTP request
	json        bool
	allowRemote bool

	// client-credentials (and the token introspect ops introspect): an
	// existing confidential client; empty: register one.
	clientID, clientSecret string
	// Callers of /introspect: a client allowed to introspect, or a static
	// bearer token (introspection.bearer_tokens).
	introspectClientID, introspectSecret, introspectToken string
	// resource is the RFC 8707 resource of tokens (empty: the server's
	// default); opaqueResource is one configured with token_format: opaque.
	resource, opaqueResource string
	// tokenFrom says how the introspected JWT is obtained:
	// client-credentials (a machine token) or code-flow (a user's token,
	// whose introspection also reads the grant and the user).
	tokenFrom string
	// user is the dev-login user name prefix for code flows.
	user string
	// cpuProfile, when set, is where authbench writes its own CPU profile
	// (to see what the load generator costs the shared machine).
	cpuProfile string
}

// parseOptions parses and validates args (without the program name).
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var target string
	fs.StringVar(&target, "target", "http://localhost:8080", "authd issuer URL (the base URL the server calls itself by)")
	fs.StringVar(&o.op, "op", "", "operation: "+strings.Join(ops, ", "))
	fs.IntVar(&o.concurrency, "concurrency", 32, fmt.Sprintf("parallel workers (1-%d)", maxConcurrency))
	fs.DurationVar(&o.duration, "duration", 0, fmt.Sprintf("how long to run (at most %s; default 15s unless -requests is set)", maxDuration))
	fs.IntVar(&o.requests, "requests", 0, fmt.Sprintf("how many operations to run (at most %d), instead of -duration", maxRequests))
	fs.DurationVar(&o.warmup, "warmup", 0, fmt.Sprintf("untimed load before measuring (at most %s)", maxWarmup))
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of each HTTP request")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow a target that is not on a loopback address")
	fs.StringVar(&o.clientID, "client-id", "", "confidential client with the client_credentials grant (default: register one)")
	fs.StringVar(&o.clientSecret, "client-secret", "", "its secret")
	fs.StringVar(&o.introspectClientID, "introspect-client-id", "", "client allowed to introspect (config: introspect: true)")
	fs.StringVar(&o.introspectSecret, "introspect-client-secret", "", "its secret")
	fs.StringVar(&o.introspectToken, "introspect-token", "", "static introspection bearer token, instead of a client")
	fs.StringVar(&o.resource, "resource", "", "resource (RFC 8707) of the tokens obtained (default: the server's default resource)")
	fs.StringVar(&o.opaqueResource, "opaque-resource", "", "resource configured with token_format: opaque (introspect-opaque)")
	fs.StringVar(&o.tokenFrom, "token-from", "client-credentials", "introspect: obtain the JWT by client-credentials or code-flow")
	fs.StringVar(&o.user, "user", "bench", "dev login user name prefix (code-flow, refresh)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write authbench's own CPU profile of the timed run to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if o.target, err = parseTarget(target, o.allowRemote); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return &o, nil
}

func (o *options) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !slices.Contains(ops, o.op) {
		add("-op must be one of %s", strings.Join(ops, ", "))
	}
	if o.concurrency < 1 || o.concurrency > maxConcurrency {
		add("-concurrency must be between 1 and %d", maxConcurrency)
	}
	switch {
	case o.duration != 0 && o.requests != 0:
		add("set -duration or -requests, not both")
	case o.requests < 0 || o.requests > maxRequests:
		add("-requests must be between 1 and %d", maxRequests)
	case o.duration < 0 || o.duration > maxDuration:
		add("-duration must be positive and at most %s", maxDuration)
	case o.duration == 0 && o.requests == 0:
		o.duration = 15 * time.Second
	}
	if o.warmup < 0 || o.warmup > maxWarmup {
		add("-warmup must be between 0 and %s", maxWarmup)
	}
	if o.timeout <= 0 || o.timeout > time.Minute {
		add("-timeout must be positive and at most 1m")
	}
	if (o.clientID == "") != (o.clientSecret == "") {
		add("-client-id and -client-secret go together")
	}
	if (o.introspectClientID == "") != (o.introspectSecret == "") {
		add("-introspect-client-id and -introspect-client-secret go together")
	}
	if o.introspectClientID != "" && o.introspectToken != "" {
		add("use -introspect-client-id or -introspect-token, not both")
	}
	if o.op == opIntrospect || o.op == opIntrospectOpaque {
		if o.introspectClientID == "" && o.introspectToken == "" {
			add("-op %s needs -introspect-client-id/-introspect-client-secret or -introspect-token", o.op)
		}
	}
	if o.op == opIntrospectOpaque && o.opaqueResource == "" {
		add("-op %s needs -opaque-resource (a resource configured with token_format: opaque)", o.op)
	}
	if o.tokenFrom != opClientCredentials && o.tokenFrom != opCodeFlow {
		add("-token-from must be client-credentials or code-flow")
	}
	if o.user == "" || len(o.user) > 32 || strings.ContainsFunc(o.user, func(r rune) bool { return r <= ' ' || r > '~' }) {
		add("-user must be 1-32 printable ASCII characters without spaces")
	}
	return errors.Join(errs...)
}

// parseTarget accepts an http(s) base URL; unless allowRemote, its host
// must be a loopback address or "localhost", so that a benchmark cannot
// be pointed at someone else's server by accident.
func parseTarget(s string, allowRemote bool) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want an http or https URL such as http://127.0.0.1:8080", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("-target %q: no query, fragment or user info", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !allowRemote && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("-target %q is not a loopback address; pass -allow-remote to load another host", s)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
