package sqlite

import (
	"context"
	"database/sql"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// retentionWindows are windows whose edges fall inside hours on both sides
// of the horizon that TestRetentionSeenByAnotherStore expires with.
var retentionWindows = []tsdb.Window{
	{Start: ptr(day0.Add(90 * time.Minute)), End: day0.Add(100 * time.Hour)},
	{Start: ptr(day0.Add(29*time.Hour + 50*time.Minute)), End: day0.Add(31*time.Hour + 10*time.Minute), ToolID: "cursor"},
	{End: day0.Add(20*time.Hour + 30*time.Minute)},
}

// TestRetentionSeenByAnotherStore: a second store on the file, which
// planned its reads before the first moved the horizon, and a store opened
// afterwards, answer what the store that expired answers: the horizon is
// in the file, and a read re-plans when it moved under it.
func TestRetentionSeenByAnotherStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	a, b := openAt(t, path), openAt(t, path)
	ops := genOps(rand.New(rand.NewSource(5)), 3000, day0, 72*time.Hour)
	if err := a.WriteOperations(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	before := storetest.Answers(t, b, retentionWindows) // b has planned with no horizon
	if n := storetest.ExpireAll(t, a, day0.Add(30*time.Hour+17*time.Minute), 200).Operations; n < 1000 {
		t.Fatalf("expired %d operations, want over 1,000", n)
	}
	want := storetest.Answers(t, a, retentionWindows)
	if want == before {
		t.Fatal("the windows answer the same before and after expiry: they test nothing")
	}
	if got := storetest.Answers(t, b, retentionWindows); got != want {
		t.Errorf("another store on the file answers\n%s\nthe store that expired answers\n%s", got, want)
	}
	if got := storetest.Answers(t, openAt(t, path), retentionWindows); got != want {
		t.Errorf("a store opened afterwards answers\n%s\nthe store that expired answers\n%s", got, want)
	}
}

// fileSize answers the database file's size once the write-ahead log is
// folded into it.
func fileSize(t *testing.T, s *Store) int64 {
	t.Helper()
	// A checkpoint answers busy, without an error, while the store's
	// background checkpointer runs one: then the file is not truncated
	// yet. Ask again until this one has run whole.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var busy, logPages, done int
		if err := s.writer.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &done); err != nil {
			t.Fatal(err)
		}
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint still busy after 30 s (%d of %d log pages done)", done, logPages)
		}
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// keptForGood answers the bytes of the pages of what retention keeps for
// good: the rollup tables, the sessions and their indexes (which grow by a
// few rows an hour by design).
func keptForGood(t *testing.T, s *Store) int64 {
	t.Helper()
	var n int64
	err := s.reader.QueryRow(`SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master
	WHERE tbl_name IN ('op_rollup_hourly', 'op_rollup_daily', 'op_rollup_hourly_all', 'op_rollup_file_daily', 'op_rollup_session_daily', 'spend_rollup_hourly', 'spend_rollup_daily', 'tool_sessions'))`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeHour writes n operations and n/20 spend points inside the hour
// starting at h.
func writeHour(t *testing.T, s *Store, r *rand.Rand, h time.Time, n int) {
	t.Helper()
	ops := genOps(r, n, h, time.Hour)
	for i := 0; i < len(ops); i += 500 {
		if err := s.WriteOperations(context.Background(), ops[i:min(i+500, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}
	points := make([]tsdb.SpendPoint, n/20)
	for i := range points {
		points[i] = tsdb.SpendPoint{ID: uuid.Must(uuid.NewRandomFromReader(r)), ToolID: "claude-code", Model: "m",
			Time: h.Add(time.Duration(r.Int63n(int64(time.Hour)))).Truncate(time.Microsecond), CostUSD: 0.5,
			Tokens: tsdb.Tokens{Input: r.Int63n(5000), Output: r.Int63n(500)}}
	}
	if err := s.WriteSpend(context.Background(), points); err != nil {
		t.Fatal(err)
	}
}

// openWithoutAutoVacuum opens a store on a file created before the store
// enabled auto_vacuum: a table exists before the store's first connection.
func openWithoutAutoVacuum(t *testing.T) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "metrics.db")
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE made_before (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return openAt(t, path)
}

// TestRetentionFileStopsGrowing writes a steady load, one simulated hour a
// round, and expires what is older than six hours after each round (the
// clock is the cutoff passed in, so days of it take seconds): once the
// retention is reached the file stops growing, on a new file (free pages
// reused, and given back only past a quarter of the file) and on one
// created before auto_vacuum (free pages reused).
func TestRetentionFileStopsGrowing(t *testing.T) {
	const (
		retention = 6 * time.Hour
		perHour   = 2000
		rounds    = 22
		plateau   = 10 // the round from which the size is compared
	)
	for _, tc := range []struct {
		name       string
		open       func(t *testing.T) *Store
		autoVacuum bool
	}{
		{"new file", func(t *testing.T) *Store { return openTemp(t) }, true},
		{"file from before auto_vacuum", openWithoutAutoVacuum, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.open(t)
			if s.autoVacuum != tc.autoVacuum {
				t.Fatalf("auto_vacuum=INCREMENTAL is %v, want %v", s.autoVacuum, tc.autoVacuum)
			}
			r := rand.New(rand.NewSource(9))
			var sizes, kept []int64
			for round := range rounds {
				hour := day0.Add(time.Duration(round) * time.Hour)
				writeHour(t, s, r, hour, perHour)
				storetest.ExpireAll(t, s, hour.Add(time.Hour).Add(-retention), 1000)
				sizes = append(sizes, fileSize(t, s))
				kept = append(kept, keptForGood(t, s))
			}
			t.Logf("file size per round (bytes): %v", sizes)
			t.Logf("of which rollups and sessions (bytes): %v", kept)
			// What the file holds besides the rows kept for good stops
			// growing, within 5%.
			limit := (sizes[plateau] - kept[plateau]) * 105 / 100
			for round := plateau + 1; round < rounds; round++ {
				if sizes[round]-kept[round] > limit {
					t.Errorf("round %d: file %d bytes, %d without rollups and sessions, over %d (round %d's %d plus 5%%)",
						round, sizes[round], sizes[round]-kept[round], limit, plateau, sizes[plateau]-kept[plateau])
				}
			}
			var ops int
			if err := s.reader.QueryRow(`SELECT count(*) FROM tool_operations`).Scan(&ops); err != nil || ops > perHour*int(retention/time.Hour) {
				t.Errorf("%d operations kept (%v), want at most %d", ops, err, perHour*int(retention/time.Hour))
			}
		})
	}
}

// TestRetentionGivesSpaceBack: on a new file, expiring most of what it
// holds gives the free pages back to the file system, a bounded step per
// call, until at most a quarter of the file is free.
func TestRetentionGivesSpaceBack(t *testing.T) {
	s := openTemp(t)
	r := rand.New(rand.NewSource(10))
	for h := range 12 {
		writeHour(t, s, r, day0.Add(time.Duration(h)*time.Hour), 3000)
	}
	full := fileSize(t, s)
	calls := 0
	for {
		ex, err := s.ExpireBefore(context.Background(), day0.Add(11*time.Hour), 5000)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if !ex.More {
			break
		}
	}
	shrunk := fileSize(t, s)
	if shrunk*3 > full {
		t.Errorf("file %d bytes after expiring 11 of 12 hours, was %d: want under a third", shrunk, full)
	}
	var free, pages int
	if err := s.writer.QueryRow(`PRAGMA freelist_count`).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if err := s.writer.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if free*vacuumShare > pages {
		t.Errorf("%d of %d pages free after expiry, want at most a quarter", free, pages)
	}
	t.Logf("file %d -> %d bytes in %d calls", full, shrunk, calls)
}

// TestExpiryWalksTheTimeIndexes: a batch finds the rows to delete through
// the created_at (at) index, not a scan of the table.
func TestExpiryWalksTheTimeIndexes(t *testing.T) {
	s := openTemp(t)
	for _, tc := range []struct{ sql, index string }{
		{expireOpsSQL, "idx_ops_time"},
		{expireSpendSQL, "idx_spend_time"},
	} {
		plan := queryPlan(t, s.writer, tc.sql, 1, 100)
		joined := strings.Join(plan, "\n")
		t.Logf("plan of %s:\n%s", tc.sql, joined)
		if !strings.Contains(joined, tc.index) || strings.Contains(joined, "TEMP B-TREE") || slices.ContainsFunc(plan, func(step string) bool {
			return strings.HasPrefix(step, "SCAN ")
		}) {
			t.Errorf("plan of %s:\n%s\nwant a walk of %s and no scan of a table", tc.sql, joined, tc.index)
		}
	}
}
