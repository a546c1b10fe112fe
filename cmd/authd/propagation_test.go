package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authd/authd/internal/store/pgtest"
)

// propagationBound is how soon a change made anywhere must be in force on
// every replica. Notifications arrive in milliseconds; the bound is
// generous for a loaded CI machine, and well under what the fallbacks
// would take here (a key reload interval of an hour, the client cache's
// 5 s TTL), so only the notifications can meet it.
const propagationBound = 2 * time.Second

// postFormQuiet posts a form (with the static introspection token when no
// client credentials are given) and returns the status and body; for
// goroutines, which must not fail the test themselves.
func postFormQuiet(target string, form url.Values, user, pass string) (int, []byte) {
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	} else {
		req.Header.Set("Authorization", "Bearer "+introspectionToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func kidOfQuiet(raw string) (string, error) {
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return "", err
	}
	kid, _ := tok.Header["kid"].(string)
	return kid, nil
}

// TestReplicasPropagateChanges: three replicas on one Postgres, each with
// its key reload interval set to an hour. An emergency key rotation
// through the CLI (another process), a client's secret rotated through the
// CLI, and a client deleted through RFC 7592 on one replica are in force
// on every replica within propagationBound, and tokens any replica signs
// afterwards verify on every other. The measured times are logged.
func TestReplicasPropagateChanges(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	f := newFlowEnv(t, dsn)
	environ := map[string]string{
		"AUTHD_DATABASE_URL":                        dsn,
		"AUTHD_KEYS_REFRESH_INTERVAL":               "1h",
		"AUTHD_RATE_LIMITS_TOKEN_PER_IP_PER_MINUTE": "0",
	}
	names := []string{"A", "B", "C"}
	base := map[string]string{}
	for _, name := range names {
		base[name] = "http://" + freeAddr(t)
	}
	// One issuer for all, as behind a load balancer: tokens of one replica
	// must be valid at the others.
	environ["AUTHD_ISSUER"] = base["A"]
	for _, name := range names {
		startAuthdWith(t, strings.TrimPrefix(base[name], "http://"), environ, f.github.Client(), "--config", f.cfg)
	}
	db, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	cli := func(args ...string) string {
		t.Helper()
		var out, logs bytes.Buffer
		if err := run(context.Background(), append(args, "--config", f.cfg), envOf(environ), &out, &logs); err != nil {
			t.Fatalf("authd %s: %v\n%s", strings.Join(args, " "), err, logs.String())
		}
		return out.String()
	}
	clientToken := func(name, id, secret string) (int, string) {
		t.Helper()
		resp, body := postForm(t, http.DefaultClient, base[name]+"/token",
			url.Values{"grant_type": {"client_credentials"}, "resource": {mcpResource}}, id, secret)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.Unmarshal(body, &tok)
		return resp.StatusCode, tok.AccessToken
	}
	// waitAll polls cond on every replica until it holds on all of them and
	// returns how long the slowest took.
	waitAll := func(what string, cond func(name string) bool) time.Duration {
		t.Helper()
		start := time.Now()
		pending := slices.Clone(names)
		for len(pending) > 0 {
			if time.Since(start) > propagationBound {
				t.Fatalf("%s: not in force on %v after %s", what, pending, propagationBound)
			}
			pending = slices.DeleteFunc(pending, cond)
			if len(pending) > 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		took := time.Since(start)
		t.Logf("%s: in force on all three replicas after %s", what, took.Round(time.Millisecond))
		return took
	}

	// A confidential config client, used on every replica so that each
	// caches it.
	var created struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(cli("clients", "create", "--name", "machine", "--grant-type", "client_credentials", "-o", "json")), &created); err != nil {
		t.Fatal(err)
	}
	warm := func(id, secret string) {
		t.Helper()
		for _, name := range names {
			if status, _ := clientToken(name, id, secret); status != http.StatusOK {
				t.Fatalf("client_credentials on %s: %d", name, status)
			}
		}
	}
	warm(created.ID, created.Secret)

	// 1. An emergency rotation: every replica publishes and signs with the
	// new key, and withdraws the old one.
	var oldKid string
	if err := db.QueryRow(t.Context(), `SELECT id FROM signing_keys WHERE state = 'active'`).Scan(&oldKid); err != nil {
		t.Fatal(err)
	}
	// Meanwhile, each replica issues tokens that the next one checks.
	trafficCtx, stopTraffic := context.WithCancel(t.Context())
	var traffic sync.WaitGroup
	var issued, oldKey, checked, refused atomic.Int64
	// Tokens asked for after the rotation committed: a replica still
	// signing with the old key then is the lag that matters.
	var keyRotated atomic.Bool
	var lateOld, lateOldRefused, refusedNew atomic.Int64
	for i, signer := range names {
		verifier := names[(i+1)%len(names)]
		traffic.Go(func() {
			for trafficCtx.Err() == nil {
				late := keyRotated.Load()
				resp, body := postFormQuiet(base[signer]+"/token", url.Values{"grant_type": {"client_credentials"}, "resource": {mcpResource}}, created.ID, created.Secret)
				var tok struct {
					AccessToken string `json:"access_token"`
				}
				if resp != http.StatusOK || json.Unmarshal(body, &tok) != nil {
					continue
				}
				issued.Add(1)
				withOld := false
				if kid, _ := kidOfQuiet(tok.AccessToken); kid == oldKid {
					oldKey.Add(1)
					withOld = true
					if late {
						lateOld.Add(1)
					}
				}
				resp, body = postFormQuiet(base[verifier]+"/introspect", url.Values{"token": {tok.AccessToken}}, "", "")
				if resp != http.StatusOK {
					continue
				}
				checked.Add(1)
				if !strings.Contains(string(body), `"active":true`) {
					refused.Add(1)
					if !withOld {
						refusedNew.Add(1)
					}
					if late && withOld {
						lateOldRefused.Add(1)
					}
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	cli("keys", "rotate", "--now")
	keyRotated.Store(true)
	var newKid string
	if err := db.QueryRow(t.Context(), `SELECT id FROM signing_keys WHERE state = 'active'`).Scan(&newKid); err != nil || newKid == oldKid {
		t.Fatalf("active key after rotate --now: %q (was %q), %v", newKid, oldKid, err)
	}
	waitAll("keys rotate --now", func(name string) bool {
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		getJSON(t, base[name]+"/.well-known/jwks.json", http.StatusOK, &set)
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.Kid)
		}
		return slices.Contains(kids, newKid) && !slices.Contains(kids, oldKid)
	})
	time.Sleep(200 * time.Millisecond)
	stopTraffic()
	traffic.Wait()
	t.Logf("during the emergency rotation: %d tokens issued, %d of them signed with the withdrawn key, %d checked on another replica, %d refused there; "+
		"asked for after the rotation committed: %d signed with the withdrawn key, %d of them refused; tokens of the new key refused: %d",
		issued.Load(), oldKey.Load(), checked.Load(), refused.Load(), lateOld.Load(), lateOldRefused.Load(), refusedNew.Load())
	if checked.Load() == 0 {
		t.Fatal("no token was checked on another replica during the rotation")
	}
	// A replica that has not heard of the new key yet, or is loading it,
	// finds it before refusing a token signed with it.
	if n := refusedNew.Load(); n > 0 {
		t.Errorf("%d tokens signed with the new key by one replica were refused by another", n)
	}
	// Every replica signs with the new key, and its tokens verify on every
	// replica.
	for _, signer := range names {
		status, tok := clientToken(signer, created.ID, created.Secret)
		if status != http.StatusOK {
			t.Fatalf("client_credentials on %s after the rotation: %d", signer, status)
		}
		if k := kidOf(t, tok); k != newKid {
			t.Fatalf("replica %s signs with %s after the rotation, want %s", signer, k, newKid)
		}
		for _, verifier := range names {
			if !introspectActive(t, base[verifier], tok) {
				t.Errorf("a token %s signed after the rotation is not active on %s", signer, verifier)
			}
		}
	}

	// 2. The client's secret rotated through the CLI: the old secret stops
	// working everywhere, the new one works everywhere.
	warm(created.ID, created.Secret)
	var rotated struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(cli("clients", "rotate-secret", created.ID, "-o", "json")), &rotated); err != nil || rotated.Secret == "" {
		t.Fatalf("rotate-secret: %v", err)
	}
	waitAll("clients rotate-secret", func(name string) bool {
		status, _ := clientToken(name, created.ID, created.Secret)
		return status == http.StatusUnauthorized
	})
	warm(created.ID, rotated.Secret)

	// 3. A dynamically registered client deleted through RFC 7592 on A.
	reg := registerClient(t, base["A"], map[string]any{
		"client_name": "deleted soon", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	id, secret, rat := reg["client_id"].(string), reg["client_secret"].(string), reg["registration_access_token"].(string)
	warm(id, secret)
	req, _ := http.NewRequest(http.MethodDelete, base["A"]+"/register/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+rat)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /register/%s: %d", id, resp.StatusCode)
	}
	waitAll("client deleted on A", func(name string) bool {
		status, _ := clientToken(name, id, secret)
		return status == http.StatusUnauthorized
	})
}
