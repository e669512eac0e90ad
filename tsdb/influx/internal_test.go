package influx

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func TestFluxStringEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `""`},
		{`plain`, `"plain"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{`end\`, `"end\\"`},
		{`\"`, `"\\\""`},
		{`${x}`, `"\${x}"`},
		{`$${`, `"$\${"`},
		{`$`, `"$"`},
		{`{}`, `"{}"`},
		{"a\nb\r\tc", `"a\nb\r\tc"`},
		{"caf\u00e9 日本", "\"caf\u00e9 日本\""},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{`") |> drop() //`, `"\") |> drop() //"`},
	}
	for _, tc := range tests {
		if got := fluxString(tc.in); got != tc.want {
			t.Errorf("fluxString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestTagValueRoundTrip(t *testing.T) {
	for _, v := range []string{"claude-code", "", "a b,c=d", "trailing\\", "new\nline", "~b64~x", "tab\there", "bad\xff"} {
		enc := tagValue(v)
		if strings.ContainsAny(enc, "\n\r") || strings.HasSuffix(enc, `\`) {
			t.Errorf("tagValue(%q) = %q: not safe in line protocol", v, enc)
		}
		if got := decodeTag(enc); got != v {
			t.Errorf("decodeTag(tagValue(%q)) = %q", v, got)
		}
	}
	if tagValue("claude-code") != "claude-code" {
		t.Error("ordinary values must be stored as they are")
	}
}

func TestSlotsUniqueAndOverflow(t *testing.T) {
	s := newSlots(16)
	at := time.Date(2025, 1, 1, 0, 0, 0, 123000, time.UTC)
	sess := uuid.New()
	seen := map[[2]int]bool{}
	for i := range 2500 {
		op := tsdb.Operation{ID: uuid.New(), SessionID: sess, ToolName: "read", OperationMode: "full", ToolID: "x", CreatedAt: at}
		off, dup := s.assign(&op)
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
		s.assign(&op)
	}
	if len(s.used) > 16 {
		t.Fatalf("%d keys kept, bound 16", len(s.used))
	}
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

func joinBytes(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {"-1", 0}, {"junk", 0},
		{now.Add(90 * time.Second).Format(timeFormatHTTP), 90 * time.Second},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

const timeFormatHTTP = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestTimeRange(t *testing.T) {
	a := time.Date(2025, 1, 1, 10, 0, 0, 1500, time.UTC) // 1.5 µs
	// No whole microsecond lies in [1.5 µs, 1.5 µs]: no created_at can match.
	if lo, hi, ok := timeRange(&a, &a); ok {
		t.Fatalf("range [%v, %v) ok for a window holding no whole microsecond", lo, hi)
	}
	b := time.Date(2025, 1, 1, 10, 0, 0, 2000, time.UTC)
	lo, hi, ok := timeRange(&b, &b)
	if !ok || !lo.Equal(b) || !hi.Equal(b.Add(time.Microsecond)) {
		t.Fatalf("range [%v, %v) ok=%v for one whole microsecond", lo, hi, ok)
	}
}

func TestNoteVersion(t *testing.T) {
	s := &Store{}
	for _, tc := range []struct {
		v        string
		want, v1 bool
	}{{"1.8.3", false, true}, {"unknown", false, false}, {"v2.7.4", true, false}, {"2.0.0-beta", true, false}, {"v1.11.8", false, true}, {"3.0.1", true, false}} {
		s.noteVersion(http.Header{"X-Influxdb-Version": {tc.v}})
		if got := s.perSeries.Load(); got != tc.want {
			t.Errorf("version %q: per series %v, want %v", tc.v, got, tc.want)
		}
		if got := s.v1.Load(); got != tc.v1 {
			t.Errorf("version %q: InfluxQL %v, want %v", tc.v, got, tc.v1)
		}
	}
	s.noteVersion(http.Header{"X-Influxdb-Version": {"1.8.3"}})
	if src := s.opsSource(time.Unix(0, 0), time.Unix(1, 0), ""); !strings.Contains(src, "stop: 1970-01-01T00:00:00.999999999Z") {
		t.Errorf("1.x: range stop not 1 ns early:\n%s", src)
	}
}
