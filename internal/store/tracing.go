package store

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Option configures OpenPostgres.
type Option func(*pgxpool.Config)

// WithTracerProvider makes a span of every statement the store sends
// (transactions' BEGIN and COMMIT included), as a child of the span in the
// caller's context — the request's. Spans carry the statement's text,
// which holds no values: they are always parameters. With nil or a no-op
// provider no tracer is installed at all.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(cfg *pgxpool.Config) {
		if tp == nil {
			return
		}
		if _, off := tp.(noop.TracerProvider); off {
			return
		}
		cfg.ConnConfig.Tracer = queryTracer{tp.Tracer("github.com/authd/authd/internal/store")}
	}
}

// queryTracer is a pgx.QueryTracer that opens a client span per statement.
type queryTracer struct{ tracer trace.Tracer }

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	ctx, _ = q.tracer.Start(ctx, "postgresql "+operation(data.SQL), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.operation.name", operation(data.SQL)),
			attribute.String("db.query.text", strings.TrimSpace(data.SQL)),
		))
	return ctx
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	if data.Err != nil && data.Err != pgx.ErrNoRows {
		span.SetStatus(codes.Error, "query failed")
		span.RecordError(mapErr(data.Err))
	}
	span.End()
}

// operation is a statement's first keyword: SELECT, WITH, UPDATE, BEGIN, ...
func operation(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return "QUERY"
	}
	return strings.ToUpper(strings.TrimSuffix(f[0], ";"))
}
