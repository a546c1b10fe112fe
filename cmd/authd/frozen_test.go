package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/store/pgtest"
)

// freezableProxy forwards TCP connections to a database and can stop
// forwarding: frozen, it still accepts connections and reads what clients
// send, but passes nothing on in either direction, as a database that is
// stopped (SIGSTOP), swapping to death or behind a dead network path does.
// Thawed, it delivers what it held.
type freezableProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	gate  chan struct{} // closed while forwarding
	conns []net.Conn
}

func newFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{ln: ln, target: target, gate: make(chan struct{})}
	close(p.gate)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *freezableProxy) addr() string { return p.ln.Addr().String() }

func (p *freezableProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
}

func (p *freezableProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *freezableProxy) open() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate
}

func (p *freezableProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies src to dst, holding each chunk while frozen.
func (p *freezableProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.open()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezableProxy) close() {
	p.ln.Close()
	p.thaw()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// frozenResult is one client's experience of a request.
type frozenResult struct {
	status     int
	code       string
	retryAfter string
	latency    time.Duration
	err        error
}

// TestFrozenDatabase: Postgres stops answering (connections accepted, no
// replies) under a burst of refreshes. authd answers every request with
// 503 temporarily_unavailable and Retry-After within its database budget,
// refuses at once what would only queue beyond database_max_in_flight,
// does not pile up goroutines, logs a client that gave up as 499 (not the
// status it never received), and serves again once the database does.
//
// Not parallel: the goroutine count (authdGoroutines) is the whole test
// process's, so it runs before the package's parallel tests start, whose
// own servers and pools would otherwise come and go between its two
// counts (a full run once saw 109 after against 61 before, with every
// request answered).
func TestFrozenDatabase(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, _ := url.Parse(dsn)
	proxy := newFreezableProxy(t, u.Host)
	u.Host = proxy.addr()
	// The budget must also hold for the sign-in flow that sets the test up
	// (before the freeze) on a loaded machine: 1 s, then 3 s at load 20, were seen to run out
	// there.
	const budget = 5 * time.Second
	s := newSecEnvOn(t, dsn, map[string]string{
		"AUTHD_DATABASE_URL":           u.String(),
		"AUTHD_DATABASE_TIMEOUT":       budget.String(),
		"AUTHD_DATABASE_MAX_IN_FLIGHT": "8",
		"AUTHD_KEYS_REFRESH_INTERVAL":  "1h",
	})
	const redirect = "http://127.0.0.1:9/cb"
	conf := s.oauthConfig(s.publicClient(t, redirect), "", redirect)
	tok := s.tokens(t, conf)
	refreshForm := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {conf.ClientID}}
	post := func(ctx context.Context, requestID string) frozenResult {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.inst.URL+"/token", strings.NewReader(refreshForm.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if requestID != "" {
			req.Header.Set("X-Request-Id", requestID)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return frozenResult{err: err, latency: time.Since(start)}
		}
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &body)
		return frozenResult{status: resp.StatusCode, code: body.Error, retryAfter: resp.Header.Get("Retry-After"), latency: time.Since(start)}
	}

	baseline := authdGoroutines()
	proxy.freeze()
	const clients = 200
	// Clients wait long enough that a hung request shows up as a time-out
	// rather than an answer.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var peak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for ctx.Err() == nil {
			if n := int64(authdGoroutines()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	results := make([]frozenResult, clients)
	var firstAnswer atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			results[i] = post(ctx, "")
			if results[i].err == nil {
				firstAnswer.CompareAndSwap(0, int64(time.Since(start)))
			}
		})
	}
	wg.Wait()
	burst := time.Since(start)

	// /authorize answers at once too: with the client and its redirect URI
	// confirmed (a cached client), by sending the browser back with
	// error=temporarily_unavailable (RFC 6749 §4.1.2.1), else with a 503
	// error page.
	authURL := conf.AuthCodeURL("frozen", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", mcpResource))
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	pageStart := time.Now()
	presp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatalf("/authorize with the database frozen: %v after %s", err, time.Since(pageStart))
	}
	presp.Body.Close()
	loc, _ := url.Parse(presp.Header.Get("Location"))
	switch {
	case presp.StatusCode == http.StatusServiceUnavailable && strings.HasPrefix(presp.Header.Get("Content-Type"), "text/html") && presp.Header.Get("Retry-After") != "":
	case presp.StatusCode == http.StatusFound && strings.HasPrefix(loc.String(), redirect) && loc.Query().Get("error") == oauth.CodeTemporarilyUnavailable:
	default:
		t.Errorf("/authorize with the database frozen: %d %s, Location %q; want a 503 page or an error redirect", presp.StatusCode, presp.Header.Get("Content-Type"), loc)
	}
	t.Logf("/authorize with the database frozen: %d after %s", presp.StatusCode, time.Since(pageStart).Round(time.Millisecond))

	// An unknown client at /authorize: the error page, 503.
	presp, err = noFollow.Get(strings.Replace(authURL, "client_id="+conf.ClientID, "client_id=not-cached-"+conf.ClientID, 1))
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(presp.Header.Get("Content-Type"), "text/html") || presp.Header.Get("Retry-After") == "" {
		t.Errorf("/authorize of an uncached client with the database frozen: %d %s, Retry-After %q; want a 503 error page",
			presp.StatusCode, presp.Header.Get("Content-Type"), presp.Header.Get("Retry-After"))
	}

	// A client that gives up before authd answers.
	gctx, gcancel := context.WithTimeout(t.Context(), budget/4)
	gone := post(gctx, "frozen-client-gone")
	gcancel()
	time.Sleep(budget + 1500*time.Millisecond) // authd finishes that request meanwhile
	after := authdGoroutines()
	cancel()
	<-sampling

	var slowest time.Duration
	statuses := map[string]int{}
	for _, r := range results {
		slowest = max(slowest, r.latency)
		switch {
		case r.err != nil:
			statuses["no answer"]++
		default:
			statuses[fmt.Sprintf("%d %s", r.status, r.code)]++
		}
	}
	t.Logf("frozen database, %d concurrent refreshes: first answer after %s, all answered after %s (slowest %s); outcomes %v",
		clients, time.Duration(firstAnswer.Load()).Round(time.Millisecond), burst.Round(time.Millisecond), slowest.Round(time.Millisecond), statuses)
	t.Logf("authd's goroutines: %d before, peak %d, %d after", baseline, peak.Load(), after)

	for i, r := range results {
		if r.err != nil || r.status != http.StatusServiceUnavailable || r.code != oauth.CodeTemporarilyUnavailable || r.retryAfter == "" {
			t.Fatalf("request %d with the database frozen: %+v, want 503 temporarily_unavailable with Retry-After", i, r)
		}
	}
	// Budget, plus the second the driver gives a cancel request before it
	// drops the connection, plus slack for a loaded machine.
	if limit := budget + 3*time.Second; slowest > limit {
		t.Errorf("slowest answer with the database frozen took %s, want under %s", slowest, limit)
	}
	// A refused request answers without waiting for the database; one that
	// waited would answer only after the budget. Half the budget tells the
	// two apart with room for a loaded machine (1 s was seen to be missed
	// by 120 ms under load 20).
	if first := time.Duration(firstAnswer.Load()); first > budget/2 {
		t.Errorf("first answer after %s: requests beyond database_max_in_flight must be refused at once", first)
	}
	// Nothing is left waiting on the frozen database once every request
	// was answered: the goroutines are back near where they started.
	if after > baseline+40 {
		t.Errorf("%d goroutines after the burst, %d before: requests are still stuck on the database", after, baseline)
	}

	// The client that gave up got nothing; the log says so.
	if gone.err == nil {
		t.Fatalf("the impatient client got an answer with the database frozen: %+v", gone)
	}
	line := logLine(t, s.inst.Logs.String(), "frozen-client-gone")
	if line["status"] != float64(499) || line["handler_status"] == nil {
		t.Errorf("access log of a request whose client went away: %v, want status 499 and the handler's status apart", line)
	}
	_, metricsText := get(t, s.metricsURL, nil)
	for _, want := range []string{`status="499"`, `authd_db_operations_refused_total{reason="overloaded"}`, `authd_db_operations_refused_total{reason="deadline"}`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The database answers again: so does authd, and the user is still
	// signed in (a rotation held by the frozen database and committed on
	// thawing is a lost response, which the retry window covers).
	proxy.thaw()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := post(t.Context(), "")
		if r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) || (r.err == nil && r.status != http.StatusServiceUnavailable) {
			t.Fatalf("after the database came back: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// authdGoroutines counts the goroutines of the test process that are not
// the test's own: its clients (their transport's connection loops), the
// proxy, and the test goroutines themselves.
func authdGoroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "freezableProxy") || strings.Contains(g, "frozen_test.go") ||
			strings.Contains(g, "net/http.(*persistConn)") || strings.Contains(g, "testing.(*T)") ||
			strings.Contains(g, "testing.tRunner") {
			continue
		}
		n++
	}
	return n
}

// logLine returns the access log line of the request with this id.
func logLine(t *testing.T, logs, requestID string) map[string]any {
	t.Helper()
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, `"request_id":"`+requestID+`"`) || !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		return m
	}
	t.Fatalf("no access log line for request %s", requestID)
	return nil
}
