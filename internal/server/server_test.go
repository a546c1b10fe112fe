package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/reqlog"
)

func newTestRouter(t *testing.T, logBuf *bytes.Buffer, o Options) chi.Router {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(reqlog.NewHandler(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1024
	}
	return NewRouter(o)
}

func TestHealthAndReady(t *testing.T) {
	var buf bytes.Buffer
	dbErr := error(nil)
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newTestRouter(t, &buf, Options{
		Version: "v1.2.3",
		Started: started,
		Now:     func() time.Time { return started.Add(90 * time.Second) },
		Ready:   func(context.Context) error { return dbErr },
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	var health struct {
		Status  string `json:"status"`
		Version string `json:"version"`
		Uptime  int64  `json:"uptime_seconds"`
	}
	getJSON(t, srv.URL+"/health", http.StatusOK, &health)
	if health.Status != "ok" || health.Version != "v1.2.3" || health.Uptime != 90 {
		t.Fatalf("health = %+v", health)
	}
	var ready struct{ Status string }
	getJSON(t, srv.URL+"/ready", http.StatusOK, &ready)
	if ready.Status != "ready" {
		t.Fatalf("ready = %+v", ready)
	}

	dbErr = errors.New("connection refused to 10.0.0.5 password=hunter2")
	getJSON(t, srv.URL+"/ready", http.StatusServiceUnavailable, &ready)
	if ready.Status != "unavailable" {
		t.Fatalf("ready while down = %+v", ready)
	}
	// Liveness does not depend on the database.
	getJSON(t, srv.URL+"/health", http.StatusOK, &health)
}

func getJSON(t *testing.T, url string, wantStatus int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: status %d, want %d", url, resp.StatusCode, wantStatus)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: content type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestPanicBecomesOpaqueJSON500(t *testing.T) {
	var buf bytes.Buffer
	r := newTestRouter(t, &buf, Options{})
	r.Get("/boom", func(http.ResponseWriter, *http.Request) { panic("secret internal detail") })
	srv := httptest.NewServer(r)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var e struct{ Error, ErrorDescription string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error != "server_error" {
		t.Fatalf("body %s (%v)", body, err)
	}
	if strings.Contains(string(body), "secret internal detail") {
		t.Fatalf("panic value leaked to client: %s", body)
	}
	if !strings.Contains(buf.String(), "secret internal detail") {
		t.Fatalf("panic not logged: %s", buf.String())
	}
}

func TestBodyLimit(t *testing.T) {
	var buf bytes.Buffer
	r := newTestRouter(t, &buf, Options{MaxBodyBytes: 100})
	r.Post("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, tc := range []struct {
		name string
		body io.Reader
		want int
	}{
		{"small", strings.NewReader("ok"), http.StatusNoContent},
		{"declared too large", strings.NewReader(strings.Repeat("x", 200)), http.StatusRequestEntityTooLarge},
		// Chunked: no Content-Length, caught while reading.
		{"chunked too large", io.MultiReader(strings.NewReader(strings.Repeat("x", 150))), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/echo", "text/plain", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestTrustedProxies(t *testing.T) {
	var buf bytes.Buffer
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	r := newTestRouter(t, &buf, Options{TrustedProxies: trusted})
	r.Get("/who", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"remote": hostOf(r.RemoteAddr),
			"host":   r.Host,
			"xfh":    r.Header.Get("X-Forwarded-Host"),
			"proxy":  fmt.Sprint(FromTrustedProxy(r)),
		})
	})
	for _, tc := range []struct {
		name, peer, xff, xfh       string
		wantRemote, wantHost, wXfh string
	}{
		{"untrusted peer: headers ignored and stripped", "203.0.113.9:1234", "1.2.3.4", "evil.example", "203.0.113.9", "authd.example", ""},
		{"trusted proxy: client from XFF", "10.1.2.3:1234", "198.51.100.7", "mcp.example.com", "198.51.100.7", "mcp.example.com", "mcp.example.com"},
		{"trusted chain: rightmost untrusted wins", "10.1.2.3:1234", "6.6.6.6, 198.51.100.7, 10.9.9.9", "", "198.51.100.7", "authd.example", ""},
		{"garbage XFF: peer kept", "10.1.2.3:1234", "not-an-ip", "", "10.1.2.3", "authd.example", ""},
		{"bad forwarded host ignored", "10.1.2.3:1234", "", "evil.example/<script>", "10.1.2.3", "authd.example", "evil.example/<script>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://authd.example/who", nil)
			req.RemoteAddr = tc.peer
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			if tc.xfh != "" {
				req.Header.Set("X-Forwarded-Host", tc.xfh)
			}
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			var got map[string]string
			if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			// FromTrustedProxy follows the direct peer, not X-Forwarded-For.
			wantProxy := fmt.Sprint(tc.peer != "203.0.113.9:1234")
			if got["remote"] != tc.wantRemote || got["host"] != tc.wantHost || got["xfh"] != tc.wXfh || got["proxy"] != wantProxy {
				t.Fatalf("got %v, want remote=%s host=%s xfh=%q proxy=%s", got, tc.wantRemote, tc.wantHost, tc.wXfh, wantProxy)
			}
		})
	}
}

func TestAccessLogAndRequestID(t *testing.T) {
	var buf bytes.Buffer
	// The test's client is the trusted proxy whose X-Request-Id is kept.
	r := newTestRouter(t, &buf, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	r.Get("/clients/{id}", func(w http.ResponseWriter, r *http.Request) {
		reqlog.Set(r.Context(), "client_id", chi.URLParam(r, "id"))
		w.WriteHeader(http.StatusTeapot)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/clients/abc?code=SECRETCODE", nil)
	req.Header.Set("X-Request-Id", "proxy-id-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "proxy-id-123" {
		t.Fatalf("request id %q", got)
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("access log not one JSON line: %q", buf.String())
	}
	if line["route"] != "/clients/{id}" || line["status"] != float64(418) ||
		line["request_id"] != "proxy-id-123" || line["client_id"] != "abc" {
		t.Fatalf("access log line %v", line)
	}
	if strings.Contains(buf.String(), "SECRETCODE") {
		t.Fatal("query string leaked into the access log")
	}

	// A malformed incoming id is replaced.
	buf.Reset()
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/health", nil)
	req.Header.Set("X-Request-Id", "bad id\"with<junk>")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.ContainsAny(got, " \"<>") {
		t.Fatalf("request id not replaced: %q", got)
	}
}

// TestRequestIDOnlyFromTrustedProxies: a well-formed X-Request-Id from a
// peer that is not a trusted proxy does not become the log's request id,
// so a client cannot forge log correlation (issue 17).
func TestRequestIDOnlyFromTrustedProxies(t *testing.T) {
	var buf bytes.Buffer
	r := newTestRouter(t, &buf, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	r.Get("/x", func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		peer string
		keep bool
	}{{"203.0.113.9:1234", false}, {"127.0.0.1:1234", false}, {"10.1.2.3:1234", true}} {
		buf.Reset()
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = tc.peer
		req.Header.Set("X-Request-Id", "forged-id-1")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-Id")
		if (got == "forged-id-1") != tc.keep || got == "" {
			t.Errorf("peer %s: request id %q, kept=%v want %v", tc.peer, got, got == "forged-id-1", tc.keep)
		}
		if strings.Contains(buf.String(), "forged-id-1") != tc.keep {
			t.Errorf("peer %s: log %s", tc.peer, buf.String())
		}
	}
}

// TestForwardedHeadersFromUntrustedPeerWarnOnce: X-Forwarded-For from a
// peer trusted_proxies does not name is ignored, and the operator is told
// once (a proxy missing from trusted_proxies makes every client look alike).
func TestForwardedHeadersFromUntrustedPeerWarnOnce(t *testing.T) {
	var buf bytes.Buffer
	r := newTestRouter(t, &buf, Options{})
	r.Get("/x", func(w http.ResponseWriter, r *http.Request) {})
	send := func(xff string) {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = "10.0.0.5:1234"
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		r.ServeHTTP(httptest.NewRecorder(), req)
	}
	send("")
	if strings.Contains(buf.String(), "trusted_proxies") {
		t.Fatalf("warned without forwarded headers: %s", buf.String())
	}
	for range 3 {
		send("198.51.100.7")
	}
	if n := strings.Count(buf.String(), "trusted_proxies"); n != 1 {
		t.Fatalf("warning logged %d times, want once: %s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `"level":"WARN"`) || !strings.Contains(buf.String(), "X-Forwarded-For") {
		t.Errorf("warning lacks level or header: %s", buf.String())
	}
}

func TestServeDrainsInFlightRequestsOnShutdown(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	entered := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	})
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{
			Addr: "127.0.0.1:0", Handler: h, Log: log,
			Timeouts: Timeouts{ReadHeader: time.Second, Read: 5 * time.Second, Write: 5 * time.Second, Idle: time.Second, Shutdown: 5 * time.Second},
		}, addrc)
	}()
	addr := <-addrc

	respc := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr.String() + "/")
		if err != nil {
			respc <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		respc <- string(b)
	}()
	<-entered
	cancel() // SIGTERM arrives while the request is in flight
	// New connections are refused once shutdown has begun.
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if got := <-respc; got != "finished" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
}

// A client that goes away before its answer is written is logged (and
// observed for metrics) as 499, with the status the handler chose apart:
// never as a 200 nobody received. An answer delivered is logged as is.
func TestAccessLogClientGone(t *testing.T) {
	var buf syncBuffer
	var observed []int
	var mu sync.Mutex
	r := newTestRouter(t, nil, Options{
		Log: slog.New(reqlog.NewHandler(slog.NewJSONHandler(&buf, nil))),
		Observe: func(_, _ string, status int, _ time.Duration) {
			mu.Lock()
			observed = append(observed, status)
			mu.Unlock()
		},
	})
	handled := make(chan struct{})
	r.Post("/slow", func(w http.ResponseWriter, r *http.Request) {
		defer close(handled)
		_, _ = io.ReadAll(r.Body) // as handlers do: the server notices a hang-up once the body is read
		<-r.Context().Done()      // the client hung up meanwhile
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	r.Post("/fast", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{}`)) })
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/slow", strings.NewReader("x"))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the slow request answered before the client gave up")
	}
	<-handled
	resp, err := http.Post(srv.URL+"/fast", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(buf.String(), `"msg":"request"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("access log: %q", buf.String())
	}
	// The two lines may come in either order: the slow request's line is
	// written after its handler returned, which is what let the fast one
	// start.
	var slow, fast map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		switch m["route"] {
		case "/slow":
			slow = m
		case "/fast":
			fast = m
		}
	}
	if slow["route"] != "/slow" || slow["status"] != float64(499) || slow["handler_status"] != float64(http.StatusOK) {
		t.Fatalf("access log of a request whose client went away: %v", slow)
	}
	if fast["status"] != float64(http.StatusOK) || fast["handler_status"] != nil {
		t.Fatalf("access log of an answered request: %v", fast)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 2 || !slices.Contains(observed, 499) || !slices.Contains(observed, http.StatusOK) {
		t.Fatalf("observed statuses %v, want 499 and 200 (either order)", observed)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestForwardedHeadersDroppedFromUntrustedPeer: every forwarding header a
// peer that is not a trusted proxy sends (in any letter case, as clients
// write them) is gone before a handler runs. trustProxies looks them up by
// their canonical names, so each name in forwardedHeaders must be one.
func TestForwardedHeadersDroppedFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	for _, h := range forwardedHeaders {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("forwardedHeaders has %q; net/http stores it as %q", h, c)
		}
	}
	r := newTestRouter(t, &bytes.Buffer{}, Options{})
	var seen http.Header
	r.Get("/echo", func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() })
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range forwardedHeaders {
		req.Header[strings.ToLower(h)] = []string{"203.0.113.9"} // sent as written, lower case
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen == nil {
		t.Fatal("the handler did not run")
	}
	for _, h := range forwardedHeaders {
		if v := seen.Values(h); len(v) != 0 {
			t.Errorf("%s reached the handler from an untrusted peer: %q", h, v)
		}
	}
}
