package sqlq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// numbered is a dialect with numbered placeholders, as PostgreSQL's.
var numbered = Dialect{
	Param:       func(n int) string { return "$" + strconv.Itoa(n) },
	Time:        func(t time.Time) any { return t },
	ID:          func(id uuid.UUID) any { return id },
	SessionID:   func(id uuid.UUID) any { return id },
	BucketStart: func(q *Query, col string, width int64) string { return "bin(" + col + ", " + q.Arg(width) + ")" },
	Micros:      func(e string) string { return e },
	Sum:         func(e string) string { return "sum(" + e + ")" },
	Int:         func(e string) string { return e },
	UUIDText:    func(e string) string { return e + "::text" },
	SessionKey:  func(e string) string { return e },
	Greatest:    "greatest",
}

// TestPlaceholdersFollowArguments: every statement numbers its
// placeholders 1, 2, 3... in the order of its arguments, also when a bucket
// expression takes arguments of its own between the conditions, and when a
// grouping by file ranks the files before it seeks their days.
func TestPlaceholdersFollowArguments(t *testing.T) {
	day0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	start := day0.Add(17 * time.Minute)
	end := day0.Add(5*24*time.Hour + 3*time.Hour + 5*time.Minute)
	sess := uuid.New()
	check := func(name, sql string, args []any) {
		t.Helper()
		got := regexp.MustCompile(`\$(\d+)`).FindAllStringSubmatch(sql, -1)
		if len(got) != len(args) {
			t.Errorf("%s: %d placeholders for %d arguments:\n%s", name, len(got), len(args), sql)
			return
		}
		for i, m := range got {
			if m[1] != strconv.Itoa(i+1) {
				t.Errorf("%s: placeholder %d is $%s:\n%s", name, i+1, m[1], sql)
				return
			}
		}
	}
	for _, f := range []Filter{{}, {ToolID: "cursor"}, {ToolID: "cursor", ToolName: "read", Mode: "full"}} {
		for _, width := range []int64{0, tsdb.MicrosPerHour, tsdb.MicrosPerDay} {
			w := tsdb.Window{Start: &start, End: end}
			parts := tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: width != tsdb.MicrosPerHour})
			if len(parts) < 3 {
				t.Fatalf("plan of %d parts, want rollups and raw edges", len(parts))
			}
			for _, series := range []Series{Operations, Spend} {
				sql, args := numbered.Aggregate(series, parts, f, width)
				check("aggregate "+series.Raw+" "+strconv.FormatInt(width, 10), sql, args)
			}
		}
	}
	captured := errors.New("captured")
	seeking := numbered
	seeking.FileDaySeek = true
	for _, d := range []Dialect{numbered, seeking} {
		for _, dims := range [][]tsdb.Dimension{
			{tsdb.DimHour}, {tsdb.DimDay, tsdb.DimToolID}, {tsdb.DimFilePath}, {tsdb.DimFilePath, tsdb.DimDay},
			{tsdb.DimProjectID, tsdb.DimSessionID, tsdb.DimHour},
		} {
			for _, f := range []tsdb.OperationFilter{{Start: &start, End: &end}, {End: &end, ToolID: "cursor", ToolName: "read"}, {SessionID: &sess}} {
				_, err := d.GroupOperations(t.Context(), func(_ context.Context, sql string, args ...any) (Rows, func(), error) {
					check(fmt.Sprintf("group operations %v %+v (file day seek %v)", dims, f, d.FileDaySeek), sql, args)
					return nil, nil, captured
				}, new(Horizon), tsdb.AggregateQuery{GroupBy: dims, Filter: f, Limit: 10})
				if !errors.Is(err, captured) {
					t.Fatalf("group operations %v: %v", dims, err)
				}
			}
		}
	}
	q := numbered.NewQuery()
	where := q.OperationWhere(tsdb.OperationFilter{SessionID: &sess, ToolName: "read", OperationMode: "full",
		ToolID: "cursor", Start: &start, End: &end}, false)
	check("operation filter", where+" LIMIT "+q.Arg(10), q.Args)
	for _, st := range append(numbered.OpenSessionQueries(tsdb.SessionMatch{ToolID: "cursor", InstanceID: ptr("i"), ProcessID: ptr(int64(7))}),
		numbered.GetSession(sess), numbered.TouchSession(sess, end), numbered.EndSession(sess, end),
		numbered.ActiveSessions("cursor", start)) {
		check("session statement", st.SQL, st.Args)
	}
}

func ptr[T any](v T) *T { return &v }

// TestGroupOperationsReadsRollups: a grouping the rollups carry reads
// them for every whole day and hour of its window (raw rows only at its
// edges); a grouping by file, on no filter but time, reads the day rows per
// file, and one by session or project (also of one session) the day rows
// per session; any other grouping reads the operations.
func TestGroupOperationsReadsRollups(t *testing.T) {
	start := time.Date(2025, 1, 1, 10, 17, 0, 0, time.UTC)
	end := start.Add(30 * 24 * time.Hour)
	window := tsdb.OperationFilter{Start: &start, End: &end}
	sess := uuid.New()
	for _, tc := range []struct {
		dims   []tsdb.Dimension
		f      tsdb.OperationFilter
		tables []string // those read, in order of their first mention
	}{
		{[]tsdb.Dimension{tsdb.DimToolID, tsdb.DimDay}, window, []string{"op_rollup_hourly", "tool_operations", "op_rollup_daily"}},
		{[]tsdb.Dimension{tsdb.DimOperationMode, tsdb.DimHour}, window, []string{"op_rollup_hourly", "tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimFilePath}, window, []string{"op_rollup_file_daily", "tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimDay, tsdb.DimFilePath}, tsdb.OperationFilter{End: &end}, []string{"op_rollup_file_daily", "tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimFilePath}, tsdb.OperationFilter{Start: &start, End: &end, ToolID: "cursor"}, []string{"tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimToolID}, tsdb.OperationFilter{SessionID: &sess}, []string{"tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimFilePath}, tsdb.OperationFilter{SessionID: &sess}, []string{"tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimProjectID}, window, []string{"op_rollup_session_daily", "tool_operations", "tool_sessions"}},
		{[]tsdb.Dimension{tsdb.DimDay, tsdb.DimSessionID}, tsdb.OperationFilter{SessionID: &sess}, []string{"op_rollup_session_daily", "tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimSessionID, tsdb.DimToolName}, window, []string{"tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimSessionID}, tsdb.OperationFilter{OperationMode: "full"}, []string{"tool_operations"}},
		{[]tsdb.Dimension{tsdb.DimSessionID, tsdb.DimFilePath}, window, []string{"tool_operations"}},
	} {
		var sql string
		_, _ = numbered.GroupOperations(t.Context(), func(_ context.Context, s string, _ ...any) (Rows, func(), error) {
			sql = s
			return nil, nil, errors.New("captured")
		}, new(Horizon), tsdb.AggregateQuery{GroupBy: tc.dims, Filter: tc.f, Limit: 10})
		var tables []string
		for _, m := range regexp.MustCompile(`FROM (\w+)|JOIN (\w+)`).FindAllStringSubmatch(sql, -1) {
			if name := m[1] + m[2]; !slices.Contains(tables, name) {
				tables = append(tables, name)
			}
		}
		if !slices.Equal(tables, tc.tables) {
			t.Errorf("%v %+v reads %v, want %v:\n%s", tc.dims, tc.f, tables, tc.tables, sql)
		}
	}
}
