package exporter_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/exporter"
)

// TestOperationID: a key gives the same id for the same session every time
// (a retry is stored once), another id for another key or session; no key
// gives a fresh time-ordered id each time.
func TestOperationID(t *testing.T) {
	s1, s2 := uuid.MustParse("123e4567-e89b-12d3-a456-426614174000"), uuid.MustParse("223e4567-e89b-12d3-a456-426614174000")
	a, keyed := exporter.OperationID(s1, "k1")
	b, _ := exporter.OperationID(s1, "k1")
	if !keyed || a != b || a.Version() != 5 {
		t.Errorf("same key and session: %s and %s (keyed %v), want one UUIDv5", a, b, keyed)
	}
	for _, other := range []struct {
		s   uuid.UUID
		key string
	}{{s1, "k2"}, {s2, "k1"}} {
		if c, _ := exporter.OperationID(other.s, other.key); c == a {
			t.Errorf("session %s key %q has the id of session %s key k1", other.s, other.key, s1)
		}
	}
	x, keyed := exporter.OperationID(s1, "")
	y, _ := exporter.OperationID(s1, "")
	if keyed || x == y || x.Version() != 7 {
		t.Errorf("no key: %s and %s (keyed %v), want two different UUIDv7", x, y, keyed)
	}
}
