package handlers_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestToolIDLabelsAreBounded posts 10,000 operations with distinct tool_ids:
// the exposition keeps at most 100 tool_id values plus "other", the stored
// operations keep their real tool_id, and the heap does not grow with a
// second round of 10,000 new tool_ids.
func TestToolIDLabelsAreBounded(t *testing.T) {
	s := newService(t, serviceOpts{})
	postRound := func(round int) {
		for b := 0; b < 2; b++ {
			items := make([]any, 5000)
			for i := range items {
				items[i] = op(map[string]any{"tool_id": fmt.Sprintf("tool-%d-%d-%d", round, b, i)})
			}
			s.mustDo("POST", "/track/tool-operations", map[string]any{"operations": items}, 200)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	postRound(0)
	series := testutil.CollectAndCount(s.reg, "omnimemory_tool_operations_total")
	if series != 101 {
		t.Errorf("%d operation series after 10,000 tool ids, want 101 (100 + other)", series)
	}
	r := s.do("GET", "/metrics", nil)
	if !containsLine(string(r.body), `omnimemory_tool_operations_total{operation_mode="overview",tool_id="other",tool_name="read"} 9900`) {
		t.Errorf("the other series does not count the 9,900 operations past the bound")
	}
	page := s.mustDo("GET", "/metrics/tool-operations?tool_id=tool-0-1-4999", nil, 200)
	if page["total"] != 1.0 {
		t.Errorf("the stored operation lost its real tool_id: %v", page["total"])
	}
	before := heap()
	postRound(1)
	after := heap()
	if n := testutil.CollectAndCount(s.reg, "omnimemory_tool_operations_total"); n != series {
		t.Errorf("series grew from %d to %d with 10,000 more tool ids", series, n)
	}
	t.Logf("heap after 10,000 tool ids: %d KiB; after 20,000: %d KiB", before>>10, after>>10)
	if after > before+8<<20 {
		t.Errorf("heap grew by %d KiB with 10,000 more tool ids", (after-before)>>10)
	}
}

func containsLine(text, line string) bool {
	return slices.Contains(strings.Split(text, "\n"), line)
}
