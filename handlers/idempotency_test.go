package handlers_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRetriesCountOnce: the same operation_id, or the same Idempotency-Key
// for the same session, posted again answers the same operation_id, says it
// was replayed, and stores and counts nothing new, also after a restart.
func TestRetriesCountOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s := newService(t, serviceOpts{path: path})
	const clientID = "0b6f7c1e-2f4a-4d7e-9c3b-5a1f0e2d3c4b"

	first := s.mustDo("POST", "/track/tool-operation", op(map[string]any{"operation_id": clientID}), 200)
	if first["operation_id"] != clientID {
		t.Fatalf("operation_id %v, want the client's %s", first["operation_id"], clientID)
	}
	r := s.do("POST", "/track/tool-operation", op(map[string]any{"operation_id": clientID}))
	if r.status != 200 || r.json(t)["operation_id"] != clientID || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry by operation_id: %d %s replayed=%q", r.status, r.body, r.header.Get("Idempotent-Replayed"))
	}

	keyed := s.do("POST", "/track/tool-operation", op(nil), "Idempotency-Key", "req-42")
	if keyed.status != 200 || keyed.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first keyed post: %d replayed=%q", keyed.status, keyed.header.Get("Idempotent-Replayed"))
	}
	id := keyed.json(t)["operation_id"]
	again := s.do("POST", "/track/tool-operation", op(nil), "Idempotency-Key", "req-42")
	if again.json(t)["operation_id"] != id || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry by key answered %v (replayed %q), want %v", again.json(t)["operation_id"], again.header.Get("Idempotent-Replayed"), id)
	}
	other := s.do("POST", "/track/tool-operation", op(map[string]any{"session_id": "9b2d6a0e-4a4f-4d7e-9a39-2f0c3a8c9d11"}), "Idempotency-Key", "req-42")
	if other.json(t)["operation_id"] == id {
		t.Errorf("the same key in another session gave the same id")
	}

	batch := map[string]any{"operations": []any{op(nil), op(nil)}}
	b1 := s.do("POST", "/track/tool-operations", batch, "Idempotency-Key", "batch-7")
	b2 := s.do("POST", "/track/tool-operations", batch, "Idempotency-Key", "batch-7")
	if b1.status != 200 || mustJSON(t, b1.json(t)["operation_ids"]) != mustJSON(t, b2.json(t)["operation_ids"]) || b2.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("batch retry: %s then %s", b1.body, b2.body)
	}

	check := func(s *service, when string) {
		t.Helper()
		if total := num(t, s.mustDo("GET", "/metrics/tool-operations", nil, 200), "total"); total != 5 {
			t.Errorf("%s: %v operations stored, want 5", when, total)
		}
		sv := s.mustDo("GET", "/metrics/api-savings?time_range=1h", nil, 200)
		if got := num(t, sv, "total_operations"); got != 5 {
			t.Errorf("%s: savings count %v operations, want 5", when, got)
		}
	}
	check(s, "after the retries")
	if got := metricSum(t, s, "omnimemory_tool_operations_total"); got != 5 {
		t.Errorf("operations counter %v, want 5: retries must not count", got)
	}

	s.close()
	s2 := newService(t, serviceOpts{path: path})
	r = s2.do("POST", "/track/tool-operation", op(map[string]any{"operation_id": clientID}))
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after a restart not recognised: %s", r.body)
	}
	r = s2.do("POST", "/track/tool-operation", op(nil), "Idempotency-Key", "req-42")
	if r.json(t)["operation_id"] != id || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("keyed retry after a restart: %s", r.body)
	}
	check(s2, "after a restart and more retries")

	for name, hdr := range map[string]string{"too long": strings.Repeat("k", 300), "a space": "a b", "non-ASCII": "clé"} {
		if r := s2.do("POST", "/track/tool-operation", op(nil), "Idempotency-Key", hdr); r.status != 422 {
			t.Errorf("Idempotency-Key %s: %d, want 422", name, r.status)
		}
	}
	if r := s2.do("POST", "/track/tool-operation", op(map[string]any{"operation_id": "nope"})); r.status != 422 {
		t.Errorf("a malformed operation_id: %d, want 422", r.status)
	}
}

func metricSum(t *testing.T, s *service, name string) float64 {
	t.Helper()
	return testutil.ToFloat64(metricVec(t, s.reg, name))
}
