package sqlq

import (
	"regexp"
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
	Int:         func(e string) string { return e },
	Greatest:    "greatest",
}

// TestPlaceholdersFollowArguments: every statement numbers its
// placeholders 1, 2, 3... in the order of its arguments, also when a bucket
// expression takes arguments of its own between the conditions.
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
