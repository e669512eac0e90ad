package handlers_test

import (
	"encoding/json"
	"reflect"
	"testing"
)

// seedAggregate posts four operations over two days: two of a session
// started with a project (one file, a cache hit and a miss), a search
// without a file and a read of another file, in a session its operations
// created (no project).
func seedAggregate(t *testing.T, s *service) {
	t.Helper()
	project := s.mustDo("POST", "/sessions/start", map[string]any{"tool_id": "claude-code", "project_id": "omnimemory"}, 200)["session_id"].(string)
	for _, fields := range []map[string]any{
		{"session_id": project, "operation_mode": "overview", "file_path": "src/a.py", "tokens_original": 5000, "tokens_actual": 500,
			"tokens_prevented": nil, "response_time_ms": 100, "cache_hit": true, "created_at": "2025-01-14T10:15:00Z"},
		{"session_id": project, "operation_mode": "full", "file_path": "src/a.py", "tokens_original": 1000, "tokens_actual": 1000,
			"tokens_prevented": nil, "response_time_ms": 20, "cache_hit": false, "created_at": "2025-01-14T10:45:00Z"},
		{"tool_name": "search", "operation_mode": "semantic", "file_path": nil, "tokens_original": 50000, "tokens_actual": 5000,
			"tokens_prevented": nil, "response_time_ms": 250, "created_at": "2025-01-14T11:05:00Z"},
		{"operation_mode": "symbol", "file_path": "src/b.py", "tokens_original": 8000, "tokens_actual": 800,
			"tokens_prevented": nil, "response_time_ms": 30, "cache_hit": true, "created_at": "2025-01-15T00:30:00Z"},
	} {
		s.mustDo("POST", "/track/tool-operation", op(fields), 200)
	}
}

// TestAggregateAnswers checks hand-computed answers: a null key, pricing at
// the configured price, the mean response time, cache hits and hit rate,
// projects through sessions, UTC buckets, limit and total_groups.
func TestAggregateAnswers(t *testing.T) {
	s := newService(t, serviceOpts{})
	seedAggregate(t, s)

	r := s.do("GET", "/metrics/aggregate?group_by=file_path", nil)
	want := `{"group_by":["file_path"],"groups":[` +
		`{"key":{"file_path":null},"count":1,"tokens_original":50000,"tokens_actual":5000,"tokens_prevented":45000,"cost_saved":0.675,"avg_response_time_ms":250,"cache_hits":0,"cache_hit_rate":0},` +
		`{"key":{"file_path":"src/b.py"},"count":1,"tokens_original":8000,"tokens_actual":800,"tokens_prevented":7200,"cost_saved":0.108,"avg_response_time_ms":30,"cache_hits":1,"cache_hit_rate":1},` +
		`{"key":{"file_path":"src/a.py"},"count":2,"tokens_original":6000,"tokens_actual":1500,"tokens_prevented":4500,"cost_saved":0.0675,"avg_response_time_ms":60,"cache_hits":1,"cache_hit_rate":0.5}` +
		`],"total_groups":3}` + "\n"
	if r.status != 200 || string(r.body) != want {
		t.Errorf("group_by=file_path: %d\ngot  %s\nwant %s", r.status, r.body, want)
	}

	type group struct {
		Key   map[string]*string
		Count int64
		Cost  float64 `json:"cost_saved"`
		Avg   float64 `json:"avg_response_time_ms"`
		Rate  float64 `json:"cache_hit_rate"`
	}
	type answer struct {
		GroupBy     []string `json:"group_by"`
		Groups      []group
		TotalGroups int64 `json:"total_groups"`
	}
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		query string
		want  answer
	}{
		{"group_by=project_id,day", answer{[]string{"project_id", "day"}, []group{
			{map[string]*string{"project_id": nil, "day": str("2025-01-14T00:00:00Z")}, 1, 0.675, 250, 0},
			{map[string]*string{"project_id": nil, "day": str("2025-01-15T00:00:00Z")}, 1, 0.108, 30, 1},
			{map[string]*string{"project_id": str("omnimemory"), "day": str("2025-01-14T00:00:00Z")}, 2, 0.0675, 60, 0.5},
		}, 3}},
		{"group_by=hour&limit=1&order_by=count", answer{[]string{"hour"}, []group{
			{map[string]*string{"hour": str("2025-01-14T10:00:00Z")}, 2, 0.0675, 60, 0.5},
		}, 3}},
		{"group_by=tool_name&group_by=operation_mode&order_by=avg_response_time_ms&limit=2", answer{[]string{"tool_name", "operation_mode"}, []group{
			{map[string]*string{"tool_name": str("search"), "operation_mode": str("semantic")}, 1, 0.675, 250, 0},
			{map[string]*string{"tool_name": str("read"), "operation_mode": str("overview")}, 1, 0.0675, 100, 1},
		}, 4}},
		{"group_by=day&tool_name=read&start_date=2025-01-14T10:30:00Z&end_date=2025-01-15&order_by=cost_saved", answer{[]string{"day"}, []group{
			{map[string]*string{"day": str("2025-01-14T00:00:00Z")}, 1, 0, 20, 0},
		}, 1}},
		{"group_by=tool_id&tool_id=nobody", answer{[]string{"tool_id"}, []group{}, 0}},
	} {
		r := s.do("GET", "/metrics/aggregate?"+tc.query, nil)
		var got answer
		if err := json.Unmarshal(r.body, &got); r.status != 200 || err != nil {
			t.Fatalf("%s: %d %s", tc.query, r.status, r.body)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tc.query, got, tc.want)
		}
	}
}

// TestAggregateParameterErrors: a bad parameter is a 422 (limit, a missing
// group_by: both at once when both are wrong) or a 400 with a detail
// naming what is wrong (group_by before order_by before the filters).
func TestAggregateParameterErrors(t *testing.T) {
	s := newService(t, serviceOpts{})
	for _, tc := range []struct {
		query  string
		status int
		detail any // a string, or the locations of a 422's errors
	}{
		{"", 422, [][]any{{"query", "group_by"}}},
		{"group_by=", 422, [][]any{{"query", "group_by"}}},
		{"limit=0", 422, [][]any{{"query", "limit"}, {"query", "group_by"}}},
		{"group_by=x&limit=1001", 422, [][]any{{"query", "limit"}}},
		{"group_by=model", 400, `Invalid group_by: "model" is not one of file_path, tool_id, session_id, project_id, tool_name, operation_mode, hour, day`},
		{"group_by=day,%20hour", 400, `Invalid group_by: " hour" is not one of file_path, tool_id, session_id, project_id, tool_name, operation_mode, hour, day`},
		{"group_by=day,,hour", 400, `Invalid group_by: "" is not one of file_path, tool_id, session_id, project_id, tool_name, operation_mode, hour, day`},
		{"group_by=day,day", 400, "Invalid group_by: day is named twice"},
		{"group_by=day&group_by=day", 400, "Invalid group_by: day is named twice"},
		{"group_by=hour,day,tool_id,file_path", 400, "Invalid group_by: at most 3 dimensions, not 4"},
		{"group_by=day&order_by=id", 400, "Invalid order_by: must be one of tokens_prevented, tokens_original, tokens_actual, count, cost_saved, avg_response_time_ms"},
		{"group_by=x&order_by=id&session_id=nope", 400, `Invalid group_by: "x" is not one of file_path, tool_id, session_id, project_id, tool_name, operation_mode, hour, day`},
		{"group_by=day&session_id=nope", 400, "Invalid session_id format: must be a valid UUID"},
		{"group_by=day&tool_name=write", 400, "Invalid tool_name: must be one of read, search"},
		{"group_by=day&start_date=yesterday", 400, "Invalid start_date format: must be an ISO 8601 date or datetime (e.g. 2025-01-14 or 2025-01-14T10:30:00Z)"},
		{"group_by=day&offset=abc", 200, nil},
	} {
		r := s.do("GET", "/metrics/aggregate?"+tc.query, nil)
		if r.status != tc.status {
			t.Errorf("%q: status %d, want %d: %s", tc.query, r.status, tc.status, r.body)
			continue
		}
		switch want := tc.detail.(type) {
		case string:
			if d := r.json(t)["detail"]; d != want {
				t.Errorf("%q: detail %q, want %q", tc.query, d, want)
			}
		case [][]any:
			assertDetail(t, r)
			var locs [][]any
			for _, e := range r.json(t)["detail"].([]any) {
				locs = append(locs, e.(map[string]any)["loc"].([]any))
			}
			if !reflect.DeepEqual(locs, want) {
				t.Errorf("%q: errors at %v, want %v", tc.query, locs, want)
			}
		}
	}
}
