package introspect_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/introspect"
	"github.com/authd/authd/internal/policy"
)

// identityHeaders are what /verify vouches for; every proxy example must
// copy all of them onto the forwarded request.
var identityHeaders = []string{
	introspect.HeaderUser, introspect.HeaderSubject, introspect.HeaderEmail,
	introspect.HeaderClientID, introspect.HeaderScope,
}

// TestNginxExample runs deploy/nginx/mcp.conf in a real nginx, changed only
// where the example says to adapt it (addresses, certificate), in front of
// authd's /verify and a stand-in MCP server, and plays an MCP client
// against it.
func TestNginxExample(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	e := newEnv(t, func(h *introspect.Handler) {
		// The proxy examples' one resource, for /token and /verify alike.
		h.Policy.Resources = []policy.Resource{{URI: resMCP, Scopes: []string{"mcp:tools", "mcp:resources"}, RequiredScopes: []string{"mcp:tools"}}}
	})

	// authd as nginx reaches it: /verify, and a stand-in for the
	// protected-resource metadata (served by internal/discovery in authd)
	// that records what nginx forwarded.
	var (
		mu       sync.Mutex
		metadata []*http.Request
		upstream []*http.Request
		bodies   []string
	)
	authdRouter := chi.NewRouter()
	e.h.Routes(authdRouter)
	authdRouter.Get("/.well-known/oauth-protected-resource/*", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		metadata = append(metadata, r.Clone(context.Background()))
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"resource": r.Header.Get("X-Forwarded-Proto") + "://" + r.Header.Get("X-Forwarded-Host") + "/mcp"})
	})
	authd := httptest.NewServer(authdRouter)
	t.Cleanup(authd.Close)
	mcp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		upstream = append(upstream, r.Clone(context.Background()))
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(mcp.Close)

	client := startNginx(t, bin, map[string]string{
		"server authd:8080;": "server " + authd.Listener.Addr().String() + ";",
		"server mcp:3000;":   "server " + mcp.Listener.Addr().String() + ";",
	})
	const endpoint = "https://mcp.example.com/mcp"
	call := func(method, target, tok string, extra map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, target, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range extra {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	upstreamCalls := func() int { mu.Lock(); defer mu.Unlock(); return len(upstream) }
	lastUpstream := func() (*http.Request, string) {
		mu.Lock()
		defer mu.Unlock()
		return upstream[len(upstream)-1], bodies[len(bodies)-1]
	}
	wantRefused := func(resp *http.Response, status int, challenge string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("status %d, want %d", resp.StatusCode, status)
		}
		if got := resp.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != challenge {
			t.Errorf("WWW-Authenticate = %q, want %q", got, challenge)
		}
		if upstreamCalls() != 0 {
			t.Fatal("a refused request reached the MCP server")
		}
	}
	const mcpMetadata = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	spoofed := map[string]string{"X-Auth-User": "admin", "X-Auth-Email": "admin@evil.example", "X-Auth-Scope": "everything"}

	// 1. No token: the challenge leads to the resource's metadata.
	wantRefused(call(http.MethodPost, endpoint, "", spoofed), http.StatusUnauthorized,
		`Bearer scope="mcp:tools", resource_metadata="`+mcpMetadata+`"`)
	// A token in the URL is not a credential.
	tools := e.login(grantSpec{user: e.alice, scopes: []string{"mcp:tools"}, resources: []string{resMCP}})
	wantRefused(call(http.MethodPost, endpoint+"?access_token="+tools.AccessToken, "", nil), http.StatusUnauthorized,
		`Bearer scope="mcp:tools", resource_metadata="`+mcpMetadata+`"`)

	// 2. The metadata URL reaches authd, unauthenticated, with the host
	// and scheme the client used.
	if resp := call(http.MethodGet, mcpMetadata, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d", resp.StatusCode)
	}
	mu.Lock()
	if len(metadata) != 1 || metadata[0].URL.Path != "/.well-known/oauth-protected-resource/mcp" ||
		metadata[0].Header.Get("X-Forwarded-Host") != "mcp.example.com" || metadata[0].Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("metadata request as authd saw it: %+v", metadata)
	}
	mu.Unlock()

	// 3. A valid token: the request and its body reach the MCP server with
	// authd's identity headers in place of the client's forged ones.
	if resp := call(http.MethodPost, endpoint, tools.AccessToken, spoofed); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	got, body := lastUpstream()
	for k, want := range map[string]string{
		"X-Auth-User": "alice", "X-Auth-Subject": e.alice.ID, "X-Auth-Email": "alice@example.com",
		"X-Auth-Client-Id": mcpClient, "X-Auth-Scope": "mcp:tools",
	} {
		if v := got.Header.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("MCP server got %s = %q, want %q", k, v, want)
		}
	}
	if body != `{"jsonrpc":"2.0","id":1,"method":"tools/list"}` || got.Method != http.MethodPost || got.URL.Path != "/mcp" {
		t.Errorf("MCP server got %s %s %q", got.Method, got.URL.Path, body)
	}

	// An identity header authd leaves empty (Bob's email is unverified) is
	// removed, not left as the client sent it.
	bob := e.login(grantSpec{user: e.bob, scopes: []string{"mcp:tools"}, resources: []string{resMCP}})
	if resp := call(http.MethodPost, endpoint, bob.AccessToken, spoofed); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
	got, _ = lastUpstream()
	if got.Header.Get("X-Auth-User") != "bob" || len(got.Header.Values("X-Auth-Email")) != 0 {
		t.Errorf("MCP server got user %q, email %q", got.Header.Get("X-Auth-User"), got.Header.Values("X-Auth-Email"))
	}

	// 4. Refusals never reach the MCP server.
	mu.Lock()
	upstream, bodies = nil, nil
	mu.Unlock()
	resources := e.login(grantSpec{user: e.alice, scopes: []string{"mcp:resources"}, resources: []string{resMCP}})
	wantRefused(call(http.MethodPost, endpoint, resources.AccessToken, nil), http.StatusForbidden,
		`Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="`+mcpMetadata+`"`)
	e.revoke(tools.AccessToken, post(mcpClient, secret))
	wantRefused(call(http.MethodPost, endpoint, tools.AccessToken, nil), http.StatusUnauthorized,
		`Bearer error="invalid_token", scope="mcp:tools", resource_metadata="`+mcpMetadata+`"`)
	other := e.aliceToken() // for https://mcp.example.com, not .../mcp
	wantRefused(call(http.MethodPost, endpoint, other.AccessToken, nil), http.StatusUnauthorized,
		`Bearer error="invalid_token", scope="mcp:tools", resource_metadata="`+mcpMetadata+`"`)
	if resp := call(http.MethodGet, "https://mcp.example.com/admin", bob.AccessToken, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("outside /mcp: %d, want 404", resp.StatusCode)
	}
	if upstreamCalls() != 0 {
		t.Fatal("a refused request reached the MCP server")
	}
}

// nginxBinary finds nginx; without it the test fails, with instructions.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("nginx not found: this test runs deploy/nginx/mcp.conf in a real nginx. " +
		"Install it (Debian: apt-get install nginx; .ci/run does) and run the tests again.")
	return ""
}

// startNginx runs the example configuration with the replacements given
// (each must match exactly once, so the test notices when the example
// changes), on a loopback port, with a fresh certificate for
// mcp.example.com. It returns a client that reaches https://mcp.example.com
// through it.
func startNginx(t *testing.T, bin string, replace map[string]string) *http.Client {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// Worker processes of a root master run as another user; they
		// must reach the temp directories.
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, keyPEM, cert := selfSigned(t, "mcp.example.com")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freePort(t)
	replace["listen 443 ssl;"] = "listen " + addr + " ssl;"
	replace["/etc/nginx/tls/mcp.example.com.crt"] = certFile
	replace["/etc/nginx/tls/mcp.example.com.key"] = keyFile

	example, err := os.ReadFile("../../deploy/nginx/mcp.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(example)
	for old, repl := range replace {
		if n := strings.Count(conf, old); n != 1 {
			t.Fatalf("deploy/nginx/mcp.conf: %q occurs %d times, want once (update this test with the example)", old, n)
		}
		conf = strings.Replace(conf, old, repl, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "mcp.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;" // as the current user: no other account is assumed to exist
	}
	mainConf := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/mcp.conf;
}
`, user, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(mainConf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir + "/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejects the example: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	})
	// Wait until nginx listens (it exits at once on a bad start).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited:\n%s", b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s", addr)
		}
	}

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	var d net.Dialer
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			// Every name resolves to this nginx.
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), cert
}

// TestTraefikExample checks deploy/traefik/docker-compose.yml: the MCP
// router passes the forwardAuth middleware, which calls authd's /verify
// and copies every identity header; the metadata path goes to authd
// without it; and authd's embedded configuration is valid, trusts Traefik,
// and protects the resource the MCP router serves.
func TestTraefikExample(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../deploy/traefik/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Labels      []string          `yaml:"labels"`
			Environment map[string]string `yaml:"environment"`
			Networks    yaml.Node         `yaml:"networks"`
		} `yaml:"services"`
		Configs map[string]struct {
			Content string `yaml:"content"`
		} `yaml:"configs"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("not valid YAML: %v", err)
	}
	labels := map[string]string{} // every service's labels together
	for name, s := range compose.Services {
		for _, l := range s.Labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("service %s: label %q is not key=value", name, l)
			}
			if old, dup := labels[k]; dup && old != v {
				t.Fatalf("label %s set twice, to %q and %q", k, old, v)
			}
			labels[k] = v
		}
	}
	want := func(k, v string) {
		t.Helper()
		if labels[k] != v {
			t.Errorf("%s = %q, want %q", k, labels[k], v)
		}
	}

	// The MCP router: its host and path, behind the middleware.
	want("traefik.http.routers.mcp.rule", "Host(`mcp.example.com`) && PathPrefix(`/mcp`)")
	want("traefik.http.routers.mcp.middlewares", "authd-verify@docker")
	// The middleware: /verify on authd's internal address, every identity
	// header copied, and forwarded headers set by Traefik itself.
	want("traefik.http.middlewares.authd-verify.forwardauth.address", "http://authd:8080/verify")
	copied := strings.Split(labels["traefik.http.middlewares.authd-verify.forwardauth.authResponseHeaders"], ",")
	for i := range copied {
		copied[i] = strings.TrimSpace(copied[i])
	}
	for _, h := range identityHeaders {
		if !slices.Contains(copied, h) {
			t.Errorf("authResponseHeaders %q lacks %s", copied, h)
		}
	}
	if v, ok := labels["traefik.http.middlewares.authd-verify.forwardauth.trustForwardHeader"]; ok && v != "false" {
		t.Error("trustForwardHeader lets clients forge X-Forwarded-Uri, choosing the resource they are judged against")
	}
	// The metadata path: same host, to authd, without the middleware.
	want("traefik.http.routers.mcp-metadata.rule", "Host(`mcp.example.com`) && PathPrefix(`/.well-known/oauth-protected-resource`)")
	want("traefik.http.routers.mcp-metadata.service", "authd")
	if _, ok := labels["traefik.http.routers.mcp-metadata.middlewares"]; ok {
		t.Error("the metadata must be public")
	}
	want("traefik.http.services.authd.loadbalancer.server.port", "8080")

	// authd's configuration: the file embedded in the compose file plus the
	// service's environment, validated by authd's own rules.
	authdSvc := compose.Services["authd"]
	cfg := authdConfig(t, compose.Configs["authd"].Content, authdSvc.Environment)
	if len(cfg.Resources) != 1 || cfg.Resources[0].URI != "https://mcp.example.com/mcp" ||
		!slices.Equal(cfg.Resources[0].RequiredScopes, []string{"mcp:tools"}) {
		t.Errorf("resources = %+v, want the MCP router's URL", cfg.Resources)
	}
	// Traefik's address is the one authd trusts.
	var traefikNet struct {
		Edge struct {
			IPv4 string `yaml:"ipv4_address"`
		} `yaml:"edge"`
	}
	traefikNode := compose.Services["traefik"].Networks
	if err := traefikNode.Decode(&traefikNet); err != nil {
		t.Fatal(err)
	}
	if traefikNet.Edge.IPv4 == "" || !slices.Equal(cfg.TrustedProxies, []string{traefikNet.Edge.IPv4}) {
		t.Errorf("trusted_proxies = %q, Traefik's address %q", cfg.TrustedProxies, traefikNet.Edge.IPv4)
	}
}

// authdConfig decodes a configuration file and AUTHD_* environment the way
// authd does (same decoder settings: unknown keys are errors) and validates
// it. Compose variables get test values.
func authdConfig(t *testing.T, file string, env map[string]string) config.Config {
	t.Helper()
	vars := regexp.MustCompile(`\$\{([A-Z_]+)(:\?[^}]*)?\}`)
	subst := func(s string) string {
		return vars.ReplaceAllStringFunc(s, func(m string) string {
			return "test-value-for-" + strings.ToLower(vars.FindStringSubmatch(m)[1]) + "-long-enough-to-be-valid"
		})
	}
	var layers []map[string]any
	var fromFile map[string]any
	// Compose writes $$ as $: the file authd reads has ${NAME}, which
	// authd expands from its environment.
	file = strings.ReplaceAll(file, "$$", "$")
	if err := yaml.Unmarshal([]byte(subst(file)), &fromFile); err != nil {
		t.Fatalf("authd's configuration is not valid YAML: %v", err)
	}
	layers = append(layers, fromFile)
	keys := map[string][]string{
		"AUTHD_ISSUER": {"issuer"}, "AUTHD_DATABASE_URL": {"database_url"}, "AUTHD_MIGRATE_ON_START": {"migrate_on_start"},
		"AUTHD_KEYS_ENCRYPTION_SECRET": {"keys", "encryption_secret"}, "AUTHD_TRUSTED_PROXIES": {"trusted_proxies"},
	}
	for name, v := range env {
		if !strings.HasPrefix(name, "AUTHD_") {
			continue // a variable the file refers to as ${NAME}, substituted above
		}
		path, ok := keys[name]
		if !ok {
			t.Fatalf("environment variable %s: teach this test its key", name)
		}
		layer := map[string]any{}
		m := layer
		for _, p := range path[:len(path)-1] {
			m[p] = map[string]any{}
			m = m[p].(map[string]any)
		}
		m[path[len(path)-1]] = subst(v)
		layers = append(layers, layer)
	}
	cfg := config.Defaults()
	for _, l := range layers {
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			Result: &cfg, ErrorUnused: true, WeaklyTypedInput: true,
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
			),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(l); err != nil {
			t.Fatalf("authd's configuration: %v", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("authd would refuse the example's configuration:\n%v", err)
	}
	return cfg
}
