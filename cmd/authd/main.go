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
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"go.opentelemetry.io/otel/trace"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/store"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…" (the
// Dockerfile does); otherwise taken from the build information.
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], environFrom(os.Environ()), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authd:", err)
		os.Exit(1)
	}
}

// env is what the commands need from the process, passed explicitly so
// tests can run commands in-process.
type env struct {
	// getenv is the process environment (a map in tests).
	getenv environ
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
	// builtWith, when set, stands for runtime.Version() (tests).
	builtWith string
}

// goVersion is the Go release this binary was built with.
func (e *env) goVersion() string {
	if e.builtWith != "" {
		return e.builtWith
	}
	return runtime.Version()
}

// run executes the command line args.
func run(ctx context.Context, args []string, getenv environ, stdout, stderr io.Writer) error {
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
	root.PersistentFlags().String("config", "", "path to a YAML configuration file (settings also come from AUTHD_* variables)")
	// Audit records of the admin commands' changes: JSON on stderr, one
	// line each (the configuration, and so log.format, is not loaded yet).
	cliAudit := slog.New(slog.NewJSONHandler(e.stderr, nil))
	var clients, users *cobra.Command
	clients = newClientsCmd(func(ctx context.Context) (store.Store, error) {
		return storeOpener(e, withFlagsOf(clients))(ctx)
	}, e.now, cliAudit)
	users = newUsersCmd(func(ctx context.Context) (store.Store, error) {
		return storeOpener(e, withFlagsOf(users))(ctx)
	}, e.now, cliAudit)
	addDatabaseFlag(clients.PersistentFlags())
	addDatabaseFlag(users.PersistentFlags())
	root.AddCommand(
		newServeCmd(e),
		newMigrateCmd(e),
		newConfigCmd(e),
		newVersionCmd(e),
		newHealthcheckCmd(e),
		newKeysCmd(e),
		clients,
		users,
		newPurgeCmd(e),
		newStatsCmd(e),
	)
	addExamples(root)
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
		Use:     "version",
		Short:   "Print the version, VCS revision and Go release of this binary",
		Example: "  authd version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := readBuild()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "authd %s\n", b.Version)
			rev := b.Revision
			if b.Modified {
				rev += " (modified)"
			}
			fmt.Fprintf(w, "  revision: %s\n", rev)
			if b.Time != "" {
				fmt.Fprintf(w, "  built:    %s\n", b.Time)
			}
			fmt.Fprintf(w, "  go:       %s (go.mod names %s)\n", b.GoVersion, authd.RequiredGo())
			if authd.OlderGo(b.GoVersion, authd.RequiredGo()) {
				fmt.Fprintf(w, "  WARNING: built with a Go release older than go.mod's; rebuild with GOTOOLCHAIN=auto\n")
			}
			return nil
		},
	}
}

// buildInfo is what the binary knows of how it was built.
type buildInfo struct {
	Version, Revision, Time, GoVersion string
	Modified                           bool
}

// readBuild combines the -ldflags values (the Dockerfile sets them) with
// the build information the go command records: the module version, the
// VCS revision and time, and the Go release.
func readBuild() buildInfo {
	b := buildInfo{Version: version, Revision: commit, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Revision == "unknown" {
				b.Revision = s.Value
			}
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
