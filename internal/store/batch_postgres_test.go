package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/pgtest"
)

// lockedBatch runs calls against s while conn holds table (so that nothing
// is written until every call has been made): first filler(0..n-1) until
// the batcher has its n statements in flight, each alone, then calls,
// which queue behind them, to go out together once the lock is released.
// It returns each call's error.
func lockedBatch(t *testing.T, s *store.Postgres, conn *pgx.Conn, kind string, filler func(i int) error, calls []func() error) []error {
	t.Helper()
	ctx := context.Background()
	// A statement of the caller's earlier inserts may still count as in
	// flight (its callers return before its flusher looks at the queue
	// again): such a flusher could take call 0, and a call 0 counted by it
	// could then share a statement with call 1, which never gets its own.
	waitUntil(t, "the batcher to be idle", func() bool {
		queued, inFlight, _, _ := store.BatchState(s, kind)
		return queued == 0 && inFlight == 0
	})
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+kind+` IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	const n = store.BatchMaxFlushes
	errs := make([]error, n+len(calls))
	done := make([]chan struct{}, n+len(calls))
	var wg sync.WaitGroup
	for i := range n + len(calls) {
		done[i] = make(chan struct{})
		wg.Go(func() {
			defer close(done[i])
			if i < n {
				errs[i] = filler(i)
			} else {
				errs[i] = calls[i-n]()
			}
		})
		waitUntil(t, fmt.Sprintf("call %d to be taken or queued", i), func() bool {
			// A call that returned while the table is locked did not
			// wait for the lock: say why, rather than time out.
			for j := range i + 1 {
				select {
				case <-done[j]:
					t.Fatalf("call %d returned while the table was locked: %v", j, errs[j])
				default:
				}
			}
			queued, inFlight, _, _ := store.BatchState(s, kind)
			if i < n {
				return inFlight == i+1 && queued == 0
			}
			return queued == i-n+1
		})
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs[:n] {
		if err != nil {
			t.Fatalf("filler %d: %v", i, err)
		}
	}
	return errs[n:]
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Registrations arriving together share one INSERT. What it stores is
// exactly what the single-row INSERT stores (NULL versus empty arrays,
// times truncated to the microsecond alike, jsonb metadata), and a bad row
// fails its own caller only: the statement writes nothing, and every row
// is then inserted alone.
func TestPostgresBatchedClients(t *testing.T) {
	// Not parallel: it holds table locks and counts the batcher's flushes,
	// which a full package run under load was seen to upset (call 1 never
	// in flight within 20 s).
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	ns := pgT0.Add(789 * time.Nanosecond) // below Postgres's precision
	variants := []store.Client{
		{Source: store.SourceDynamic, SecretHash: "sha256$x", SecretExpiresAt: pgPtr(ns.Add(time.Hour)), RegistrationTokenHash: "rat",
			Metadata: store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/cb"}, ClientName: "Ünïcode \"quoted\" <b>",
				GrantTypes: []string{"client_credentials"}, Contacts: []string{}},
			Fingerprint: "fp", AllowedScopes: nil, AllowedResources: []string{},
			CreatedAt: ns, UpdatedAt: ns, LastUsedAt: ns, ExpiresAt: pgPtr(ns.Add(24 * time.Hour))},
		{Source: store.SourceConfig, AllowedScopes: []string{"a", "é"}, AllowedResources: []string{"https://r.example/"},
			SkipConsent: true, CanIntrospect: true, Disabled: true, CreatedAt: pgT0, UpdatedAt: pgT0, LastUsedAt: pgT0},
		{Source: store.SourceMetadata, CreatedAt: time.Time{}, UpdatedAt: ns, LastUsedAt: ns},
	}
	with := func(c store.Client, id string) store.Client { c.ID = id; return c }
	for i, v := range variants {
		if err := s.CreateClient(ctx, with(v, fmt.Sprint("single-", i))); err != nil {
			t.Fatalf("single-row CreateClient of variant %d: %v", i, err)
		}
	}
	if _, _, n, _ := store.BatchState(s, "clients"); n != 0 {
		t.Fatalf("%d multi-row statements for sequential registrations, want none", n)
	}

	filler := func(round string) func(int) error {
		return func(i int) error { return s.CreateClient(ctx, with(variants[0], fmt.Sprint("filler-", round, i))) }
	}
	var calls []func() error
	for i, v := range variants {
		calls = append(calls, func() error { return s.CreateClient(ctx, with(v, fmt.Sprint("batched-", i))) })
	}
	for i, err := range lockedBatch(t, s, conn, "clients", filler("a"), calls) {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, _, n, rows := store.BatchState(s, "clients"); n != 1 || rows != int64(len(variants)) {
		t.Fatalf("%d multi-row statements with %d rows, want 1 with %d", n, rows, len(variants))
	}
	for i := range variants {
		single, err := s.GetClient(ctx, fmt.Sprint("single-", i), pgT0)
		if err != nil {
			t.Fatal(err)
		}
		batched, err := s.GetClient(ctx, fmt.Sprint("batched-", i), pgT0)
		if err != nil {
			t.Fatalf("variant %d, batched: %v", i, err)
		}
		if batched.ID = single.ID; !reflect.DeepEqual(batched, single) {
			t.Errorf("variant %d: batched INSERT stored\n%+v\nthe single-row one\n%+v", i, batched, single)
		}
	}

	// A taken id and a NUL (which text columns refuse) in one batch with
	// good rows: only their callers fail, each with the error it gets alone.
	nul := with(variants[1], "nul")
	nul.Fingerprint = "a\x00b"
	wantNUL := s.CreateClient(ctx, nul)
	if wantNUL == nil || errors.Is(wantNUL, store.ErrConflict) {
		t.Fatalf("single-row CreateClient with a NUL: %v, want an error", wantNUL)
	}
	errs := lockedBatch(t, s, conn, "clients", filler("b"), []func() error{
		func() error { return s.CreateClient(ctx, with(variants[2], "good-1")) },
		func() error { return s.CreateClient(ctx, with(variants[2], "single-0")) }, // taken
		func() error { return s.CreateClient(ctx, nul) },
		func() error { return s.CreateClient(ctx, with(variants[2], "good-2")) },
	})
	if !errors.Is(errs[1], store.ErrConflict) {
		t.Errorf("taken id in a batch: %v, want ErrConflict", errs[1])
	}
	if errs[2] == nil || errs[2].Error() != wantNUL.Error() {
		t.Errorf("NUL in a batch: %v, want %v", errs[2], wantNUL)
	}
	for _, i := range []int{0, 3} {
		if errs[i] != nil {
			t.Errorf("good row %d batched with bad ones: %v", i, errs[i])
		}
	}
	for _, id := range []string{"good-1", "good-2"} {
		if _, err := s.GetClient(ctx, id, pgT0); err != nil {
			t.Errorf("GetClient(%s): %v", id, err)
		}
	}
	if got, err := s.GetClient(ctx, "single-0", pgT0); err != nil || got.Source != variants[0].Source {
		t.Errorf("the client whose id a batched row took: %+v, %v", got, err)
	}
}

// client_credentials tokens issued together share one INSERT, with the
// same guarantees as registrations; a token of an unknown client is
// ErrNotFound, as alone.
func TestPostgresBatchedAccessTokens(t *testing.T) {
	// Not parallel: it holds table locks and counts the batcher's flushes,
	// which a full package run under load was seen to upset (call 1 never
	// in flight within 20 s).
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, u := pgFixtures(t, s)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	ns := pgT0.Add(789 * time.Nanosecond)
	variants := []store.AccessToken{
		{ClientID: c.ID, Scopes: nil, Resources: []string{}, CreatedAt: ns, ExpiresAt: ns.Add(time.Hour)},
		{ClientID: c.ID, UserID: u.ID, Scopes: []string{"a", "é"}, Resources: []string{"https://r.example/"},
			AuthTime: pgPtr(ns), CreatedAt: pgT0, ExpiresAt: pgT0.Add(time.Hour), RevokedAt: pgPtr(ns.Add(time.Minute))},
	}
	with := func(at store.AccessToken, digest string) store.AccessToken { at.Digest = digest; return at }
	for i, v := range variants {
		if err := s.CreateAccessToken(ctx, with(v, fmt.Sprint("single-", i))); err != nil {
			t.Fatalf("single-row CreateAccessToken of variant %d: %v", i, err)
		}
	}
	filler := func(round string) func(int) error {
		return func(i int) error { return s.CreateAccessToken(ctx, with(variants[0], fmt.Sprint("filler-", round, i))) }
	}
	var calls []func() error
	for i, v := range variants {
		calls = append(calls, func() error { return s.CreateAccessToken(ctx, with(v, fmt.Sprint("batched-", i))) })
	}
	for i, err := range lockedBatch(t, s, conn, "access_tokens", filler("a"), calls) {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, _, n, rows := store.BatchState(s, "access_tokens"); n != 1 || rows != int64(len(variants)) {
		t.Fatalf("%d multi-row statements with %d rows, want 1 with %d", n, rows, len(variants))
	}
	for i := range variants {
		single, err := s.GetAccessToken(ctx, fmt.Sprint("single-", i))
		if err != nil {
			t.Fatal(err)
		}
		batched, err := s.GetAccessToken(ctx, fmt.Sprint("batched-", i))
		if err != nil {
			t.Fatalf("variant %d, batched: %v", i, err)
		}
		if batched.Digest = single.Digest; !reflect.DeepEqual(batched, single) {
			t.Errorf("variant %d: batched INSERT stored\n%+v\nthe single-row one\n%+v", i, batched, single)
		}
	}

	errs := lockedBatch(t, s, conn, "access_tokens", filler("b"), []func() error{
		func() error { return s.CreateAccessToken(ctx, with(variants[0], "good-1")) },
		func() error { return s.CreateAccessToken(ctx, with(variants[0], "single-1")) }, // taken
		func() error {
			at := with(variants[0], "orphan")
			at.ClientID = "no-such-client"
			return s.CreateAccessToken(ctx, at)
		},
		func() error { return s.CreateAccessToken(ctx, with(variants[1], "good-2")) },
	})
	if !errors.Is(errs[1], store.ErrConflict) {
		t.Errorf("taken digest in a batch: %v, want ErrConflict", errs[1])
	}
	if !errors.Is(errs[2], store.ErrNotFound) {
		t.Errorf("unknown client in a batch: %v, want ErrNotFound", errs[2])
	}
	for _, i := range []int{0, 3} {
		if errs[i] != nil {
			t.Errorf("good row %d batched with bad ones: %v", i, errs[i])
		}
	}
	for _, d := range []string{"good-1", "good-2"} {
		if _, err := s.GetAccessToken(ctx, d); err != nil {
			t.Errorf("GetAccessToken(%s): %v", d, err)
		}
	}
	if _, err := s.GetAccessToken(ctx, "orphan"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token of an unknown client was stored: %v", err)
	}
	// Text that JSON would alter (invalid UTF-8) never takes the batch: it
	// fails as it does alone rather than being stored changed.
	bad := with(variants[0], "bad-utf8")
	bad.Scopes = []string{"\xff"}
	if err := s.CreateAccessToken(ctx, bad); err == nil {
		t.Errorf("token with invalid UTF-8 stored")
	}
}

// A statement carrying batched rows is traced under one of its callers'
// requests, and a row inserted alone under its own, as before batching:
// the statement's context keeps the caller's values, not its cancellation.
func TestPostgresBatchedInsertsAreTraced(t *testing.T) {
	// Not parallel: it holds table locks and counts the batcher's flushes,
	// which a full package run under load was seen to upset (call 1 never
	// in flight within 20 s).
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s, err := store.OpenPostgres(ctx, dsn, store.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	tracer := tp.Tracer("test")
	requests := map[trace.SpanID]string{}
	var mu sync.Mutex
	create := func(id string) error {
		rctx, span := tracer.Start(ctx, "request "+id)
		defer span.End()
		mu.Lock()
		requests[span.SpanContext().SpanID()] = id
		mu.Unlock()
		return s.CreateClient(rctx, store.Client{ID: id, Source: store.SourceDynamic, CreatedAt: pgT0, UpdatedAt: pgT0, LastUsedAt: pgT0})
	}
	if err := create("alone"); err != nil {
		t.Fatal(err)
	}
	var calls []func() error
	for i := range 3 {
		calls = append(calls, func() error { return create(fmt.Sprint("batched-", i)) })
	}
	for i, err := range lockedBatch(t, s, conn, "clients", func(i int) error { return create(fmt.Sprint("filler-", i)) }, calls) {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}

	var inserts int
	for _, sp := range rec.Ended() {
		if !strings.HasPrefix(sp.Name(), "postgresql INSERT") {
			continue
		}
		inserts++
		parent, ok := requests[sp.Parent().SpanID()]
		switch {
		case !ok:
			t.Errorf("INSERT span %q is not under a request's span (parent %v)", sp.Name(), sp.Parent().SpanID())
		case sp.Parent().TraceID() != sp.SpanContext().TraceID():
			t.Errorf("INSERT span under request %s is in another trace", parent)
		}
	}
	// Alone, the fillers alone, and one statement for the three batched.
	if want := 1 + store.BatchMaxFlushes + 1; inserts != want {
		t.Errorf("%d INSERT spans, want %d", inserts, want)
	}
}
