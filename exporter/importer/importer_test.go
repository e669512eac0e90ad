package importer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer"
	"github.com/omnimemory/omnimemory-metrics/exporter/importer/legacytest"
	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

func TestMain(m *testing.M) { os.Exit(realtools.RunMain(m)) }

// sources builds the same database of the original service on each kind
// of source: its SQLite file, its schema on PostgreSQL as SQLAlchemy
// creates it, and one made by hand with PostgreSQL's own types.
var sources = []struct {
	name  string
	build func(t *testing.T, dir string, n int) *legacytest.DB
}{
	{"sqlite", func(t *testing.T, dir string, n int) *legacytest.DB { return legacytest.Build(t, dir, n) }},
	{"postgresql", func(t *testing.T, dir string, n int) *legacytest.DB {
		return legacytest.BuildPostgres(t, realtools.SharedPostgres(t).NewDatabase(t), n, false)
	}},
	{"postgresql-native", func(t *testing.T, dir string, n int) *legacytest.DB {
		return legacytest.BuildPostgres(t, realtools.SharedPostgres(t).NewDatabase(t), n, true)
	}},
}

// TestImportContinuesAfterAnInterruption interrupts the import right after
// a batch was committed and before its checkpoint recorded it, in each
// table, then runs it again: every row is stored once, and the final
// summary is the one an uninterrupted import gives. A run after that
// takes no row.
func TestImportContinuesAfterAnInterruption(t *testing.T) {
	for _, src := range sources {
		for _, dest := range []string{"sqlite", "postgresql"} {
			t.Run(src.name+"-into-"+dest, func(t *testing.T) {
				interruptAndResume(t, src.build, dest)
			})
		}
	}
}

func interruptAndResume(t *testing.T, build func(t *testing.T, dir string, n int) *legacytest.DB, dest string) {
	ctx := context.Background()
	dir := t.TempDir()
	db := build(t, dir, 3000)
	t.Logf("%d operation rows, skipped %v; %d session rows, skipped %v", db.OpRows, db.Skipped, db.SessRows, db.SessSkipped)
	var store tsdb.Store
	var err error
	destination := "sqlite:" + filepath.Join(dir, "metrics.db")
	if dest == "postgresql" {
		destination = realtools.SharedPostgres(t).NewDatabase(t)
		store, err = postgres.Open(ctx, postgres.Config{URL: destination}, nil)
	} else {
		store, err = sqlite.Open(ctx, filepath.Join(dir, "metrics.db"), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := importer.Options{
		Source: db.Path, Store: store, Destination: destination,
		Checkpoint: filepath.Join(dir, "checkpoint.json"), BatchSize: 100, Now: func() time.Time { return db.Now },
	}
	crash := errors.New("crash after a commit")
	for _, stop := range []struct {
		phase string
		batch int
	}{{importer.PhaseSessions, 1}, {importer.PhaseOperations, 4}, {importer.PhaseOperations, 9}} {
		o := opts
		o.AfterBatch = func(phase string, batch int) error {
			if phase == stop.phase && batch == stop.batch {
				return crash
			}
			return nil
		}
		if _, err := importer.Run(ctx, o); !errors.Is(err, crash) {
			t.Fatalf("interrupted in %s batch %d: %v, want the interruption", stop.phase, stop.batch, err)
		}
	}
	sum, err := importer.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Resumed {
		t.Error("the last run did not resume from the checkpoint")
	}
	wantCounts(t, sum, db)
	db.Check(t, store)

	again, err := importer.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.RowsThisRun != 0 {
		t.Errorf("a run after the import took %d rows", again.RowsThisRun)
	}
	wantCounts(t, again, db)
}

// wantCounts checks a summary against what an import of db gives.
func wantCounts(t *testing.T, sum importer.Summary, db *legacytest.DB) {
	t.Helper()
	if sum.Operations.Total != db.OpRows || sum.Operations.Imported != int64(len(db.Ops)) ||
		!reflect.DeepEqual(sum.Operations.Skipped, db.Skipped) {
		t.Errorf("operations %+v, want %d rows, %d imported, skipped %v", sum.Operations, db.OpRows, len(db.Ops), db.Skipped)
	}
	if sum.Sessions.Total != db.SessRows || sum.Sessions.Imported != int64(len(db.Sessions)) || sum.Sessions.Merged != 0 ||
		!reflect.DeepEqual(sum.Sessions.Skipped, db.SessSkipped) {
		t.Errorf("sessions %+v, want %d rows, %d created, skipped %v", sum.Sessions, db.SessRows, len(db.Sessions), db.SessSkipped)
	}
}

// TestPostgresSourceFindsRowsWrittenSince: on PostgreSQL, which has no
// rowid, a later run finds the rows the service wrote after the last one
// (a day later here, past the fixture's row a day ahead of the clock),
// also when hundreds share one created_at across batch boundaries, or share
// the last row's created_at, and an interruption among them loses none.
func TestPostgresSourceFindsRowsWrittenSince(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := realtools.SharedPostgres(t).NewDatabase(t)
	db := legacytest.BuildPostgres(t, url, 300, false)
	store, err := sqlite.Open(ctx, filepath.Join(dir, "metrics.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := importer.Options{
		Source: url, Store: store, Destination: "sqlite:" + filepath.Join(dir, "metrics.db"),
		Checkpoint: filepath.Join(dir, "checkpoint.json"), BatchSize: 100, Now: func() time.Time { return db.Now },
	}
	sum, err := importer.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, sum, db)

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var latest time.Time
	if err := conn.QueryRow(ctx, `SELECT max(created_at) FROM tool_operations`).Scan(&latest); err != nil {
		t.Fatal(err)
	}
	same := latest.Add(time.Minute)
	insert := `INSERT INTO tool_operations (id, session_id, tool_name, operation_mode, parameters, tokens_original,
		tokens_actual, response_time_ms, tool_id, created_at) VALUES ($1, $2, 'read', 'full', '{}', 100, 10, 1.5, 'cursor', $3)`
	for range 250 {
		if _, err := conn.Exec(ctx, insert, uuid.NewString(), db.Sessions[0].SessionID.String(), same); err != nil {
			t.Fatal(err)
		}
	}
	// The greatest id there is, at the time of the last row read: after it.
	if _, err := conn.Exec(ctx, insert, "ffffffff-ffff-4fff-bfff-ffffffffffff", db.Sessions[0].SessionID.String(), latest); err != nil {
		t.Fatal(err)
	}

	opts.Now = func() time.Time { return db.Now.Add(48 * time.Hour) }
	crash := errors.New("crash after a commit")
	o := opts
	o.AfterBatch = func(phase string, batch int) error {
		if phase == importer.PhaseOperations && batch == 2 {
			return crash
		}
		return nil
	}
	if _, err := importer.Run(ctx, o); !errors.Is(err, crash) {
		t.Fatalf("interrupted: %v, want the interruption", err)
	}
	sum, err = importer.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantImported := int64(len(db.Ops)) + 251
	if sum.Operations.Imported != wantImported || sum.Operations.Total != db.OpRows+251 || !reflect.DeepEqual(sum.Operations.Skipped, db.Skipped) {
		t.Errorf("operations %+v, want %d imported of %d, skipped %v", sum.Operations, wantImported, db.OpRows+251, db.Skipped)
	}
	page, err := store.QueryOperations(ctx, tsdb.OperationFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != wantImported {
		t.Errorf("%d operations stored, want %d", page.Total, wantImported)
	}
}
