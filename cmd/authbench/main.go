// Command authbench is authd's load generator. It drives a running authd
// over HTTP with one operation at a time (client_credentials tokens,
// introspection of JWT or opaque tokens, dynamic registration, refresh
// token rotation, or the whole authorization code flow with PKCE through
// the development login and consent), preparing what it needs before
// timing starts, and reports throughput, latency percentiles and outcomes
// by HTTP status, as text or JSON.
//
//	authbench -op client-credentials -concurrency 32 -duration 15s
//	authbench prefill -database-url postgres://... -clients 100000 -grants 1000000 -expired 1000000
//
// Only loopback targets are accepted unless -allow-remote is given: it is a
// benchmark, not a stress tool for other people's servers. See
// docs/performance.md for the method and the configuration used.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "authbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "prefill" {
		return runPrefill(ctx, args[1:], stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	b := &bench{o: o, api: newAPI(o.target.String(), o.concurrency, o.timeout)}
	if err := b.prepare(ctx); err != nil {
		return fmt.Errorf("preparing %s: %w", o.op, err)
	}
	res, err := load(ctx, o, b, time.Now)
	if err != nil {
		return err
	}
	return res.write(stdout, o.json)
}
