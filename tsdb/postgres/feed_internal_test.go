package postgres

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// TestAnnouncePayloadsFitAndReadBack: the announcement of the largest
// commit is split into payloads under PostgreSQL's 8000 bytes, which read
// back as every id and created_at, in order.
func TestAnnouncePayloadsFitAndReadBack(t *testing.T) {
	ops := make([]tsdb.Operation, 5000)
	t0 := time.Date(2262, 4, 11, 23, 47, 16, 854775000, time.UTC) // the longest times in microseconds
	for i := range ops {
		ops[i] = tsdb.Operation{ID: uuid.New(), CreatedAt: t0.Add(-time.Duration(i) * time.Second)}
	}
	payloads := announcePayloads("0123456789abcdef", ops)
	i := 0
	for _, p := range payloads {
		if len(p) >= 8000 {
			t.Fatalf("payload of %d bytes", len(p))
		}
		a, err := parsePayload(p)
		if err != nil {
			t.Fatal(err)
		}
		if a.origin != "0123456789abcdef" {
			t.Fatalf("origin %q", a.origin)
		}
		for j, id := range a.ids {
			if id != ops[i].ID || !a.created[j].Equal(ops[i].CreatedAt) {
				t.Fatalf("entry %d: %s %v, want %s %v", i, id, a.created[j], ops[i].ID, ops[i].CreatedAt)
			}
			i++
		}
	}
	if i != len(ops) {
		t.Fatalf("%d entries read back, want %d", i, len(ops))
	}
	t.Logf("%d operations in %d notifications", len(ops), len(payloads))
	for _, bad := range []string{"", "2 x", "1 o zz:1", "1 o " + uuid.NewString() + ":1", "1 o 00112233445566778899aabbccddeeff:x"} {
		if _, err := parsePayload(bad); err == nil {
			t.Errorf("payload %q read without error", bad)
		}
	}
}
