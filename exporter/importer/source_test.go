package importer

import (
	"testing"
	"time"

	"github.com/google/uuid"
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
