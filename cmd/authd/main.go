// Command authd is an OAuth 2.1 authorization server for MCP servers.
//
//	authd serve [--dev] [--config authd.yaml]   run the server
//	authd migrate up|down|status                manage the database schema
//	authd clients …                             manage clients
//	authd users list|show|disable|enable        manage users (disable revokes their grants)
//	authd keys rotate|list                      manage signing keys
//	authd purge | stats                         maintenance
//	authd config                                print the effective configuration
//	authd healthcheck                           probe a running server (container HEALTHCHECK)
//	authd version
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authd:", err)
		os.Exit(1)
	}
}

// env is what the commands need from the process, passed explicitly so
// tests can run commands in-process.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	// ready, when set, receives the serving address (tests).
	ready chan<- string
	// upstreamClient, when set, is the HTTP client for upstream identity
	// providers (tests point it at fakes with their own TLS roots).
	upstreamClient *http.Client
	// tracerProvider, when set, replaces the one the OTEL_* variables
	// describe (tests record spans in memory).
	tracerProvider trace.TracerProvider
}

// run executes the command line args.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return newRootCmd(&env{getenv: getenv, stdout: stdout, stderr: stderr, now: time.Now}).
		ExecuteContextC(ctx, args)
}

func newRootCmd(e *env) *rootCmd {
	root := &cobra.Command{
		Use:           "authd",
		Short:         "OAuth 2.1 authorization server for MCP servers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	addConfigFlags(root.PersistentFlags())
	// Audit records of the admin commands' changes: JSON on stderr, one
	// line each (the configuration, and so log.format, is not loaded yet).
	cliAudit := slog.New(slog.NewJSONHandler(e.stderr, nil))
	root.AddCommand(
		newServeCmd(e),
		newMigrateCmd(e),
		newConfigCmd(e),
		newVersionCmd(e),
		newHealthcheckCmd(e),
		newKeysCmd(e),
		newClientsCmd(storeOpener(e, root.PersistentFlags()), e.now, cliAudit),
		newUsersCmd(storeOpener(e, root.PersistentFlags()), e.now, cliAudit),
		newPurgeCmd(e),
		newStatsCmd(e),
	)
	return &rootCmd{root}
}

type rootCmd struct{ *cobra.Command }

// ExecuteContextC runs args with ctx.
func (r *rootCmd) ExecuteContextC(ctx context.Context, args []string) error {
	r.SetArgs(args)
	return r.ExecuteContext(ctx)
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "authd %s (commit %s)\n", version, commit)
			return nil
		},
	}
}
