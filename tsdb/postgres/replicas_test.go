package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
)

func mkOp(session uuid.UUID, at time.Time, orig int64) tsdb.Operation {
	return tsdb.Operation{
		ID: uuid.New(), SessionID: session, ToolName: "read", OperationMode: "full",
		Parameters: json.RawMessage(`{}`), TokensOriginal: orig, TokensActual: 1, TokensPrevented: orig - 1,
		ResponseTimeMs: 2.5, ToolID: "cursor", CreatedAt: at,
	}
}

// TestReplicasShareOneDatabase: two stores opened at once on one database
// (two replicas starting together: one migrates, the other waits for it)
// see each other's writes, and a keyed operation retried through both,
// also at the same moment, is stored once.
func TestReplicasShareOneDatabase(t *testing.T) {
	url := newDatabase(t)
	var (
		stores [2]*postgres.Store
		errs   [2]error
		wg     sync.WaitGroup
	)
	for i := range stores {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(context.Background(), postgres.Config{URL: url}, testLogger(t))
		})
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("Open replica %d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Close() })
	}
	a, b := stores[0], stores[1]
	ctx := context.Background()
	sess := uuid.New()
	t0 := time.Date(2025, 3, 31, 23, 30, 0, 0, time.UTC)

	// Writes through a, read through b, and the other way round (also in
	// another month's partition).
	if err := a.WriteOperations(ctx, []tsdb.Operation{mkOp(sess, t0, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteOperations(ctx, []tsdb.Operation{mkOp(sess, t0.Add(time.Hour), 20)}); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 2 || len(page.Operations) != 2 {
			t.Errorf("replica %d lists %d operations (total %d), want 2", i, len(page.Operations), page.Total)
		}
		st, err := s.GetSession(ctx, sess)
		if err != nil {
			t.Fatal(err)
		}
		if st.TotalOperations != 2 || !st.StartedAt.Equal(t0) || !st.LastActivity.Equal(t0.Add(time.Hour)) {
			t.Errorf("replica %d: session %+v", i, st)
		}
	}

	// One keyed operation, retried through both replicas at once, many
	// times over: exactly one write stores it.
	for round := range 20 {
		op := mkOp(sess, t0.Add(time.Duration(round)*time.Minute), 100)
		op.Keyed = true
		var (
			batches [2][]tsdb.Operation
			werrs   [2]error
		)
		for i, s := range stores {
			retry := op
			retry.CreatedAt = op.CreatedAt.Add(time.Duration(i) * 40 * 24 * time.Hour) // another partition
			batches[i] = []tsdb.Operation{retry}
			wg.Go(func() { werrs[i] = s.WriteOperations(ctx, batches[i]) })
		}
		wg.Wait()
		for i, err := range werrs {
			if err != nil {
				t.Fatalf("round %d replica %d: %v", round, i, err)
			}
		}
		if batches[0][0].Duplicate == batches[1][0].Duplicate {
			t.Fatalf("round %d: Duplicate %v and %v, want exactly one", round, batches[0][0].Duplicate, batches[1][0].Duplicate)
		}
	}
	page, err := b.QueryOperations(ctx, tsdb.OperationFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 22 || len(page.Operations) != 22 {
		t.Errorf("%d operations stored (total %d), want 22", len(page.Operations), page.Total)
	}
	rows, err := a.Breakdown(ctx, tsdb.Window{End: t0.AddDate(1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Count != 22 || rows[0].TokensOriginal != 10+20+20*100 {
		t.Errorf("breakdown %+v, want 22 operations, %d original", rows, 10+20+20*100)
	}
	if st, err := a.GetSession(ctx, sess); err != nil || st.TotalOperations != 22 {
		t.Errorf("session counts %d operations (%v), want 22", st.TotalOperations, err)
	}
}

// TestURLSchemes: both postgresql:// and postgres:// open; anything else is
// refused.
func TestURLSchemes(t *testing.T) {
	url := newDatabase(t)
	open(t, postgres.Config{URL: url})
	open(t, postgres.Config{URL: "postgres://" + strings.TrimPrefix(url, "postgresql://")})
	if _, err := postgres.Open(context.Background(), postgres.Config{URL: "mysql://x"}, nil); err == nil {
		t.Error("a mysql:// URL opened")
	}
}

// TestUnavailable: a server that does not answer is tsdb.ErrUnavailable, at
// Open and for a store whose server went away; the password never shows.
func TestUnavailable(t *testing.T) {
	port, err := realtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = postgres.Open(ctx, postgres.Config{URL: fmt.Sprintf("postgresql://u:sekrit@127.0.0.1:%d/db?connect_timeout=2", port)}, nil)
	if !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("Open on a closed port: %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "sekrit") {
		t.Errorf("the error shows the password: %v", err)
	}

	srv := realtools.NewPostgres(t)
	s := open(t, postgres.Config{URL: srv.NewDatabase(t)})
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("Ping with the server stopped: %v, want ErrUnavailable", err)
	}
	err = s.WriteOperations(ctx, []tsdb.Operation{mkOp(uuid.New(), time.Now().UTC().Truncate(time.Microsecond), 1)})
	if !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("write with the server stopped: %v, want ErrUnavailable", err)
	}
}
