package realtools_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// TestPostgresDatabases: the shared server hands out fresh databases that
// take writes and do not see each other's tables.
func TestPostgresDatabases(t *testing.T) {
	s := realtools.SharedPostgres(t)
	ctx := context.Background()
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases with one URL %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, `CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ca.QueryRow(ctx, `SELECT sum(v) FROM t`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("sum %d, %v; want 3", n, err)
	}
	var version string
	if err := ca.QueryRow(ctx, `SHOW server_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL %s at %s", version, a)

	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var exists bool
	if err := cb.QueryRow(ctx, `SELECT to_regclass('t') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("the second database sees the first's table (%v, %v)", exists, err)
	}
}

// TestPostgresOwnServerStops: a server of the test's own stops, and then
// refuses connections; restarted, it serves what it held; paused, an open
// connection's query goes unanswered until it resumes.
func TestPostgresOwnServerStops(t *testing.T) {
	s := realtools.NewPostgres(t)
	url := s.NewDatabase(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("still running after Stop")
	}
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Fatal("connected after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE t (v int)`); err != nil {
		t.Fatal(err)
	}
	if s.Pid() == 0 {
		t.Fatal("no pid while running")
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = c.Exec(short, `INSERT INTO t VALUES (1)`)
	cancel()
	if err == nil {
		t.Fatal("a paused server answered")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	defer c2.Close(ctx)
	if _, err := c2.Exec(ctx, `INSERT INTO t VALUES (2)`); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

// TestPostgresSettings: a server started with settings runs with them, over
// the tests' own.
func TestPostgresSettings(t *testing.T) {
	s, err := realtools.StartPostgresWith(context.Background(), realtools.PostgresOptions{Settings: []string{"fsync=on", "shared_buffers=64MB"}})
	if err != nil {
		realtools.SkipOrFatal(t, err)
	}
	defer s.Close()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for name, want := range map[string]string{"fsync": "on", "shared_buffers": "64MB", "full_page_writes": "off"} {
		var got string
		if err := c.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
}
