package handlers_test

import (
	"reflect"
	"testing"
	"time"
)

// TestSavingsComparedWithThePreviousPeriod posts operations on both sides of
// the boundaries of a 24h comparison and reads the compared answer through
// the router.
func TestSavingsComparedWithThePreviousPeriod(t *testing.T) {
	c := &clock{}
	s := newService(t, serviceOpts{clock: c})
	now := time.Date(2025, 1, 14, 12, 30, 0, 0, time.UTC)
	c.set(now)
	post := func(at time.Time, toolID, tool, mode string, original, actual int) {
		s.mustDo("POST", "/track/tool-operation", op(map[string]any{
			"created_at": at.Format(time.RFC3339Nano), "tool_id": toolID, "tool_name": tool, "operation_mode": mode,
			"tokens_original": original, "tokens_actual": actual, "tokens_prevented": nil}), 200)
	}
	day := 24 * time.Hour
	post(now.Add(-day), "claude-code", "read", "full", 5000, 5000)                    // current, at its start
	post(now.Add(-3*time.Hour), "claude-code", "read", "overview", 5000, 500)         // current
	post(now, "claude-code", "search", "semantic", 50000, 5000)                       // current, at now
	post(now.Add(-day-time.Microsecond), "claude-code", "read", "symbol", 8000, 800)  // previous, at its end
	post(now.Add(-2*day), "claude-code", "search", "tri_index", 30000, 3000)          // previous, at its start
	post(now.Add(-2*day-time.Microsecond), "claude-code", "read", "full", 1000000, 0) // neither
	post(now.Add(-30*time.Hour), "cursor", "read", "references", 900, 100)            // previous, another tool
	post(now.Add(-2*time.Hour), "cursor", "read", "references", 700, 100)             // current, another tool

	plain := s.mustDo("GET", "/metrics/api-savings?time_range=24h&tool_id=claude-code", nil, 200)
	got := s.mustDo("GET", "/metrics/api-savings?time_range=24h&tool_id=claude-code&compare=previous", nil, 200)
	for _, k := range []string{"previous_period", "change"} {
		if _, ok := plain[k]; ok {
			t.Errorf("without compare the answer has %s", k)
		}
	}
	for k, v := range plain {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s: %v compared, %v plain", k, got[k], v)
		}
	}
	if empty := s.mustDo("GET", "/metrics/api-savings?time_range=24h&tool_id=claude-code&compare=", nil, 200); !reflect.DeepEqual(empty, plain) {
		t.Errorf("an empty compare changed the answer: %v", empty)
	}

	prev := got["previous_period"].(map[string]any)
	if prev["start"] != "2025-01-12T12:30:00Z" || prev["end"] != "2025-01-13T12:30:00Z" {
		t.Errorf("previous period [%v, %v)", prev["start"], prev["end"])
	}
	for k, want := range map[string]float64{
		"api_cost_baseline": 0.57, "api_cost_actual": 0.057, "total_cost_saved": 0.513, "savings_percentage": 90,
		"total_tokens_processed": 38000, "total_tokens_prevented": 34200, "total_operations": 2,
	} {
		if v := num(t, prev, k); v != want {
			t.Errorf("previous %s = %v, want %v", k, v, want)
		}
	}
	if v := num(t, prev, "breakdown_by_tool", "search", "cost_saved"); v != 0.405 {
		t.Errorf("previous search cost_saved = %v", v)
	}
	if v := num(t, prev, "breakdown_by_mode", "symbol", "tokens_prevented"); v != 7200 {
		t.Errorf("previous symbol tokens_prevented = %v", v)
	}
	if len(prev) != 11 {
		t.Errorf("previous_period has %d fields, want 11: %v", len(prev), prev)
	}
	change := got["change"].(map[string]any)
	for k, want := range map[string][2]float64{
		"api_cost_baseline": {0.33, 57.89}, "api_cost_actual": {0.1005, 176.32}, "total_cost_saved": {0.2295, 44.74},
		"savings_percentage": {-7.5, -8.33}, "total_tokens_processed": {22000, 57.89},
		"total_tokens_prevented": {15300, 44.74}, "total_operations": {1, 50},
	} {
		if a, p := num(t, change, k, "absolute"), num(t, change, k, "percent"); a != want[0] || p != want[1] {
			t.Errorf("change %s = %v / %v%%, want %v / %v%%", k, a, p, want[0], want[1])
		}
	}

	// All tools: the other tool's operations count in both periods.
	all := s.mustDo("GET", "/metrics/api-savings?time_range=24h&compare=previous", nil, 200)
	if v := num(t, all, "previous_period", "total_operations"); v != 3 {
		t.Errorf("previous operations of every tool = %v, want 3", v)
	}
	if v := num(t, all, "change", "total_operations", "absolute"); v != 1 {
		t.Errorf("change of operations of every tool = %v, want 1", v)
	}

	// Nothing before: every percent is null.
	c.set(now.Add(-36 * time.Hour))
	early := s.mustDo("GET", "/metrics/api-savings?time_range=1h&compare=previous&tool_id=nobody", nil, 200)
	for k, v := range early["change"].(map[string]any) {
		if m := v.(map[string]any); m["percent"] != nil || m["absolute"] != 0.0 {
			t.Errorf("change %s of nothing: %v", k, m)
		}
	}
}

func TestSavingsCompareErrors(t *testing.T) {
	s := newService(t, serviceOpts{})
	for path, want := range map[string]string{
		"/metrics/api-savings?time_range=all&compare=previous": "compare=previous needs a bounded time_range: one of 1h, 24h, 7d, 30d",
		"/metrics/api-savings?compare=next":                    "Invalid compare: must be previous",
		"/metrics/api-savings?time_range=all&compare=Previous": "Invalid compare: must be previous",
		"/metrics/api-savings?time_range=2h&compare=previous":  "Invalid time_range: must be one of 1h, 24h, 7d, 30d, all",
	} {
		r := s.do("GET", path, nil)
		if r.status != 400 {
			t.Errorf("%s: status %d, want 400", path, r.status)
			continue
		}
		if d := r.json(t)["detail"]; d != want {
			t.Errorf("%s: detail %q, want %q", path, d, want)
		}
	}
}
