package query

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/textfmt"
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

func TestTimeRange(t *testing.T) {
	a := time.Date(2025, 1, 1, 10, 0, 0, 1500, time.UTC) // 1.5 µs
	// No whole microsecond lies in [1.5 µs, 1.5 µs]: no created_at can match.
	if lo, hi, ok := TimeRange(&a, &a); ok {
		t.Fatalf("range [%v, %v) ok for a window holding no whole microsecond", lo, hi)
	}
	b := time.Date(2025, 1, 1, 10, 0, 0, 2000, time.UTC)
	lo, hi, ok := TimeRange(&b, &b)
	if !ok || !lo.Equal(b) || !hi.Equal(b.Add(time.Microsecond)) {
		t.Fatalf("range [%v, %v) ok=%v for one whole microsecond", lo, hi, ok)
	}
}

func TestNoteVersion(t *testing.T) {
	s := &Reader{}
	for _, tc := range []struct {
		v        string
		want, v1 bool
	}{{"1.8.3", false, true}, {"unknown", false, false}, {"v2.7.4", true, false}, {"2.0.0-beta", true, false}, {"v1.11.8", false, true}, {"3.0.1", true, false}} {
		s.NoteVersion(http.Header{"X-Influxdb-Version": {tc.v}})
		if got := s.perSeries.Load(); got != tc.want {
			t.Errorf("version %q: per series %v, want %v", tc.v, got, tc.want)
		}
		if got := s.v1.Load(); got != tc.v1 {
			t.Errorf("version %q: InfluxQL %v, want %v", tc.v, got, tc.v1)
		}
	}
	s.NoteVersion(http.Header{"X-Influxdb-Version": {"1.8.3"}})
	if src := s.opsSource(time.Unix(0, 0), time.Unix(1, 0), ""); !strings.Contains(src, "stop: 1970-01-01T00:00:00.999999999Z") {
		t.Errorf("1.x: range stop not 1 ns early:\n%s", src)
	}
}

// TestFirstReadsWaitForTheVersion starts reads of a new Reader at once
// against a server whose /ping is slow: every read must wait for the
// version and take the path of 1.x (InfluxQL on /query), none Flux.
func TestFirstReadsWaitForTheVersion(t *testing.T) {
	var pings, influxQL, flux atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Influxdb-Version", "1.8.3")
		switch r.URL.Path {
		case "/ping":
			pings.Add(1)
			time.Sleep(200 * time.Millisecond)
			w.WriteHeader(http.StatusNoContent)
		case "/query":
			influxQL.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"results":[{"statement_id":0}]}`))
		default:
			flux.Add(1)
			http.Error(w, "Flux on a 1.x server: the version was not waited for", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	r := New(Options{URL: srv.URL, Org: "o", Bucket: "db/rp", QueryTimeout: 5 * time.Second, HTTP: srv.Client()})
	defer r.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.SpendBreakdown(context.Background(), tsdb.Window{End: time.Now()}); err != nil {
				t.Errorf("read: %v", err)
			}
		}()
	}
	wg.Wait()
	if pings.Load() != 1 || flux.Load() != 0 || influxQL.Load() != 8 {
		t.Errorf("%d pings, %d InfluxQL and %d Flux queries; want 1, 8 and 0", pings.Load(), influxQL.Load(), flux.Load())
	}
}

// TestReadBudgetCountsReadsOnly: a read budget's context ends once the
// time outside its pauses reaches the bound, and never during a pause.
func TestReadBudgetCountsReadsOnly(t *testing.T) {
	ctx, budget, cancel := withReadBudget(context.Background(), time.Second)
	defer cancel()
	budget.pause()
	time.Sleep(1500 * time.Millisecond) // more than the budget, paused
	if err := ctx.Err(); err != nil {
		t.Fatalf("the context ended during a pause: %v", err)
	}
	budget.resume()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the context did not end once the reads took the budget")
	}
}

// TestDocsQuoteTheInfluxQLReads: the figures the docs quote by hand about
// the reads of lists and exports on 1.x are this package's.
func TestDocsQuoteTheInfluxQLReads(t *testing.T) {
	for file, want := range map[string]string{
		"influxdb.md": fmt.Sprintf("for pages deeper than %s matches", textfmt.Thousands(qlListMax)),
		"api.md":      fmt.Sprintf("on 1.x each InfluxQL query reads up to %d pages of one time window", exportQLPages),
	} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(b)), " "), want) {
			t.Errorf("docs/%s does not say %q", file, want)
		}
	}
}
