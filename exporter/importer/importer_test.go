package importer_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer"
	"github.com/omnimemory/omnimemory-metrics/exporter/importer/legacytest"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// TestImportContinuesAfterAnInterruption interrupts the import right after
// a batch was committed and before its checkpoint recorded it, in each
// table, then runs it again: every row is stored once, and the final
// summary is the one an uninterrupted import gives.
func TestImportContinuesAfterAnInterruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := legacytest.Build(t, dir, 3000)
	store, err := sqlite.Open(ctx, filepath.Join(dir, "metrics.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := importer.Options{
		Source: db.Path, Store: store, Destination: "sqlite:" + filepath.Join(dir, "metrics.db"),
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
	if sum.Operations.Total != db.OpRows || sum.Operations.Imported != int64(len(db.Ops)) ||
		!reflect.DeepEqual(sum.Operations.Skipped, db.Skipped) {
		t.Errorf("operations %+v, want %d rows, %d imported, skipped %v", sum.Operations, db.OpRows, len(db.Ops), db.Skipped)
	}
	if sum.Sessions.Total != db.SessRows || sum.Sessions.Imported != int64(len(db.Sessions)) || sum.Sessions.Merged != 0 ||
		!reflect.DeepEqual(sum.Sessions.Skipped, db.SessSkipped) {
		t.Errorf("sessions %+v, want %d rows, %d created, skipped %v", sum.Sessions, db.SessRows, len(db.Sessions), db.SessSkipped)
	}
	db.Check(t, store)
}
