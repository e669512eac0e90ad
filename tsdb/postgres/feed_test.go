package postgres_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
)

// follower gathers what one store's FollowOperations hands over.
type follower struct {
	mu   sync.Mutex
	ops  []tsdb.Operation
	lost []error
}

func (f *follower) deliver(ops []tsdb.Operation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, ops...)
}

func (f *follower) lose(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lost = append(f.lost, err)
}

func (f *follower) snapshot() ([]tsdb.Operation, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]tsdb.Operation(nil), f.ops...), append([]error(nil), f.lost...)
}

// follow runs s.FollowOperations until the test ends.
func follow(t *testing.T, s *postgres.Store) *follower {
	t.Helper()
	f := &follower{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.FollowOperations(ctx, f.deliver, f.lose) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("FollowOperations answered %v after its context ended", err)
		}
	})
	return f
}

// listeners answers how many connections of the database listen for the
// feed, idle after their LISTEN.
func listeners(t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'omnimemory-metrics feed' AND state = 'idle' AND query LIKE 'LISTEN%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ids(ops []tsdb.Operation) []uuid.UUID {
	out := make([]uuid.UUID, len(ops))
	for i := range ops {
		out[i] = ops[i].ID
	}
	return out
}

// TestFeedCarriesOtherReplicasOperationsOnce: two announcing stores on one
// database each get, once and in order, what the other stores (several
// notifications' worth, large parameters included), read back as the
// store reads it, and never their own; retries and a store that does not
// announce (the import's) send nothing.
func TestFeedCarriesOtherReplicasOperationsOnce(t *testing.T) {
	url := newDatabase(t)
	a := open(t, postgres.Config{URL: url, Announce: true})
	b := open(t, postgres.Config{URL: url, Announce: true})
	quiet := open(t, postgres.Config{URL: url})
	fa, fb := follow(t, a), follow(t, b)
	waitUntil(t, "both stores to listen", func() bool { return listeners(t, url) == 2 })
	ctx := context.Background()

	sess := uuid.New()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	ops := make([]tsdb.Operation, 400) // several payloads
	for i := range ops {
		ops[i] = mkOp(sess, t0.Add(-time.Duration(i)*time.Hour*24), int64(10+i)) // over several partitions
		ops[i].Keyed = true
	}
	ops[7].Parameters = json.RawMessage(`{"q":"` + strings.Repeat("x", 20000) + `"}`) // over a payload's 8000 bytes alone
	path := "src/main.go"
	ops[8].FilePath = &path
	if err := a.WriteOperations(ctx, ops); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b to get a's operations", func() bool { got, _ := fb.snapshot(); return len(got) >= len(ops) })
	got, lost := fb.snapshot()
	if !reflect.DeepEqual(ids(got), ids(ops)) || len(lost) > 0 {
		t.Fatalf("b got %d operations (lost %v), want a's %d in order", len(got), lost, len(ops))
	}
	stored := map[uuid.UUID]tsdb.Operation{}
	if err := b.ExportOperations(ctx, tsdb.OperationFilter{}, func(op *tsdb.Operation) error { stored[op.ID] = *op; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, op := range got {
		if !reflect.DeepEqual(op, stored[op.ID]) {
			t.Fatalf("delivered\n%+v\nstored\n%+v", op, stored[op.ID])
		}
	}

	// The other way round; a retry and a store that does not announce send
	// nothing.
	back := []tsdb.Operation{mkOp(sess, t0, 1), mkOp(sess, t0, 2)}
	if err := b.WriteOperations(ctx, back); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteOperations(ctx, ops[:50]); err != nil {
		t.Fatal(err)
	}
	if err := quiet.WriteOperations(ctx, []tsdb.Operation{mkOp(sess, t0, 3)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a to get b's operations", func() bool { got, _ := fa.snapshot(); return len(got) >= len(back) })
	time.Sleep(300 * time.Millisecond) // time for anything that should not come
	if got, _ := fa.snapshot(); !reflect.DeepEqual(ids(got), ids(back)) {
		t.Errorf("a got %v, want b's %v only", ids(got), ids(back))
	}
	if got, _ := fb.snapshot(); len(got) != len(ops) {
		t.Errorf("b got %d operations, want a's first %d only", len(got), len(ops))
	}
}

// TestFeedReconnectsAndSaysWhatItLost: when its connection is cut, the
// feed says so once, reconnects by itself, and carries what is stored from
// then on.
func TestFeedReconnectsAndSaysWhatItLost(t *testing.T) {
	url := newDatabase(t)
	a := open(t, postgres.Config{URL: url, Announce: true})
	b := open(t, postgres.Config{URL: url})
	fb := follow(t, b)
	waitUntil(t, "b to listen", func() bool { return listeners(t, url) == 1 })

	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'omnimemory-metrics feed'`); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the loss to be told", func() bool { _, lost := fb.snapshot(); return len(lost) == 1 })
	waitUntil(t, "b to listen again", func() bool { return listeners(t, url) == 1 })
	op := mkOp(uuid.New(), time.Now().UTC().Truncate(time.Microsecond), 5)
	if err := a.WriteOperations(context.Background(), []tsdb.Operation{op}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b to get a's operation", func() bool { got, _ := fb.snapshot(); return len(got) == 1 })
	got, lost := fb.snapshot()
	if got[0].ID != op.ID || len(lost) != 1 {
		t.Errorf("after the reconnection: %v, lost %v", ids(got), lost)
	}
	t.Logf("told: %v", lost[0])
}
