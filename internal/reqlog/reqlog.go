// Package reqlog carries per-request logging context: the request id, and
// attributes that handlers learn while serving (client_id, user_id) so that
// the single access-log line can include them. Its slog.Handler wrapper adds
// the request id to every record logged with the request's context, so
// handlers never thread the id by hand.
package reqlog

import (
	"context"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

type ctxKey struct{}

// entry is mutable per-request state; handlers run on one goroutine per
// request, but the mutex keeps it safe if one spawns work.
type entry struct {
	id    string
	mu    sync.Mutex
	attrs []slog.Attr
}

// WithRequestID returns a context carrying a fresh entry for request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, &entry{id: id})
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	if e, ok := ctx.Value(ctxKey{}).(*entry); ok {
		return e.id
	}
	return ""
}

// Set records an attribute for the request's access-log line (e.g.
// "client_id"). Never pass secrets. Setting a key again replaces it.
func Set(ctx context.Context, key, value string) {
	e, ok := ctx.Value(ctxKey{}).(*entry)
	if !ok || value == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.attrs {
		if e.attrs[i].Key == key {
			e.attrs[i] = slog.String(key, value)
			return
		}
	}
	e.attrs = append(e.attrs, slog.String(key, value))
}

// Attrs returns the attributes recorded for the request.
func Attrs(ctx context.Context) []slog.Attr {
	e, ok := ctx.Value(ctxKey{}).(*entry)
	if !ok {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]slog.Attr(nil), e.attrs...)
}

// Handler wraps a slog.Handler to add request_id to every record whose
// context carries one.
type Handler struct{ slog.Handler }

// NewHandler wraps h.
func NewHandler(h slog.Handler) *Handler { return &Handler{h} }

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	// With tracing on, the trace the record belongs to (W3C trace id), so
	// a log line leads to its trace and back.
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{h.Handler.WithAttrs(attrs)}
}

func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{h.Handler.WithGroup(name)}
}
