package importer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

func TestParseSourceTime(t *testing.T) {
	want := time.Date(2025, 1, 14, 10, 30, 0, 123456000, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	for _, tc := range []struct {
		in   string
		loc  *time.Location
		want time.Time
		ok   bool
	}{
		{"2025-01-14 10:30:00.123456", time.UTC, want, true},                // SQLAlchemy DateTime, naive UTC
		{"2025-01-14 11:30:00.123456", berlin, want, true},                  // naive local time, zone given
		{"2025-01-14 10:30:00", time.UTC, want.Truncate(time.Second), true}, // CURRENT_TIMESTAMP
		{"2025-01-14T10:30:00.123456", time.UTC, want, true},                // isoformat(), naive
		{"2025-01-14T10:30:00.123456Z", time.UTC, want, true},
		{"2025-01-14T12:30:00.123456+02:00", time.UTC, want, true}, // isoformat(), aware
		{"2025-01-14 12:30:00.123456+02:00", time.UTC, want, true}, // str(), aware
		{"2025-01-14T12:30:00.123456+0200", time.UTC, want, true},
		{" 2025-01-14 10:30:00.123456 ", time.UTC, want, true},
		{"2025-01-14", time.UTC, time.Time{}, false},
		{"14/01/2025 10:30", time.UTC, time.Time{}, false},
		{"1736850600", time.UTC, time.Time{}, false},
		{"", time.UTC, time.Time{}, false},
	} {
		got, ok := ParseSourceTime(tc.in, tc.loc)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseSourceTime(%q, %s) = %v, %v; want %v, %v", tc.in, tc.loc, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseStoredUUID(t *testing.T) {
	u := uuid.MustParse("123e4567-e89b-42d3-a456-426614174000")
	for _, tc := range []struct {
		in any
		ok bool
	}{
		{"123e4567-e89b-42d3-a456-426614174000", true},
		{"123E4567-E89B-42D3-A456-426614174000", true},
		{"123e4567e89b42d3a456426614174000", true}, // SQLAlchemy Uuid: CHAR(32)
		{u[:], true}, // 16 raw bytes
		{[]byte("123e4567-e89b-42d3-a456-426614174000"), true},
		{"{123e4567-e89b-42d3-a456-426614174000}", false},
		{"urn:uuid:123e4567-e89b-42d3-a456-426614174000", false},
		{"123e4567e89b42d3a45642661417400g", false},
		{int64(42), false},
		{nil, false},
	} {
		got, ok := parseStoredUUID(tc.in)
		if ok != tc.ok || (ok && got != u) {
			t.Errorf("parseStoredUUID(%v) = %v, %v; want ok %v", tc.in, got, ok, tc.ok)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	str := func(s string) *string { return &s }
	// In key order: the start, rowids; and for keyset positions the rows
	// without a time (by id), then by time (-infinity first), then by id.
	for _, order := range [][]position{
		{{}, {Rowid: 1}, {Rowid: 2}, {Rowid: 10}},
		{{}, {ID: str("B")}, {ID: str("a")},
			{ID: str("z"), Time: str("-infinity")},
			{ID: str("a"), Time: str("2025-01-14T10:30:00.000000Z")},
			{ID: str("b"), Time: str("2025-01-14T10:30:00.000000Z")},
			{ID: str("a"), Time: str("2025-01-14T10:30:00.000001Z")},
			{ID: str("a"), Time: str("infinity")}},
	} {
		for i := range order {
			for j := range order {
				if got := order[i].before(order[j]); got != (i < j) {
					t.Errorf("%v before %v = %v", order[i], order[j], got)
				}
			}
		}
	}
}

func TestCheckpointVersion1Loads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	v1 := `{"version":1,"source":"/data/omnimemory.db","destination":"sqlite:/x/metrics.db","skipped_log_bytes":0,
		"sessions":{"done_rowid":46,"imported":40,"skipped":{"bad_time":1}},
		"operations":{"done_rowid":1200,"pending_rowid":1300,"imported":1100},"updated_at":"2025-01-14T10:30:00Z"}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, ok, err := loadCheckpoint(path)
	if err != nil || !ok {
		t.Fatalf("loadCheckpoint: %v, %v", ok, err)
	}
	if cp.Sessions.Done != (position{Rowid: 46}) || cp.Sessions.Pending != nil || cp.Sessions.Imported != 40 ||
		cp.Operations.Done != (position{Rowid: 1200}) || cp.Operations.Pending == nil || *cp.Operations.Pending != (position{Rowid: 1300}) {
		t.Errorf("version 1 read as %+v", cp)
	}
	if err := cp.save(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"version": 2`) || strings.Contains(string(data), "done_rowid") {
		t.Errorf("saved again as:\n%s", data)
	}
	if err := os.WriteFile(path, []byte(`{"version":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadCheckpoint(path); err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("a checkpoint of a later version: %v", err)
	}
}

func TestPGValue(t *testing.T) {
	u := uuid.MustParse("123e4567-e89b-42d3-a456-426614174000")
	at := time.Date(2025, 1, 14, 10, 30, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		in    any
		naive bool
		want  any
	}{
		{int16(7), false, int64(7)},
		{int32(-7), false, int64(-7)},
		{float32(1.5), false, float64(1.5)},
		{[16]byte(u), false, u.String()},
		{at, true, "2025-01-14 10:30:00.123456"},
		{at.In(time.FixedZone("x", 3600)), false, "2025-01-14T10:30:00.123456Z"},
		{pgtype.Infinity, false, "infinity"},
		{"text", false, "text"},
		{nil, false, nil},
	} {
		if got := pgValue(tc.in, tc.naive); got != tc.want {
			t.Errorf("pgValue(%#v, %v) = %#v, want %#v", tc.in, tc.naive, got, tc.want)
		}
	}
}

// TestConvertCacheHit: a source's cache_hit column (a fork's; the original
// service has none, which reads as NULL) is a boolean, or 0 or 1 as SQLite
// keeps one; NULL is unknown; anything else skips the row.
func TestConvertCacheHit(t *testing.T) {
	c := rowConverter{loc: time.UTC, now: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		in   any
		want *bool
		ok   bool
	}{
		{nil, nil, true},
		{true, new(true), true},
		{false, new(false), true},
		{int64(1), new(true), true},
		{int64(0), new(false), true},
		{int64(2), nil, false},
		{"true", nil, false},
		{1.0, nil, false},
	} {
		row := rawRow{values: []any{"123e4567-e89b-42d3-a456-426614174000", "223e4567-e89b-42d3-a456-426614174000",
			"read", "full", "{}", nil, int64(100), int64(10), nil, 1.5, "claude-code", "2025-01-14 10:30:00", tc.in}}
		op, p := c.operation(row)
		if p.ok() != tc.ok {
			t.Errorf("cache_hit %#v: ok %v (%v), want %v", tc.in, p.ok(), p.details, tc.ok)
			continue
		}
		if !tc.ok {
			if p.reasons[0] != ReasonBadCacheHit {
				t.Errorf("cache_hit %#v: reason %v, want %s", tc.in, p.reasons, ReasonBadCacheHit)
			}
			continue
		}
		if (op.CacheHit == nil) != (tc.want == nil) || op.CacheHit != nil && *op.CacheHit != *tc.want {
			t.Errorf("cache_hit %#v: got %v, want %v", tc.in, op.CacheHit, tc.want)
		}
	}
}
