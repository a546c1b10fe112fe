package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
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

// instance is an authd process run in-process by a test.
type instance struct {
	URL    string
	Stdout *syncBuffer
	Logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	freeAddrs.Lock()
	defer freeAddrs.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		// The kernel may hand a port just closed out again: two calls
		// (one test's listen and metrics addresses, or two tests') must
		// not get the same one.
		if !freeAddrs.given[addr] {
			freeAddrs.given[addr] = true
			return addr
		}
	}
}

// freeAddrs are the addresses freeAddr has handed out in this process.
var freeAddrs = struct {
	sync.Mutex
	given map[string]bool
}{given: map[string]bool{}}

// startAuthd runs `authd serve` with args and environment until the test
// ends. The issuer is http://<addr> unless the env sets AUTHD_ISSUER.
func startAuthd(t *testing.T, addr string, environ map[string]string, args ...string) *instance {
	t.Helper()
	return startAuthdWith(t, addr, environ, nil, args...)
}

// startAuthdWith is startAuthd with an HTTP client for upstream providers.
func startAuthdWith(t *testing.T, addr string, environ map[string]string, upstreamClient *http.Client, args ...string) *instance {
	t.Helper()
	return startAuthdEnv(t, addr, environ, func(e *env) { e.upstreamClient = upstreamClient }, args...)
}

// startAuthdEnv is startAuthd with configure applied to the process
// environment before it starts (test hooks such as the upstream client).
func startAuthdEnv(t *testing.T, addr string, environ map[string]string, configure func(*env), args ...string) *instance {
	t.Helper()
	vars := map[string]string{
		"AUTHD_LISTEN":    addr,
		"AUTHD_ISSUER":    "http://" + addr,
		"AUTHD_LOG_LEVEL": "debug",
		// Most end-to-end tests register machine clients; the default
		// (off) is checked by TestSecurityDynamicClientCredentialsOff,
		// which passes "" to get it.
		"AUTHD_REGISTRATION_ALLOW_CLIENT_CREDENTIALS": "true",
	}
	for k, v := range environ {
		vars[k] = v
		if v == "" { // "": leave the setting at its default
			delete(vars, k)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	inst := &instance{URL: vars["AUTHD_ISSUER"], Stdout: &syncBuffer{}, Logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	e := &env{getenv: envOf(vars), stdout: inst.Stdout, stderr: inst.Logs, now: time.Now, ready: ready}
	if configure != nil {
		configure(e)
	}
	go func() {
		inst.done <- newRootCmd(e).ExecuteContextC(ctx, append([]string{"serve"}, args...))
	}()
	t.Cleanup(func() { inst.Stop(t) })
	select {
	case <-ready:
	case err := <-inst.done:
		inst.done <- err // for the cleanup's Stop
		t.Fatalf("authd exited before becoming ready: %v\nlogs:\n%s", err, inst.Logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("authd not ready after 60s; logs:\n%s", inst.Logs.String())
	}
	return inst
}

// Stop shuts the instance down gracefully and checks it exited cleanly.
func (i *instance) Stop(t *testing.T) {
	if i.cancel == nil {
		return
	}
	i.cancel()
	i.cancel = nil
	select {
	case err := <-i.done:
		if err != nil {
			t.Errorf("authd exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("authd did not shut down within 30s")
	}
}

// getJSON fetches url and decodes a JSON body, checking the status.
func getJSON(t *testing.T, url string, wantStatus int, v any) http.Header {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, wantStatus, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return resp.Header
}

func statusOf(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls url until it answers want or the deadline passes.
func waitStatus(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := 0
	for time.Now().Before(deadline) {
		if last = statusOf(t, url); last == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s answered %d, want %d within %s", url, last, want, within)
}

func postForm(t *testing.T, c *http.Client, target string, form url.Values, basicUser, basicPass string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}
