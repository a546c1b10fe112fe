package cimd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FetchError is why a document could not be fetched. Reason is safe to show
// to the user (it names no internal detail beyond the client's own URL);
// Transient says a later attempt may succeed (network trouble, 5xx), so a
// cached copy may stand in for the answer.
type FetchError struct {
	Reason    string
	Transient bool
	Err       error
}

func (e *FetchError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *FetchError) Unwrap() error { return e.Err }

// errBlockedAddress is returned by the dialer for a refused address.
var errBlockedAddress = errors.New("address not allowed")

// Response is a fetched document.
type Response struct {
	Body []byte
	ETag string
	// NotModified: the server answered 304 to If-None-Match; Body is empty
	// and the cached copy is still current.
	NotModified bool
	// Lifetime is the freshness lifetime from Cache-Control / Expires;
	// HasLifetime is false when the response gave none.
	Lifetime    time.Duration
	HasLifetime bool
}

// FetcherOptions configure NewFetcher. Zero values take the defaults.
type FetcherOptions struct {
	MaxBytes      int64
	Timeout       time.Duration
	AllowLoopback bool
	// RootCAs verifies servers (nil: the system roots). Tests pass the
	// pool of an httptest TLS server.
	RootCAs *x509.CertPool
	// LookupNetIP resolves host names (nil: net.DefaultResolver). Tests
	// substitute it to make a name resolve to any address.
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// Now is the clock for Expires headers of responses without a Date
	// (nil: time.Now).
	Now func() time.Time
}

// Fetcher fetches documents without letting a client_id steer requests
// into authd's own network.
type Fetcher struct {
	client        *http.Client
	maxBytes      int64
	timeout       time.Duration
	allowLoopback bool
	lookup        func(ctx context.Context, network, host string) ([]netip.Addr, error)
	now           func() time.Time
}

// NewFetcher builds a Fetcher.
func NewFetcher(o FetcherOptions) *Fetcher {
	f := &Fetcher{maxBytes: o.MaxBytes, timeout: o.Timeout, allowLoopback: o.AllowLoopback, lookup: o.LookupNetIP, now: o.Now}
	if f.now == nil {
		f.now = time.Now
	}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMaxDocumentBytes
	}
	if f.timeout <= 0 {
		f.timeout = DefaultFetchTimeout
	}
	if f.lookup == nil {
		f.lookup = net.DefaultResolver.LookupNetIP
	}
	transport := &http.Transport{
		// Never a proxy from the environment: the proxy, not authd, would
		// pick the address, and no check below would apply.
		Proxy:                 nil,
		DialContext:           f.dial,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   f.timeout,
		ResponseHeaderTimeout: f.timeout,
		// Each fetch dials afresh (fetches are rare: documents are cached),
		// so every connection passes the address check and none idles on
		// a host a client chose.
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
		ForceAttemptHTTP2:      true,
	}
	f.client = &http.Client{
		Transport: transport,
		Timeout:   f.timeout,
		// The draft forbids following redirects: the document must be
		// served at the client_id URL itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

// dial resolves addr's host, refuses the connection if any of its
// addresses is not allowed, and connects to a checked address. The
// dialer's Control hook checks the socket address once more, so no path
// (a literal, a resolver change) reaches a refused address unchecked.
func (f *Fetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", portStr)
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else if addrs, err = f.lookup(ctx, "ip", host); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	// One refused address refuses the host: a name that points anywhere
	// internal is not a public client's document.
	for _, ip := range addrs {
		if !AddressAllowed(ip, f.allowLoopback) {
			return nil, errBlockedAddress
		}
	}
	d := &net.Dialer{Control: f.control}
	var lastErr error
	for _, ip := range addrs {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// control runs after the socket is created and before it connects.
func (f *Fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !AddressAllowed(ap.Addr(), f.allowLoopback) {
		return errBlockedAddress
	}
	return nil
}

// specialPrefixes are special-use ranges (RFC 6890 and the IANA special
// purpose registries) that netip's predicates do not already cover, or
// that embed an IPv4 address a gateway would translate.
var specialPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"100.64.0.0/10",   // carrier-grade NAT (RFC 6598)
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"240.0.0.0/4",     // reserved, and 255.255.255.255
		"::/96",           // unspecified, loopback, IPv4-compatible
		"64:ff9b::/96",    // NAT64 (embeds any IPv4 address)
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4 (embeds any IPv4 address)
		"3fff::/20",       // documentation
		"5f00::/16",       // segment routing SIDs
		"fc00::/7",        // unique local
		"fec0::/10",       // deprecated site-local
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// AddressAllowed reports whether authd may connect to ip to fetch a
// document: a global unicast address, not private, loopback, link-local,
// multicast, unspecified or otherwise special-use. IPv4-mapped IPv6
// addresses are judged as the IPv4 address they carry. Loopback is allowed
// only with allowLoopback (development).
func AddressAllowed(ip netip.Addr, allowLoopback bool) bool {
	ip = ip.Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return false
	case ip.IsLoopback():
		return allowLoopback
	case ip.IsPrivate(), ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast(),
		ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast(), !ip.IsGlobalUnicast():
		return false
	}
	for _, p := range specialPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Fetch GETs the document at rawURL (already validated by ParseClientID).
// With etag set it asks for revalidation (If-None-Match). Every failure is
// a *FetchError.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, etag string) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil || req.URL.Scheme != "https" {
		return nil, &FetchError{Reason: "the client_id is not a valid https URL", Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "authd (OAuth client ID metadata document fetcher)")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	now := f.now()
	resp, err := f.client.Do(req)
	if err == nil && ctx.Err() != nil {
		// An answer that raced the deadline (a server that gave up only
		// because the connection was closed) is still a timeout.
		resp.Body.Close()
		err = ctx.Err()
	}
	if err != nil {
		return nil, classifyTransportError(err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		lt, ok := freshness(resp.Header, now)
		return &Response{NotModified: true, ETag: etagOr(resp.Header.Get("ETag"), etag), Lifetime: lt, HasLifetime: ok}, nil
	case resp.Header.Get("Location") != "" && resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, &FetchError{Reason: fmt.Sprintf("the document URL answered with a redirect (HTTP %d); redirects are not followed", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		transient := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
		return nil, &FetchError{Reason: fmt.Sprintf("the document URL answered HTTP %d instead of 200", resp.StatusCode), Transient: transient}
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return nil, &FetchError{Reason: "the document is not served as JSON (Content-Type must be application/json)"}
	}
	if resp.ContentLength > f.maxBytes {
		return nil, &FetchError{Reason: fmt.Sprintf("the document is larger than %d bytes", f.maxBytes)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err == nil && ctx.Err() != nil {
		// The deadline cut the connection, yet the body may read as ended
		// cleanly (the server saw the close and finished its response):
		// what was read is not the whole document.
		err = ctx.Err()
	}
	if err != nil {
		return nil, classifyTransportError(err)
	}
	if int64(len(body)) > f.maxBytes {
		return nil, &FetchError{Reason: fmt.Sprintf("the document is larger than %d bytes", f.maxBytes)}
	}
	lt, ok := freshness(resp.Header, now)
	return &Response{Body: body, ETag: resp.Header.Get("ETag"), Lifetime: lt, HasLifetime: ok}, nil
}

func etagOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func classifyTransportError(err error) *FetchError {
	switch {
	case errors.Is(err, errBlockedAddress):
		return &FetchError{Reason: "the document's host is not allowed: it resolves to a private, loopback, link-local or other special-use address", Err: err}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &FetchError{Reason: "fetching the document timed out", Transient: true, Err: err}
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return &FetchError{Reason: "the document's server presented an untrusted TLS certificate", Err: err}
	}
	return &FetchError{Reason: "the document could not be fetched", Transient: true, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isJSON accepts application/json and application/<anything>+json.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// freshness is the response's freshness lifetime (RFC 9111 §4.2.1):
// s-maxage (authd is shared by every user), else max-age, else Expires
// minus Date; no-store and no-cache count as zero (the floor applies).
// The Age header is subtracted. ok is false when no header says anything.
func freshness(h http.Header, now time.Time) (lt time.Duration, ok bool) {
	var maxAge, sMaxAge = -1, -1
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			val = strings.Trim(val, `"`)
			switch strings.ToLower(name) {
			case "no-store", "no-cache", "private":
				return 0, true
			case "max-age":
				if n, err := strconv.Atoi(val); err == nil && n >= 0 {
					maxAge = n
				} else {
					return 0, true
				}
			case "s-maxage":
				if n, err := strconv.Atoi(val); err == nil && n >= 0 {
					sMaxAge = n
				}
			}
		}
	}
	age := time.Duration(0)
	if n, err := strconv.Atoi(h.Get("Age")); err == nil && n > 0 {
		age = time.Duration(n) * time.Second
	}
	switch {
	case sMaxAge >= 0:
		return time.Duration(sMaxAge)*time.Second - age, true
	case maxAge >= 0:
		return time.Duration(maxAge)*time.Second - age, true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0, true // an invalid Expires means already expired
		}
		date := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			date = d
		}
		return t.Sub(date) - age, true
	}
	return 0, false
}
