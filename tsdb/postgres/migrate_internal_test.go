package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// TestKeyedRollupsMigration: migration 5 fills op_rollup_file_daily and
// op_rollup_session_daily from the operations stored before it with the
// rows the write path keeps (which the conformance suite checks against
// the operations themselves).
func TestKeyedRollupsMigration(t *testing.T) {
	ctx := context.Background()
	url := realtools.SharedPostgres(t).NewDatabase(t)
	open := func() *Store {
		t.Helper()
		s, err := Open(ctx, Config{URL: url}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	scale := storetest.NewScale(7)
	from := time.Date(2025, 1, 30, 0, 0, 0, 0, time.UTC) // across a month's partitions
	for i := range 4 {
		if err := s.WriteOperations(ctx, scale.Batch(500, from.Add(time.Duration(i)*30*time.Hour), 40*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	rollups := func(s *Store) (out []string) {
		t.Helper()
		for _, q := range []string{
			`SELECT day, file_null, file_hash, file_path, count, tokens_original, tokens_actual, tokens_prevented,
				response_time_sum, cache_lookups, cache_hits FROM op_rollup_file_daily ORDER BY 1, 2, 3`,
			`SELECT day, session_id, count, tokens_original, tokens_actual, tokens_prevented,
				response_time_sum, cache_lookups, cache_hits FROM op_rollup_session_daily ORDER BY 1, 2`,
		} {
			rows, err := s.pool.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				v, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, fmt.Sprint(v...))
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	written := rollups(s)
	if len(written) < 100 {
		t.Fatalf("test data: %d rollup rows", len(written))
	}
	// Back to version 4, without the tables of 5 and later, and open again.
	for _, q := range []string{`DROP TABLE op_rollup_file_daily`, `DROP TABLE op_rollup_session_daily`, `DROP TABLE pending_operations`,
		`DELETE FROM schema_version WHERE version >= 5`} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	filled := rollups(open())
	if fmt.Sprint(filled) != fmt.Sprint(written) {
		t.Errorf("migration 5 filled %d rows, the writes kept %d; first: %v / %v", len(filled), len(written), filled[:1], written[:1])
	}
}
