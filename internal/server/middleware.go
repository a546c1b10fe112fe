package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authd/authd/internal/oauth"
	"github.com/authd/authd/internal/reqlog"
)

// forwardedHeaders are only meaningful when a trusted proxy set them; from
// anyone else they are removed so no handler can be fooled by them
// (RFC 9700 §4.13).
var forwardedHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Port", "X-Real-Ip",
	"X-Original-Uri", "X-Original-Url",
}

// trustProxies rewrites r.RemoteAddr to the client address reported by
// X-Forwarded-For when the direct peer is a trusted proxy, walking the list
// from the right and stopping at the first address that is not itself a
// trusted proxy. X-Forwarded-Host replaces r.Host only then. From untrusted
// peers every forwarding header is dropped, and the first time that happens
// a warning is logged: a reverse proxy that trusted_proxies does not name
// makes every client look like the proxy (one rate-limit bucket, one
// registration network), which an operator should hear about once.
func trustProxies(trusted []netip.Prefix, log *slog.Logger) func(http.Handler) http.Handler {
	isTrusted := trustedFunc(trusted)
	var warned atomic.Bool
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, ok := addrOf(r.RemoteAddr)
			if !ok || !isTrusted(peer) {
				forwarded := ""
				for _, h := range forwardedHeaders {
					// The names are canonical, as net/http stores them:
					// no Get/Del canonicalising each on every request.
					if v, ok := r.Header[h]; ok {
						if forwarded == "" && len(v) > 0 && v[0] != "" {
							forwarded = h
						}
						delete(r.Header, h)
					}
				}
				if forwarded != "" && log != nil && warned.CompareAndSwap(false, true) {
					log.WarnContext(r.Context(), "forwarded headers from a peer that is not a trusted proxy are ignored; "+
						"if authd runs behind a reverse proxy, list it in trusted_proxies (logged once)",
						"header", forwarded, "peer", hostOf(r.RemoteAddr))
				}
				next.ServeHTTP(w, r)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), trustedPeerKey{}, true))
			client := peer
			hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					break
				}
				client = a.Unmap()
				if !isTrusted(client) {
					break
				}
			}
			r.RemoteAddr = net.JoinHostPort(client.String(), "0")
			if h := r.Header.Get("X-Forwarded-Host"); h != "" && validHost(h) {
				r.Host = h
			}
			next.ServeHTTP(w, r)
		})
	}
}

// trustedPeerKey marks, in a request's context, that its direct peer is a
// trusted proxy (r.RemoteAddr names the client behind it by then).
type trustedPeerKey struct{}

// FromTrustedProxy reports whether r reached authd directly from a peer in
// trusted_proxies, which is what a handler handing out something only the
// proxy may see (/verify's X-Forwarded-Access-Token) must know: the
// rewritten r.RemoteAddr no longer says.
func FromTrustedProxy(r *http.Request) bool {
	v, _ := r.Context().Value(trustedPeerKey{}).(bool)
	return v
}

// trustedFunc reports whether an address is one of the trusted proxies.
func trustedFunc(trusted []netip.Prefix) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

func addrOf(remote string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil
}

// validHost accepts host[:port] made of the characters a DNS name or IP
// literal can contain.
func validHost(h string) bool {
	if len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return h != ""
}

// requestID assigns every request an id. An incoming X-Request-Id is
// taken only from a trusted proxy (the direct peer, before trustProxies
// rewrites the address) and only when well-formed, so logs can be
// correlated end to end; anyone else could otherwise forge or collide
// another request's log correlation.
func requestID(trusted []netip.Prefix) func(http.Handler) http.Handler {
	isTrusted := trustedFunc(trusted)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get("X-Request-Id")
			if peer, ok := addrOf(r.RemoteAddr); !ok || !isTrusted(peer) || !validRequestID(id) {
				id = oauth.RandomString(12)
			}
			w.Header().Set("X-Request-Id", id)
			next.ServeHTTP(w, r.WithContext(reqlog.WithRequestID(r.Context(), id)))
		})
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status and size written, and whether a
// write failed (the client was gone).
type statusRecorder struct {
	http.ResponseWriter
	status   int
	bytes    int
	writeErr error
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	if err != nil && s.writeErr == nil {
		s.writeErr = err
	}
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// RouteObserver receives every finished request (metrics).
type RouteObserver func(route, method string, status int, d time.Duration)

// StatusClientClosedRequest is what the access log and metrics record for
// a request whose client went away before its answer was written (nginx's
// 499): the status the handler chose never reached anyone.
const StatusClientClosedRequest = 499

// accessLog writes one line per request. It logs the path but never the
// query string, which can carry codes and state (/callback, redirects).
//
// It records what the client got: when the client went away before the
// handler finished (the server cancels the request's context when the
// connection closes; until the handler returns, its answer sits in the
// connection's buffer) or a write failed, the status is 499 and the
// handler's own choice is kept as handler_status.
func accessLog(log *slog.Logger, observe RouteObserver) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			d := time.Since(start)
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			handlerStatus := status
			if rec.writeErr != nil || r.Context().Err() != nil {
				status = StatusClientClosedRequest
			}
			route := routePattern(r)
			if observe != nil {
				observe(route, r.Method, status, d)
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Int("bytes", rec.bytes),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.String("remote_ip", hostOf(r.RemoteAddr)),
				slog.String("user_agent", truncate(r.UserAgent(), 200)),
			}
			if status != handlerStatus {
				attrs = append(attrs, slog.Int("handler_status", handlerStatus))
			}
			attrs = append(attrs, reqlog.Attrs(r.Context())...)
			log.LogAttrs(r.Context(), level, "request", attrs...)
		})
	}
}

// routePattern is the chi route pattern (e.g. /register/{client_id}), so
// logs and metrics never carry unbounded raw paths.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// recoverer turns a panic into a JSON 500 without internals and logs the
// stack once. http.ErrAbortHandler keeps its meaning (abort silently).
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "panic serving request",
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				oauth.WriteError(w, r, nil, oauth.ServerError(nil))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody caps every request body; handlers that read it see
// *http.MaxBytesError past the limit and answer 413.
func limitBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > max {
				oauth.WriteError(w, r, nil, &oauth.Error{
					Code: oauth.CodeInvalidRequest, Description: "request body too large",
					Status: http.StatusRequestEntityTooLarge,
				})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, max)
			next.ServeHTTP(w, r)
		})
	}
}

// baseHeaders sets headers every response should carry.
func baseHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
