package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/internal/store/pgtest"
)

// TestPostgresRestartDuringTraffic: while clients keep asking for tokens,
// PostgreSQL goes down and comes back. Every answer is either a token or a
// 503 temporarily_unavailable JSON error (never a 500 or a hang), authd
// recovers without a restart, and every token it did issue is valid.
func TestPostgresRestartDuringTraffic(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	inst := startAuthd(t, freeAddr(t), map[string]string{
		"AUTHD_DATABASE_URL": cluster.DSN(),
		"AUTHD_RESOURCES":    `[{"uri": "https://mcp.example.com/mcp", "name": "MCP"}]`,
	}, "--config", githubConfig(t))
	reg := registerClient(t, inst.URL, map[string]any{
		"client_name":                "batch job",
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)

	type outcome struct {
		status int
		error  string
		token  string
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodPost, inst.URL+"/token",
				strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			resp, err := client.Do(req)
			if err != nil {
				mu.Lock()
				outcomes = append(outcomes, outcome{status: -1, error: err.Error()})
				mu.Unlock()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var v struct {
				AccessToken string `json:"access_token"`
				Error       string `json:"error"`
			}
			_ = json.Unmarshal(body, &v)
			mu.Lock()
			outcomes = append(outcomes, outcome{status: resp.StatusCode, error: v.Error, token: v.AccessToken})
			mu.Unlock()
		}
	}()
	count := func(status int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range outcomes {
			if o.status == status {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				<-done
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("timed out waiting for %s; outcomes: %v", what, outcomes[:min(len(outcomes), 5)])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	waitFor("tokens before the outage", func() bool { return count(http.StatusOK) >= 5 })
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor("503s during the outage", func() bool { return count(http.StatusServiceUnavailable) >= 5 })
	okBefore := count(http.StatusOK)
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor("tokens after recovery", func() bool { return count(http.StatusOK) >= okBefore+5 })
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	var tokens []string
	for _, o := range outcomes {
		switch {
		case o.status == http.StatusOK && o.token != "":
			tokens = append(tokens, o.token)
		case o.status == http.StatusServiceUnavailable && o.error == "temporarily_unavailable":
		default:
			t.Errorf("answer during the restart: %s", fmt.Sprint(o.status, " ", o.error))
		}
	}
	for _, tok := range tokens {
		claims := verifyWithJWKS(t, inst.URL, tok)
		if claims["client_id"] != id {
			t.Fatalf("token for %v", claims["client_id"])
		}
	}
}
