// Package authdtest runs the authd binary for tests outside cmd/authd: the
// public resource package and the examples test against a real authd, as a
// resource server would meet it. Each Server is `authd serve` on its own
// throwaway PostgreSQL database (internal/store/pgtest) with a fake GitHub
// (internal/upstream/upstreamtest) whose certificate the process trusts
// through SSL_CERT_FILE, and a Browser signs users in through it.
//
// The binary is built once per test process (with -race when the tests
// run with it); call Main from TestMain so it is removed afterwards.
package authdtest

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authd/authd/internal/store/pgtest"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// Main runs the tests and removes the binary built for them.
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

// binary builds cmd/authd once.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "authdtest-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "authd")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/authd/authd/cmd/authd")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/authd: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Alice is the fake GitHub's user: numeric id 1001, member of acme and of
// its team writers.
const (
	AliceID    = "1001"
	AliceLogin = "alice"
	AliceEmail = "alice@example.com"
	AliceName  = "Alice Liddell"
)

// Options configure a Server.
type Options struct {
	// Config is YAML added to the configuration file: scopes, resources,
	// clients, introspection, ... The file already sets keys, the GitHub
	// upstream and an allowlist admitting acme's members.
	Config string
	// Env adds environment variables.
	Env map[string]string
}

// Server is a running authd.
type Server struct {
	// URL is the issuer, http://127.0.0.1:<port>.
	URL    string
	GitHub *upstreamtest.GitHub

	bin  string
	env  []string
	cfg  string
	logs *syncBuffer
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs `authd serve` until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := binary(t)
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(upstreamtest.GitHubUser{
		ID: 1001, Login: AliceLogin, Name: AliceName,
		Emails: []upstreamtest.GitHubEmail{{Email: AliceEmail, Primary: true, Verified: true}},
		Orgs:   []string{"acme"},
		Teams:  map[string][]string{"acme": {"writers"}},
	})
	dir := t.TempDir()
	certFile := filepath.Join(dir, "github.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gh.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "authd.yaml")
	yaml := fmt.Sprintf(`
keys:
  encryption_secret: authdtest-encryption-secret-0123456789abcdef
upstreams:
  - id: github
    type: github
    client_id: %s
    client_secret: %s
    github: {base_url: %s, api_url: %s, load_teams: true}
allowlist:
  github_orgs: [acme]
%s`, gh.ClientID, gh.ClientSecret, gh.BaseURL(), gh.APIURL(), o.Config)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	s := &Server{URL: "http://" + addr, GitHub: gh, bin: bin, cfg: cfg, logs: &syncBuffer{}, done: make(chan struct{})}
	s.env = append(os.Environ(),
		"AUTHD_LISTEN="+addr,
		"AUTHD_ISSUER="+s.URL,
		"AUTHD_DATABASE_URL="+pgtest.DSN(t),
		"AUTHD_LOG_LEVEL=debug",
		// Many tests share one address: rate limits would get in the way.
		"AUTHD_RATE_LIMITS_AUTHORIZE_PER_IP_PER_MINUTE=0",
		"AUTHD_RATE_LIMITS_TOKEN_PER_IP_PER_MINUTE=0",
		"AUTHD_REGISTRATION_RATE_LIMIT_PER_IP_PER_MINUTE=0",
		"AUTHD_REGISTRATION_RATE_LIMIT_GLOBAL_PER_MINUTE=0",
		"SSL_CERT_FILE="+certFile,
	)
	for k, v := range o.Env {
		s.env = append(s.env, k+"="+v)
	}
	s.cmd = exec.Command(bin, "serve", "--config", cfg)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop(t) })

	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := c.Get(s.URL + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("authd exited before becoming ready:\n%s", s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("authd not ready after 90s:\n%s", s.logs.String())
		}
	}
}

func (s *Server) stop(t testing.TB) {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Error("authd did not stop within 30s of SIGTERM")
	}
	if t.Failed() {
		t.Logf("authd logs:\n%s", s.logs.String())
	}
}

// Logs is what the server wrote so far.
func (s *Server) Logs() string { return s.logs.String() }

// Command runs an authd subcommand (e.g. keys rotate --now) with the
// server's configuration and returns its output.
func (s *Server) Command(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, append(args, "--config", s.cfg)...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("authd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Browser is a user agent with cookies that signs in at the fake GitHub
// and approves consent pages.
type Browser struct {
	c        *http.Client
	redirect string
	base     string
}

// Browser returns a new browser for flows whose redirect URI starts with
// redirectPrefix.
func (s *Server) Browser(redirectPrefix string) *Browser {
	jar, _ := cookiejar.New(nil)
	b := &Browser{redirect: redirectPrefix, base: s.URL}
	b.c = &http.Client{
		Jar: jar, Transport: s.GitHub.Client().Transport, Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), b.redirect) || len(via) > 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return b
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// Authorize follows authURL through sign-in and consent to the client's
// redirect URI and returns that redirect's query (code, state, iss).
func (b *Browser) Authorize(authURL string) (url.Values, error) {
	resp, err := b.c.Get(authURL)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `action="/consent"`) {
		form := url.Values{"decision": {"approve"}}
		for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
			form.Set(m[1], htmlUnescape(m[2]))
		}
		if resp, err = b.c.PostForm(b.base+"/consent", form); err != nil {
			return nil, err
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, b.redirect) {
		return nil, fmt.Errorf("the flow did not end at the client: %d %s\n%s", resp.StatusCode, loc, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return u.Query(), nil
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
