package delivery

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func TestSlotsUniqueAndOverflow(t *testing.T) {
	s := NewSlots(16)
	at := time.Date(2025, 1, 1, 0, 0, 0, 123000, time.UTC)
	sess := uuid.New()
	seen := map[[2]int]bool{}
	for i := range 2500 {
		op := tsdb.Operation{ID: uuid.New(), SessionID: sess, ToolName: "read", OperationMode: "full", ToolID: "x", CreatedAt: at}
		off, dup := s.Assign(&op)
		if off < 0 || off >= 1000 {
			t.Fatalf("op %d: offset %d out of [0, 1000)", i, off)
		}
		k := [2]int{off, dup}
		if seen[k] {
			t.Fatalf("op %d: offset %d dup %d handed out twice", i, off, dup)
		}
		seen[k] = true
		if want := i / 1000; dup != want {
			t.Fatalf("op %d: dup %d, want %d", i, dup, want)
		}
	}
	// The table stays bounded.
	for i := range 100 {
		op := tsdb.Operation{ID: uuid.New(), SessionID: sess, ToolName: "read", OperationMode: "full", ToolID: "x",
			CreatedAt: at.Add(time.Duration(i) * time.Microsecond)}
		s.Assign(&op)
	}
	if n := s.len(); n > 16 {
		t.Fatalf("%d keys kept, bound 16", n)
	}
}

// TestSlotsMemory holds the table's bound in bytes: a full table of
// keys with one point each, as batches of distinct sessions and
// microseconds fill it, stays within a few MB.
func TestSlotsMemory(t *testing.T) {
	const keys = 1 << 16
	ops := make([]tsdb.Operation, keys+keys/4)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range ops {
		ops[i] = tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: "full", ToolID: "x",
			CreatedAt: at.Add(time.Duration(i) * time.Microsecond)}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := NewSlots(keys)
	for i := range ops {
		s.Assign(&ops[i])
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := s.len(); n != keys {
		t.Fatalf("%d keys kept, want %d", n, keys)
	}
	if held := int64(after.HeapAlloc) - int64(before.HeapAlloc); held > 6<<20 {
		t.Errorf("a full table of %d keys holds %.1f MB, want at most 6 MB", keys, float64(held)/(1<<20))
	}
	runtime.KeepAlive(s)
	runtime.KeepAlive(ops)
}

func TestSplitLines(t *testing.T) {
	lp := []byte("aaaa\nbbbb\ncc\nddddddddddd\ne\n")
	chunks := splitLines(lp, 10)
	if got := string(joinBytes(chunks)); got != string(lp) {
		t.Fatalf("joined chunks %q != %q", got, lp)
	}
	for _, c := range chunks {
		if c[len(c)-1] != '\n' {
			t.Errorf("chunk %q does not end a line", c)
		}
		if len(c) > 10 && strings.Count(string(c), "\n") > 1 {
			t.Errorf("chunk %q exceeds the bound with more than one line", c)
		}
	}
}

// TestSplitParts checks that the parts of records are the chunks of their
// concatenation, without copying.
func TestSplitParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var lps [][]byte
		for range 1 + rng.IntN(5) {
			var lp []byte
			for range rng.IntN(6) {
				lp = append(lp, strings.Repeat("x", rng.IntN(30))+"\n"...)
			}
			lps = append(lps, lp)
		}
		max := 1 + rng.IntN(60)
		want := splitLines(joinBytes(lps), max)
		got := splitParts(lps, max)
		if len(got) != len(want) {
			t.Fatalf("records %q, max %d: %d parts, want %d", lps, max, len(got), len(want))
		}
		for i, part := range got {
			if j := joinBytes(part); string(j) != string(want[i]) {
				t.Fatalf("records %q, max %d: part %d is %q, want %q", lps, max, i, j, want[i])
			}
		}
	}
}

func joinBytes(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// BenchmarkSlotsAssign assigns the offsets of batches of 5,000 operations
// over 50 sessions, a microsecond each, as a full table sees them.
func BenchmarkSlotsAssign(b *testing.B) {
	s := NewSlots(1 << 16)
	sessions := make([]uuid.UUID, 50)
	for i := range sessions {
		sessions[i] = uuid.New()
	}
	ops := make([]tsdb.Operation, 5000)
	at := time.Now()
	for i := range ops {
		ops[i] = tsdb.Operation{ID: uuid.New(), SessionID: sessions[i%len(sessions)], ToolName: "read", OperationMode: "semantic",
			ToolID: "claude-code", CreatedAt: at.Add(time.Duration(i) * 97 * time.Microsecond)}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		op := &ops[i%len(ops)]
		op.CreatedAt = op.CreatedAt.Add(time.Second)
		s.Assign(op)
	}
}
