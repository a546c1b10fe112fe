package main

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestContainerBuildIsStaticAndHealthchecks builds the binary exactly as the
// Dockerfile's build stage does (there is no Docker engine where tests run),
// checks that it is statically linked, so it runs in a distroless image,
// and that `authd healthcheck` works against a running server.
func TestContainerBuildIsStaticAndHealthchecks(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// The build line in the Dockerfile is the one we reproduce.
	buildLine := regexp.MustCompile(`RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \\\s*-ldflags "([^"]+)" \\\s*-o /out/authd ./cmd/authd`)
	m := buildLine.FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("Dockerfile build command changed; update this test to match it")
	}
	ldflags := strings.NewReplacer("${VERSION}", "v9.9.9-test", "${COMMIT}", "abc1234").Replace(string(m[1]))
	if !strings.Contains(string(dockerfile), `HEALTHCHECK`) || !strings.Contains(string(dockerfile), `"/authd", "healthcheck"`) ||
		!strings.Contains(string(dockerfile), "USER 65532") {
		t.Fatal("Dockerfile lacks the HEALTHCHECK or the non-root user")
	}

	bin := filepath.Join(t.TempDir(), "authd")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("binary is dynamically linked (program header %v)", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("binary imports %v", libs)
	}
	f.Close()

	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), "v9.9.9-test") || !strings.Contains(string(out), "abc1234") {
		t.Fatalf("version not baked in: %q %v", out, err)
	}

	// The image starts from environment variables only.
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "serve", "--dev")
	srv.Env = append(os.Environ(), "AUTHD_LISTEN="+addr, "AUTHD_ISSUER=http://"+addr)
	var logs bytes.Buffer
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()

	health := func() error {
		c := exec.Command(bin, "healthcheck")
		c.Env = append(os.Environ(), "AUTHD_LISTEN="+addr)
		return c.Run()
	}
	deadline := time.Now().Add(20 * time.Second)
	for health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never passed; server logs:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And it fails when nothing listens.
	c := exec.Command(bin, "healthcheck", "--url", "http://"+freeAddr(t)+"/health")
	if err := c.Run(); err == nil {
		t.Fatal("healthcheck passed with no server")
	}
}
