package cimd

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAddressAllowed(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		loopback bool // allowed with allowLoopback
		public   bool // allowed without
	}{
		{"127.0.0.1", true, false},
		{"127.1.2.3", true, false},
		{"::1", true, false},
		{"::ffff:127.0.0.1", true, false},
		{"10.0.0.1", false, false},
		{"10.255.255.255", false, false},
		{"172.16.0.1", false, false},
		{"172.31.255.1", false, false},
		{"192.168.1.1", false, false},
		{"169.254.169.254", false, false}, // cloud metadata
		{"::ffff:169.254.169.254", false, false},
		{"::ffff:10.0.0.1", false, false},
		{"fe80::1", false, false},
		{"fe80::1%eth0", false, false},
		{"fc00::1", false, false},
		{"fd12:3456::1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"224.0.0.1", false, false},
		{"239.255.255.250", false, false},
		{"ff02::1", false, false},
		{"ff05::2", false, false},
		{"100.64.0.1", false, false}, // CGNAT
		{"192.0.2.10", false, false},
		{"198.18.0.1", false, false},
		{"255.255.255.255", false, false},
		{"240.0.0.1", false, false},
		{"64:ff9b::a00:1", false, false}, // NAT64 of 10.0.0.1
		{"2002:7f00:1::1", false, false}, // 6to4 of 127.0.0.1
		{"2001:db8::1", false, false},
		{"::127.0.0.1", false, false}, // IPv4-compatible
		{"93.184.216.34", true, true},
		{"8.8.8.8", true, true},
		{"2606:4700:4700::1111", true, true},
		{"172.32.0.1", true, true}, // just outside 172.16/12
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := AddressAllowed(a, false); got != tc.public {
			t.Errorf("AddressAllowed(%s, loopback off) = %v, want %v", tc.addr, got, tc.public)
		}
		if got := AddressAllowed(a, true); got != tc.loopback {
			t.Errorf("AddressAllowed(%s, loopback on) = %v, want %v", tc.addr, got, tc.loopback)
		}
	}
	if AddressAllowed(netip.Addr{}, true) {
		t.Error("the zero address was allowed")
	}
}

// TestDialControlChecksSocketAddress calls the hook the dialer runs on
// the socket address right before connecting: whatever a resolver
// answered, a refused address never gets a connection.
func TestDialControlChecksSocketAddress(t *testing.T) {
	f := NewFetcher(FetcherOptions{})
	for _, addr := range []string{"127.0.0.1:443", "[::1]:443", "[::ffff:127.0.0.1]:443", "10.0.0.1:443", "169.254.169.254:80", "[fe80::1%25eth0]:443", "not-an-address:443"} {
		if err := f.control("tcp", addr, nil); !errors.Is(err, errBlockedAddress) {
			t.Errorf("control(%s) = %v, want refusal", addr, err)
		}
	}
	if err := f.control("tcp4", "93.184.216.34:443", nil); err != nil {
		t.Errorf("control(public) = %v", err)
	}
}

func fetchErr(t *testing.T, err error) *FetchError {
	t.Helper()
	var fe *FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FetchError", err, err)
	}
	return fe
}

func TestFetchValidDocument(t *testing.T) {
	srv := newDocServer(t)
	id := srv.URL + "/client.json"
	srv.setDoc(t, "/client.json", validDoc(id), "public, max-age=600")
	f := NewFetcher(FetcherOptions{RootCAs: srv.roots(), AllowLoopback: true})
	resp, err := f.Fetch(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if !resp.HasLifetime || resp.Lifetime != 10*time.Minute || resp.NotModified {
		t.Fatalf("response %+v", resp)
	}
	if _, err := ParseDocument(id, resp.Body); err != nil {
		t.Fatal(err)
	}
	// Without the test root the certificate is not trusted.
	_, err = NewFetcher(FetcherOptions{AllowLoopback: true}).Fetch(context.Background(), id, "")
	if fe := fetchErr(t, err); !strings.Contains(fe.Reason, "certificate") || fe.Transient {
		t.Fatalf("untrusted certificate: %+v", fe)
	}
}

func TestFetchRefusals(t *testing.T) {
	srv := newDocServer(t)
	big := `{"client_id":"` + strings.Repeat("x", 6000) + `"}`
	srv.set("/big", page{header: http.Header{"Content-Type": {"application/json"}}, body: []byte(big)})
	srv.set("/big-chunked", page{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for range 10 {
			_, _ = w.Write([]byte(strings.Repeat(" ", 1000)))
			w.(http.Flusher).Flush() // no Content-Length: the cap must hold while reading
		}
	}})
	srv.set("/redirect", page{status: http.StatusFound, header: http.Header{"Location": {"/target"}}})
	srv.set("/target", page{header: http.Header{"Content-Type": {"application/json"}}, body: []byte(`{}`)})
	srv.set("/html", page{header: http.Header{"Content-Type": {"text/html"}}, body: []byte(`{}`)})
	srv.set("/notype", page{body: []byte(`{}`), header: http.Header{"Content-Type": {""}}})
	srv.set("/gone", page{status: http.StatusNotFound})
	srv.set("/broken", page{status: http.StatusBadGateway})
	release := make(chan struct{})
	defer close(release)
	srv.set("/slow", page{handler: func(w http.ResponseWriter, r *http.Request) {
		select { // hold the response until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	}})
	srv.set("/slow-body", page{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"client_id":`))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}})

	f := NewFetcher(FetcherOptions{RootCAs: srv.roots(), AllowLoopback: true})
	// The slow cases get a short cap; the others the default, so that a
	// loaded machine does not turn them into timeouts.
	short := NewFetcher(FetcherOptions{RootCAs: srv.roots(), AllowLoopback: true, Timeout: 300 * time.Millisecond})
	for _, tc := range []struct {
		path      string
		reason    string
		transient bool
	}{
		{"/big", "larger than 5120 bytes", false},
		{"/big-chunked", "larger than 5120 bytes", false},
		{"/redirect", "redirect", false},
		{"/html", "not served as JSON", false},
		{"/notype", "not served as JSON", false},
		{"/gone", "HTTP 404", false},
		{"/broken", "HTTP 502", true},
		{"/slow", "timed out", true},
		{"/slow-body", "timed out", true},
	} {
		fetcher := f
		if strings.HasPrefix(tc.path, "/slow") {
			fetcher = short
		}
		_, err := fetcher.Fetch(context.Background(), srv.URL+tc.path, "")
		fe := fetchErr(t, err)
		if !strings.Contains(fe.Reason, tc.reason) || fe.Transient != tc.transient {
			t.Errorf("%s: %+v, want reason containing %q, transient %v", tc.path, fe, tc.reason, tc.transient)
		}
	}
	if n := srv.hitsOf("/target"); n != 0 {
		t.Errorf("the redirect was followed (%d requests to its target)", n)
	}
}

func TestFetchRefusesLoopbackByDefault(t *testing.T) {
	srv := newDocServer(t)
	srv.setDoc(t, "/c", validDoc(srv.URL+"/c"), "")
	u, _ := url.Parse(srv.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	f := NewFetcher(FetcherOptions{RootCAs: srv.roots()}) // allow_loopback off
	for _, id := range []string{
		srv.URL + "/c",
		"https://[::1]:" + port + "/c",
		"https://[::ffff:127.0.0.1]:" + port + "/c",
		"https://localhost:" + port + "/c",
	} {
		_, err := f.Fetch(context.Background(), id, "")
		if fe := fetchErr(t, err); !strings.Contains(fe.Reason, "special-use address") || fe.Transient {
			t.Errorf("%s: %+v", id, fe)
		}
	}
	if n := srv.totalHits(); n != 0 {
		t.Fatalf("the document server was reached %d times", n)
	}
}

// TestFetchRefusesNamesResolvingToSpecialAddresses makes a public-looking
// host name resolve to internal addresses: the dial refuses each.
func TestFetchRefusesNamesResolvingToSpecialAddresses(t *testing.T) {
	srv := newDocServer(t)
	srv.setDoc(t, "/c", validDoc("x"), "")
	u, _ := url.Parse(srv.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	for _, addr := range []string{
		"127.0.0.1", "10.1.2.3", "172.16.5.4", "192.168.0.10", "169.254.169.254", "::1",
		"::ffff:127.0.0.1", "fe80::1", "fc00::1", "0.0.0.0", "224.0.0.251", "100.64.0.1",
	} {
		ip := netip.MustParseAddr(addr)
		f := NewFetcher(FetcherOptions{RootCAs: srv.roots(), LookupNetIP: func(context.Context, string, string) ([]netip.Addr, error) {
			return []netip.Addr{ip}, nil
		}})
		_, err := f.Fetch(context.Background(), "https://example.com:"+port+"/c", "")
		if fe := fetchErr(t, err); !strings.Contains(fe.Reason, "special-use address") {
			t.Errorf("example.com -> %s: %+v", addr, fe)
		}
	}
	// A name with one internal address among public ones is refused too.
	f := NewFetcher(FetcherOptions{RootCAs: srv.roots(), LookupNetIP: func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("10.0.0.1")}, nil
	}})
	if _, err := f.Fetch(context.Background(), "https://example.com:"+port+"/c", ""); !strings.Contains(fetchErr(t, err).Reason, "special-use") {
		t.Errorf("mixed answer: %v", err)
	}
	if n := srv.totalHits(); n != 0 {
		t.Fatalf("the document server was reached %d times", n)
	}
}

// TestFetchChecksEveryDial is DNS rebinding: the name first resolves to
// an allowed address (loopback, allowed here so the test server can
// answer), then to the cloud metadata address. The check runs on each
// connection's resolved address, so the second fetch is refused.
func TestFetchChecksEveryDial(t *testing.T) {
	srv := newDocServer(t)
	id := "https://example.com:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port) + "/c"
	srv.setDoc(t, "/c", validDoc(id), "")
	var mu sync.Mutex
	answers := []string{"127.0.0.1", "169.254.169.254"}
	lookups := 0
	f := NewFetcher(FetcherOptions{RootCAs: srv.roots(), AllowLoopback: true, LookupNetIP: func(_ context.Context, _, host string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		if host != "example.com" {
			return nil, errors.New("unexpected host " + host)
		}
		a := answers[min(lookups, len(answers)-1)]
		lookups++
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}})
	if _, err := f.Fetch(context.Background(), id, ""); err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	_, err := f.Fetch(context.Background(), id, "")
	if fe := fetchErr(t, err); !strings.Contains(fe.Reason, "special-use address") {
		t.Fatalf("second fetch after rebinding: %+v", fe)
	}
	if n := srv.hitsOf("/c"); n != 1 {
		t.Fatalf("document server reached %d times, want 1", n)
	}
}

func TestFetchNotModified(t *testing.T) {
	srv := newDocServer(t)
	srv.set("/c", page{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=3600")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}})
	f := NewFetcher(FetcherOptions{RootCAs: srv.roots(), AllowLoopback: true})
	resp, err := f.Fetch(context.Background(), srv.URL+"/c", `"v1"`)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.NotModified || resp.ETag != `"v1"` || resp.Lifetime != time.Hour {
		t.Fatalf("%+v", resp)
	}
}

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
		ok   bool
	}{
		{http.Header{}, 0, false},
		{http.Header{"Cache-Control": {"max-age=600"}}, 10 * time.Minute, true},
		{http.Header{"Cache-Control": {"public, max-age=600, s-maxage=60"}}, time.Minute, true},
		{http.Header{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, 500 * time.Second, true},
		{http.Header{"Cache-Control": {"no-store"}}, 0, true},
		{http.Header{"Cache-Control": {"no-cache, max-age=600"}}, 0, true},
		{http.Header{"Cache-Control": {"max-age=abc"}}, 0, true},
		{http.Header{"Expires": {now.Add(2 * time.Hour).Format(http.TimeFormat)}, "Date": {now.Format(http.TimeFormat)}}, 2 * time.Hour, true},
		{http.Header{"Expires": {"0"}}, 0, true},
		{http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}, "Cache-Control": {"max-age=60"}}, time.Minute, true},
	} {
		got, ok := freshness(tc.h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("freshness(%v) = %s, %v; want %s, %v", tc.h, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "application/oauth-client+json": true,
		"text/json": false, "text/html": false, "": false, "application/jsonp": false, "application/x-json-evil": false,
	} {
		if isJSON(ct) != want {
			t.Errorf("isJSON(%q) != %v", ct, want)
		}
	}
}
