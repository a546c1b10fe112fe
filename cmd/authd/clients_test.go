package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/spf13/cobra"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// sharedStore lets several commands use one test database: each command
// closes the store it opened, as it must in production.
type sharedStore struct{ store.Store }

func (sharedStore) Close() {}

type clientsCLI struct {
	t     *testing.T
	st    store.Store
	now   time.Time
	audit bytes.Buffer // the commands' audit log
}

// run executes `authd clients args...` and returns stdout and stderr.
func (c *clientsCLI) run(args ...string) (string, string, error) {
	c.t.Helper()
	return runCommand(newClientsCmd(func(context.Context) (store.Store, error) { return sharedStore{c.st}, nil },
		func() time.Time { return c.now }, slog.New(slog.NewJSONHandler(&c.audit, nil))), args...)
}

// runCommand executes cmd with args and returns its stdout and stderr.
func runCommand(cmd *cobra.Command, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}

func (c *clientsCLI) mustRun(args ...string) (string, string) {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("authd clients %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out, errOut
}

func (c *clientsCLI) mustFail(wantInErr string, args ...string) {
	c.t.Helper()
	_, _, err := c.run(args...)
	if err == nil || !strings.Contains(err.Error(), wantInErr) {
		c.t.Fatalf("authd clients %s: err = %v, want one mentioning %q", strings.Join(args, " "), err, wantInErr)
	}
}

func (c *clientsCLI) row(id string) store.Client {
	c.t.Helper()
	cl, err := c.st.GetClient(context.Background(), id, c.now)
	if err != nil {
		c.t.Fatalf("GetClient(%s): %v", id, err)
	}
	return cl
}

func (c *clientsCLI) count() int64 {
	c.t.Helper()
	n, err := c.st.CountClients(context.Background(), "")
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, s)
	}
	return v
}

func TestClientsCommand(t *testing.T) {
	t.Parallel()
	cli := &clientsCLI{t: t, st: pgtest.New(t), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}

	// create: a confidential first-party client; its secret is printed once.
	out, errOut := cli.mustRun("create", "--name", "Dashboard", "--redirect-uri", "https://dash.example.com/cb",
		"--scope", "mcp:read mcp:write", "--resource", "https://MCP.example.com/", "--skip-consent", "-o", "json")
	created := decodeJSON[clientView](t, out)
	if created.ClientID == "" || created.Source != "config" || created.TokenEndpointAuthMethod != "client_secret_basic" ||
		!created.SkipConsent || strings.Join(created.AllowedScopes, " ") != "mcp:read mcp:write" ||
		strings.Join(created.AllowedResources, " ") != "https://mcp.example.com" ||
		strings.Join(created.GrantTypes, " ") != "authorization_code refresh_token" {
		t.Errorf("created client: %+v", created)
	}
	secret := created.ClientSecret
	if !strings.HasPrefix(secret, oauth.PrefixClientSecret) {
		t.Fatalf("create printed no secret: %s", out)
	}
	if !strings.Contains(errOut, "cannot show it again") {
		t.Errorf("no reminder that the secret is shown once: %q", errOut)
	}
	id := created.ClientID
	row := cli.row(id)
	if !oauth.VerifySecret(row.SecretHash, secret) || strings.Contains(row.SecretHash, secret) {
		t.Fatal("stored secret hash does not verify the printed secret, or holds it in clear")
	}

	// create, table output: a public native client with a chosen id.
	out, _ = cli.mustRun("create", "--id", "cli-app", "--name", "CLI", "--public", "--redirect-uri", "http://127.0.0.1/cb",
		"--application-type", "native")
	if !strings.Contains(out, "cli-app") || strings.Contains(out, "client_secret") || !strings.Contains(out, "none") {
		t.Errorf("public client table output:\n%s", out)
	}

	// Invalid input writes nothing.
	cli.mustFail("redirect URI", "create", "--name", "Evil", "--redirect-uri", "javascript:alert(1)")
	cli.mustFail("exists already", "create", "--id", "cli-app", "--public", "--redirect-uri", "http://127.0.0.1/cb")
	cli.mustFail("--output", "create", "--name", "X", "--public", "--redirect-uri", "http://127.0.0.1/cb", "-o", "yaml")
	if n := cli.count(); n != 2 {
		t.Fatalf("%d clients after rejected creates, want 2", n)
	}

	// list: table and JSON.
	out, _ = cli.mustRun("list")
	if !strings.Contains(out, "CLIENT ID") || !strings.Contains(out, id) || !strings.Contains(out, "cli-app") {
		t.Errorf("list table:\n%s", out)
	}
	listed := decodeJSON[[]clientView](t, mustOut(cli.mustRun("list", "-o", "json")))
	// Both were created at the same (fixed) time, so the order between
	// them falls to their ids: compare as a set.
	listedIDs := []string{}
	for _, v := range listed {
		listedIDs = append(listedIDs, v.ClientID)
	}
	slices.Sort(listedIDs)
	want := []string{"cli-app", id}
	slices.Sort(want)
	if len(listed) != 2 || !slices.Equal(listedIDs, want) {
		t.Errorf("list json: %+v", listed)
	}
	for _, v := range listed {
		if v.ClientSecret != "" {
			t.Error("list printed a secret")
		}
	}
	if dyn := decodeJSON[[]clientView](t, mustOut(cli.mustRun("list", "--source", "dynamic", "-o", "json"))); len(dyn) != 0 {
		t.Errorf("list --source dynamic: %+v", dyn)
	}

	// show.
	shown := decodeJSON[clientView](t, mustOut(cli.mustRun("show", id, "-o", "json")))
	if shown.ClientID != id || shown.Name != "Dashboard" || shown.ClientSecret != "" {
		t.Errorf("show: %+v", shown)
	}
	out, _ = cli.mustRun("show", id)
	if !strings.Contains(out, id) || !strings.Contains(out, "Dashboard") || strings.Contains(out, secret) {
		t.Errorf("show table:\n%s", out)
	}
	cli.mustFail("no client", "show", "no-such-client")

	// update: only the flags given change; the secret stays.
	hashBefore := cli.row(id).SecretHash
	cli.now = cli.now.Add(time.Hour)
	updated := decodeJSON[clientView](t, mustOut(cli.mustRun("update", id, "--name", "Dashboard v2", "--introspect",
		"--redirect-uri", "https://dash.example.com/callback", "-o", "json")))
	if updated.Name != "Dashboard v2" || !updated.Introspect || !updated.SkipConsent || updated.ClientSecret != "" ||
		strings.Join(updated.RedirectURIs, " ") != "https://dash.example.com/callback" ||
		strings.Join(updated.AllowedScopes, " ") != "mcp:read mcp:write" {
		t.Errorf("update: %+v", updated)
	}
	row = cli.row(id)
	if row.Metadata.ClientName != "Dashboard v2" || !row.CanIntrospect || row.SecretHash != hashBefore ||
		!row.CreatedAt.Equal(created.CreatedAt) || !row.UpdatedAt.Equal(cli.now) {
		t.Errorf("stored after update: %+v", row)
	}
	cli.mustFail("redirect URI", "update", id, "--redirect-uri", "http://dash.example.com/cb")
	if got := cli.row(id).Metadata.RedirectURIs; strings.Join(got, " ") != "https://dash.example.com/callback" {
		t.Errorf("rejected update changed redirect URIs to %v", got)
	}
	// Making the public client confidential prints its new secret.
	cliSecret := decodeJSON[clientView](t, mustOut(cli.mustRun("update", "cli-app", "--auth-method", "client_secret_post", "-o", "json"))).ClientSecret
	if !strings.HasPrefix(cliSecret, oauth.PrefixClientSecret) || !oauth.VerifySecret(cli.row("cli-app").SecretHash, cliSecret) {
		t.Errorf("public -> confidential: secret %q", cliSecret)
	}

	// rotate-secret: a new secret, and the old one stops working.
	rotated := decodeJSON[clientView](t, mustOut(cli.mustRun("rotate-secret", id, "-o", "json")))
	if rotated.ClientSecret == "" || rotated.ClientSecret == secret {
		t.Fatalf("rotate-secret printed %q", rotated.ClientSecret)
	}
	row = cli.row(id)
	if oauth.VerifySecret(row.SecretHash, secret) {
		t.Error("old secret still verifies after rotate-secret")
	}
	if !oauth.VerifySecret(row.SecretHash, rotated.ClientSecret) {
		t.Error("new secret does not verify")
	}
	cli.mustRun("update", "cli-app", "--public")
	if c := cli.row("cli-app"); c.SecretHash != "" || c.Metadata.TokenEndpointAuthMethod != "none" {
		t.Errorf("--public kept a secret: %+v", c)
	}
	cli.mustFail("public", "rotate-secret", "cli-app")

	// Dynamic clients belong to their owners: no update or rotate-secret.
	exp := cli.now.Add(24 * time.Hour)
	if err := cli.st.CreateClient(context.Background(), store.Client{
		ID: "0b7c2f0e-3c1a-4f4e-9f77-2d7f4b1e8a10", Source: store.SourceDynamic, SecretHash: oauth.HashSecret("x"),
		Metadata:  store.ClientMetadata{RedirectURIs: []string{"https://x.example/cb"}, TokenEndpointAuthMethod: "client_secret_basic"},
		CreatedAt: cli.now, UpdatedAt: cli.now, ExpiresAt: &exp,
	}); err != nil {
		t.Fatal(err)
	}
	cli.mustFail("dynamic", "update", "0b7c2f0e-3c1a-4f4e-9f77-2d7f4b1e8a10", "--skip-consent")
	cli.mustFail("dynamic", "rotate-secret", "0b7c2f0e-3c1a-4f4e-9f77-2d7f4b1e8a10")
	if cli.row("0b7c2f0e-3c1a-4f4e-9f77-2d7f4b1e8a10").SkipConsent {
		t.Fatal("dynamic client changed")
	}

	// delete.
	out, _ = cli.mustRun("delete", id)
	for _, ev := range []string{"client_registered", "client_updated", "client_secret_rotated", "client_deleted"} {
		if !strings.Contains(cli.audit.String(), `"event":"`+ev+`","via":"cli"`) {
			t.Errorf("no %s audit record from the command line:\n%s", ev, cli.audit.String())
		}
	}
	if strings.Contains(cli.audit.String(), oauth.PrefixClientSecret) {
		t.Error("a client secret in the audit log")
	}
	if !strings.Contains(out, id) {
		t.Errorf("delete output: %q", out)
	}
	cli.mustFail("no client", "show", id)
	cli.mustFail("no client", "delete", id)
	if n := cli.count(); n != 2 {
		t.Fatalf("%d clients after delete, want 2", n)
	}
}

func mustOut(stdout, _ string) string { return stdout }
