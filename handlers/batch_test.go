package handlers_test

import (
	"fmt"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

func TestBatchStoresAllInOrder(t *testing.T) {
	s := newService(t, serviceOpts{})
	var items []any
	for i := 0; i < api.MaxBatchOperations; i++ {
		items = append(items, op(map[string]any{"tokens_original": 1000 + i, "tokens_actual": 0, "tokens_prevented": nil}))
	}
	got := s.mustDo("POST", "/track/tool-operations", map[string]any{"operations": items}, 200)
	ids := got["operation_ids"].([]any)
	if got["status"] != "success" || got["count"] != float64(len(items)) || len(ids) != len(items) {
		t.Fatalf("batch answered status %v count %v with %d ids", got["status"], got["count"], len(ids))
	}
	// The ids answer the items in order: item i has tokens_original 1000+i.
	byID := map[string]float64{}
	for offset := 0; offset < len(items); offset += 1000 {
		page := s.mustDo("GET", fmt.Sprintf("/metrics/tool-operations?limit=1000&offset=%d", offset), nil, 200)
		for _, o := range page["operations"].([]any) {
			m := o.(map[string]any)
			byID[m["id"].(string)] = m["tokens_original"].(float64)
		}
	}
	if len(byID) != len(items) {
		t.Fatalf("stored %d of %d", len(byID), len(items))
	}
	for i, id := range ids {
		if byID[id.(string)] != float64(1000+i) {
			t.Fatalf("id %d answers an operation with tokens_original %v", i, byID[id.(string)])
		}
	}
}

func TestBatchWithABadItemStoresNothing(t *testing.T) {
	s := newService(t, serviceOpts{})
	items := []any{
		op(nil),
		op(map[string]any{"tool_name": "write", "tokens_actual": "5"}),
		op(nil),
		op(map[string]any{"session_id": "nope"}),
		"not an object",
	}
	r := s.do("POST", "/track/tool-operations", map[string]any{"operations": items})
	if r.status != 422 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	want := map[string]bool{"1/tool_name": false, "1/tokens_actual": false, "3/session_id": false, "4/": false}
	for _, e := range r.json(t)["detail"].([]any) {
		loc := e.(map[string]any)["loc"].([]any)
		if len(loc) < 3 || loc[0] != "body" || loc[1] != "operations" {
			t.Errorf("error located at %v", loc)
			continue
		}
		key := fmt.Sprintf("%v/", loc[2])
		if len(loc) == 4 {
			key += loc[3].(string)
		}
		if _, ok := want[key]; !ok {
			t.Errorf("unexpected error at %v", loc)
		}
		want[key] = true
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no error for item/field %s", k)
		}
	}
	if total := num(t, s.mustDo("GET", "/metrics/tool-operations", nil, 200), "total"); total != 0 {
		t.Errorf("a rejected batch stored %v operations", total)
	}
	for body, want := range map[string]int{
		`{"operations":[]}`:   422,
		`{"operations":{}}`:   422,
		`{}`:                  422,
		`{"operations":[1,2]`: 422,
		`{"operations":null}`: 422,
	} {
		if r := s.do("POST", "/track/tool-operations", body); r.status != want {
			t.Errorf("%s: %d, want %d", body, r.status, want)
		}
	}
	var tooMany []any
	for i := 0; i <= api.MaxBatchOperations; i++ {
		tooMany = append(tooMany, map[string]any{})
	}
	if r := s.do("POST", "/track/tool-operations", map[string]any{"operations": tooMany}); r.status != 422 {
		t.Errorf("%d items: status %d, want 422", len(tooMany), r.status)
	}
}
