package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"

	"github.com/omnimemory/omnimemory-metrics/internal/bare"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestMain lets the test binary serve as the bench's bare server child, as
// the real binary does.
func TestMain(m *testing.M) {
	if os.Getenv(envRole) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	code := m.Run()
	if serviceBuilt {
		if bin, err := serviceBin(); err == nil {
			os.RemoveAll(filepath.Dir(bin))
		}
	}
	os.Exit(code)
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p50 of five is the median", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p95 of 1..100", ms(hundred...), 95, 95 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"tiny p is the min", ms(1, 2, 3), 0.001, time.Millisecond},
		{"p95 of ten is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 95, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarizeSorts(t *testing.T) {
	lat := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	s := summarize(lat)
	if s.Count != 5 || s.P50Ms != 3 || s.P95Ms != 5 || s.P99Ms != 5 || s.MaxMs != 5 {
		t.Errorf("summarize = %+v", s)
	}
	if z := summarize(nil); z != (latencyStats{}) {
		t.Errorf("summarize(nil) = %+v", z)
	}
}

// statusSample is a /proc/<pid>/status of Linux 6.x, trimmed.
const statusSample = `Name:	omnimemory-metr
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Pid:	4242
PPid:	4200
VmPeak:	 1983412 kB
VmSize:	 1917876 kB
VmLck:	       0 kB
VmHWM:	  131072 kB
VmRSS:	   98304 kB
RssAnon:	   61440 kB
RssFile:	   36864 kB
Threads:	9
voluntary_ctxt_switches:	1500
`

func TestStatusKB(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int64
		ok   bool
	}{
		{"VmRSS", 98304, true},
		{"VmHWM", 131072, true},
		{"RssAnon", 61440, true},
		{"Threads", 9, true}, // no unit: the number as it is
		{"VmSwap", 0, false},
		{"Name", 0, false},
	} {
		got, ok := statusKB(statusSample, tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("statusKB(%s) = %d, %v; want %d, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	if v, ok := statusKB("MemTotal:       24683904 kB\n", "MemTotal"); !ok || v != 24683904 {
		t.Errorf("meminfo MemTotal = %d, %v", v, ok)
	}
}

func TestRSSSamplerOfSelf(t *testing.T) {
	s := sampleRSS(os.Getpid(), 10*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	phase := s.Mark()
	overall := s.Stop()
	if phase <= 0 || overall < phase {
		t.Errorf("phase %d kB, overall %d kB", phase, overall)
	}
	if _, err := readStatusKB(os.Getpid(), "VmHWM"); err != nil {
		t.Error(err)
	}
	// The test binary's tree: itself, and any child it runs meanwhile.
	tree := sampleTreePSS(os.Getpid(), 10*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	if kb := tree.Stop(); kb <= 0 {
		t.Errorf("tree Pss %d kB", kb)
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
	if got := cpuModel(info); got != "AMD EPYC 7B13 64-Core Processor" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel("processor: 0\n"); got != "unknown" {
		t.Errorf("cpuModel without model = %q", got)
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0.5: "0.50 ms", 12.34: "12.3 ms", 1234.5: "1,235 ms"} {
		if got := fmtMs(in); got != want {
			t.Errorf("fmtMs(%v) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		c    check
		want string
	}{
		{newCheck("rate", 12345, 10000, false, false), "met (+23 %)"},
		{newCheck("rate", 3000, 10000, false, false), "missed (−70 %)"},
		{newCheck("share", 48, 50, false, true), "missed (−2.0 pts)"},
		{newCheck("share", 91.3, 80, false, true), "met (+11.3 pts)"},
		{newCheck("p95", 2, 50, true, false), "met (96 % under)"},
		{newCheck("p95", 120, 50, true, false), "missed (2.4× the ceiling)"},
		{newCheck("rss", 171, 150, true, false), "missed (+14 % over)"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c, got, tc.want)
		}
	}
	if got := speedup(100, 2); got != "50× faster" {
		t.Errorf("speedup = %q", got)
	}
	if got := speedup(1, 2); got != "2.0× slower" {
		t.Errorf("speedup = %q", got)
	}
}

// sampleResults is a fixed run, for the table's golden file.
func sampleResults() *benchResults {
	lat := func(p50, p95, p99 float64, n int) latencyStats {
		return latencyStats{Count: n, P50Ms: p50, P95Ms: p95, P99Ms: p99, MaxMs: p99 * 2}
	}
	ing := func(name string, rate float64, ops int64, l latencyStats) *ingestResult {
		return &ingestResult{Name: name, OpsPerSec: rate, Operations: ops, Requests: ops, Seconds: float64(ops) / rate, Latency: l, Stopped: "time"}
	}
	qs := func(p95 float64) []queryResult {
		var out []queryResult
		for i, qc := range queryCases {
			out = append(out, queryResult{queryCase: qc, Latency: lat(p95/2+float64(i), p95+float64(i), p95*2, 100)})
		}
		out[3].Capped = true
		return out
	}
	res := &benchResults{
		Date:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Machine:   machine{CPU: "AMD EPYC 7B13 64-Core Processor", Cores: 2, MemoryKB: 8 << 20, OS: "linux/amd64", LoadBefore: "0.12", LoadAfter: "1.95"},
		GoVersion: "go1.26.8",
		Service:   "omnimemory-metrics 0123456789ab",
		Command:   "omnimemory-load bench",
		Config: benchConfig{Ops: 2_000_000, Connections: 32, Duration: 10 * time.Second, Batch: 5000, BatchConnections: 4,
			Requests: 100, QueryBudget: 10 * time.Second, QueryTimeout: 30 * time.Second, QueryWrites: 50, StreamDuration: 5 * time.Second, Stores: []string{"sqlite", "influxdb", "postgresql"}},
		Bare:    ing("bare", 20000, 200000, lat(1.2, 3, 4.5, 200000)),
		Seconds: 401,
		Stores: []storeResult{
			{
				Store: "sqlite", Single: ing("embedded", 12000, 120000, lat(2.5, 6, 9, 120000)),
				Batch:   ing("embedded batches", 95000, 2_000_000, latencyStats{}),
				Queries: qs(4),
				Raw: []rawResult{
					{Range: "1h", Latency: lat(3, 4, 5, 100)}, {Range: "24h", Latency: lat(30, 40, 50, 100)},
					{Range: "7d", Latency: lat(300, 400, 500, 17)}, {Range: "30d", Latency: lat(1200, 1400, 1500, 5), Capped: true},
					{Range: "all", Latency: lat(1300, 1500, 1600, 4), Capped: true},
				},
				RSS:    rssResult{SingleKB: 40 << 10, BatchKB: 120 << 10, QueryKB: 60 << 10, MaxKB: 121 << 10, HWMKB: 122 << 10},
				Stream: &streamResult{Acked: 50000, Received: 50000, Latency: lat(0.5, 2, 4, 50000)},
			},
			{
				Store: "influxdb", Single: ing("InfluxDB", 4000, 40000, lat(7, 20, 40, 40000)),
				Batch:          ing("InfluxDB batches", 60000, 2_000_000, latencyStats{}),
				BatchReference: ing("line protocol", 100000, 2_000_000, latencyStats{}),
				DrainSeconds:   3,
				Queries:        qs(800),
				RSS:            rssResult{SingleKB: 30 << 10, BatchKB: 170 << 10, QueryKB: 80 << 10, MaxKB: 170 << 10, HWMKB: 171 << 10},
				ServerKB:       900 << 10,
			},
			{
				Store: "postgresql", Single: ing("PostgreSQL", 6000, 60000, lat(5, 9, 14, 60000)),
				Batch:          ing("PostgreSQL batches", 50000, 2_000_000, latencyStats{}),
				BatchReference: ing("COPY", 250000, 2_000_000, latencyStats{}),
				Queries:        qs(30),
				Raw: []rawResult{
					{Range: "1h", Latency: lat(2, 3, 4, 100)}, {Range: "24h", Latency: lat(20, 25, 30, 100)},
					{Range: "7d", Latency: lat(150, 180, 200, 50)}, {Range: "30d", Latency: lat(600, 700, 800, 9), Capped: true},
					{Range: "all", Latency: lat(650, 750, 850, 8), Capped: true},
				},
				RSS:      rssResult{SingleKB: 35 << 10, BatchKB: 110 << 10, QueryKB: 50 << 10, MaxKB: 110 << 10, HWMKB: 111 << 10},
				ServerKB: 400 << 10,
				Stream:   &streamResult{Acked: 30000, Received: 29990, Duplicates: 2, Latency: lat(1, 3, 1200, 29990)},
			},
		},
	}
	res.Stores[1].Queries[8] = queryResult{queryCase: queryCases[8], Errors: 1, TimedOut: 1, FirstError: "Client.Timeout exceeded"}
	res.Stores[1].Queries[10] = queryResult{queryCase: queryCases[10], Errors: 1, TimedOut: 1, FirstError: "Client.Timeout exceeded"}
	res.Rows = buildRows(res)
	return res
}

func TestRenderMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := renderMarkdown(&b, sampleResults()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "table.golden.md")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("table differs from %s (go test -update rewrites it):\n%s", golden, b.String())
	}
	// Every row has the seven cells.
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "| ") && strings.Count(line, " | ") != 6 {
			t.Errorf("row without 7 cells: %q", line)
		}
	}
}

func TestBuildRowsChecks(t *testing.T) {
	res := sampleResults()
	verdict := map[string]bool{}
	for _, r := range res.Rows {
		for _, c := range r.Checks {
			verdict[c.Name] = c.Met
		}
	}
	// Per check, the verdict of the last store that has it.
	for name, want := range map[string]bool{
		"single-op rate":                          false, // PostgreSQL's 6,000 < 10,000 (the embedded store's 12,000 met it)
		"single-op share of bare":                 false, // PostgreSQL's 30 % < 50 %
		"batch rate":                              false, // PostgreSQL's 50,000 < 100,000
		"batch share of line protocol":            false, // InfluxDB's 60 % < 80 % (a target of InfluxDB only)
		"tool-breakdown 1h p95":                   true,  // PostgreSQL's 30 ms
		"api-savings all p95":                     true,  // PostgreSQL's 38 ms (InfluxDB's had no answer)
		"service peak RSS (MB)":                   true,  // PostgreSQL service 111 MB
		"aggregate by file_path top 100, 30d p95": true,  // PostgreSQL's 40 ms, under its own 500 ms
		"stream operations missing or twice":      false, // PostgreSQL's 10 missing and 2 twice
		"stream p99 (ms)":                         false, // PostgreSQL's 1,200 ms
	} {
		if got, ok := verdict[name]; !ok || got != want {
			t.Errorf("%s: met=%v (present %v), want %v", name, got, ok, want)
		}
	}
	// InfluxDB is held to none of the rate targets; PostgreSQL to all the
	// embedded store's, and its batch row quotes its COPY reference and
	// its share of the line protocol, the InfluxDB store's target only.
	for _, r := range res.Rows {
		switch {
		case r.Store == "InfluxDB" && (r.Phase == "a) single-op" || r.Phase == "b) batch"):
			for _, c := range r.Checks {
				if c.Name == "single-op rate" || c.Name == "batch rate" {
					t.Errorf("InfluxDB row %q checks %s", r.Figure, c.Name)
				}
			}
		case r.Store == "InfluxDB" && strings.Contains(r.Figure, "by file_path"):
			// The custom aggregation's own target, on every store; no
			// answer misses it.
			if len(r.Checks) != 1 || r.Target != "p95 ≤ 500 ms" || r.Result != "missed (no answer)" {
				t.Errorf("InfluxDB row %q: target %q, result %q, %d checks", r.Figure, r.Target, r.Result, len(r.Checks))
			}
		case r.Store == "PostgreSQL" && r.Phase == "b) batch":
			if r.Reference != "20.0 % of COPY; 50.0 % of line protocol" || len(r.Checks) != 1 {
				t.Errorf("PostgreSQL batch row: reference %q, %d checks", r.Reference, len(r.Checks))
			}
		}
	}
}

func TestGeneratorBodies(t *testing.T) {
	end := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	g := newGenerator(7, end, 30*24*time.Hour)
	body := g.appendBatchJSON(nil, 7, 3, 500)
	var batch struct {
		Operations []bare.Operation `json:"operations"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		t.Fatalf("batch body is not JSON: %v\n%.300s", err, body)
	}
	if len(batch.Operations) != 500 {
		t.Fatalf("%d operations", len(batch.Operations))
	}
	tools, modes, clientsSeen := map[string]int{}, map[string]int{}, map[string]int{}
	for _, o := range batch.Operations {
		tools[o.ToolName]++
		modes[o.OperationMode]++
		clientsSeen[o.ToolID]++
		if o.CreatedAt == nil || o.CreatedAt.Before(end.Add(-30*24*time.Hour)) || !o.CreatedAt.Before(end) {
			t.Fatalf("created_at %v outside the 30 days before %v", o.CreatedAt, end)
		}
		if len(o.SessionID) != 36 || !json.Valid(o.Parameters) || o.TokensOriginal <= 0 || o.TokensActual < 0 {
			t.Fatalf("bad operation %+v", o)
		}
	}
	if len(tools) != 2 || len(modes) != 6 || len(clientsSeen) != 5 {
		t.Errorf("mix: tools %v, modes %v, clients %v", tools, modes, clientsSeen)
	}
	// The same batch is the same operations every time, and its line
	// protocol is one point per operation with the same timestamps.
	if again := g.appendBatchJSON(nil, 7, 3, 500); !bytes.Equal(again, body) {
		t.Error("batch 3 differs between two draws")
	}
	lines := strings.Split(strings.TrimSuffix(string(g.appendBatchLines(nil, 7, 3, 500)), "\n"), "\n")
	if len(lines) != 500 {
		t.Fatalf("%d lines", len(lines))
	}
	first := lines[0]
	if !strings.HasPrefix(first, "tool_operation,operation_mode="+batch.Operations[0].OperationMode+",session_id="+batch.Operations[0].SessionID) {
		t.Errorf("first line %q", first)
	}
	wantTS := batch.Operations[0].CreatedAt.UnixNano()
	if !strings.HasSuffix(first, " "+itoa(wantTS)) {
		t.Errorf("first line %q does not end with %d", first, wantTS)
	}
	// Single bodies decode as the bare handler decodes them, without created_at.
	for _, b := range singleBodies(1, 50) {
		var o bare.Operation
		if err := json.Unmarshal(b, &o); err != nil || o.CreatedAt != nil || o.ToolID == "" {
			t.Fatalf("single body %s: %v", b, err)
		}
	}
}

func itoa(v int64) string { return thousandsless(v) }

func thousandsless(v int64) string { return strings.ReplaceAll(thousands(v), ",", "") }

func TestUUIDString(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	u := uuidString(r)
	if len(u) != 36 || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) || strings.Count(u, "-") != 4 {
		t.Errorf("uuid %q", u)
	}
}

func TestBareHandler(t *testing.T) {
	srv := httptest.NewServer(bare.Handler())
	defer srv.Close()
	c := newClient(1, 5*time.Second)
	b, err := do(context.Background(), c, http.MethodPost, srv.URL+"/track/tool-operation", "application/json", singleBodies(1, 1)[0], http.StatusOK)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct{ Status, OperationID string }
	if err := json.Unmarshal(b, &struct {
		Status      *string `json:"status"`
		OperationID *string `json:"operation_id"`
	}{&reply.Status, &reply.OperationID}); err != nil || reply.Status != "success" || len(reply.OperationID) != 36 {
		t.Errorf("reply %s (%v)", b, err)
	}
	if _, err := do(context.Background(), c, http.MethodPost, srv.URL+"/track/tool-operation", "application/json", []byte("{"), http.StatusOK); err == nil {
		t.Error("a broken body was accepted")
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, u := range []string{"http://10.1.2.3:8003", "http://example.com", "https://127.0.0.1:8003", "ftp://127.0.0.1"} {
		if _, err := checkURL(u); err == nil {
			t.Errorf("checkURL(%q) accepted", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8003", "http://localhost:8003/", "http://[::1]:8003"} {
		if _, err := checkURL(u); err != nil {
			t.Errorf("checkURL(%q): %v", u, err)
		}
	}
	// The dialer itself refuses other addresses, whatever the URL says.
	c := newClient(1, 2*time.Second)
	_, err := do(context.Background(), c, http.MethodGet, "http://192.0.2.1:80/", "", nil, http.StatusOK)
	if !errors.Is(err, errNotLoopback) {
		t.Errorf("dial to 192.0.2.1: %v, want errNotLoopback", err)
	}
}

func TestRunLoadBounds(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		mu.Unlock()
		_, _ = io.WriteString(w, `{"status":"success","operation_id":"x"}`)
	}))
	defer srv.Close()
	c := newClient(4, 5*time.Second)
	send := singleSender(c, srv.URL, singleBodies(1, 8))

	byCount := runLoad(context.Background(), loadSpec{name: "count", conns: 4, maxRequests: 200, maxTime: time.Minute, opsPerReq: 1, maxErrors: 10, progress: io.Discard, send: send})
	if byCount.Operations != 200 || byCount.Stopped != "count" || byCount.Latency.Count != 200 || n != 200 {
		t.Errorf("count-bound phase: %+v (server saw %d)", byCount, n)
	}
	start := time.Now()
	byTime := runLoad(context.Background(), loadSpec{name: "time", conns: 4, maxRequests: 1 << 40, maxTime: 200 * time.Millisecond, opsPerReq: 1, maxErrors: 10, progress: io.Discard, send: send})
	if took := time.Since(start); byTime.Stopped != "time" || took > 5*time.Second || byTime.Operations == 0 {
		t.Errorf("time-bound phase: %+v after %v", byTime, took)
	}
	failing := runLoad(context.Background(), loadSpec{name: "errors", conns: 2, maxRequests: 1 << 40, maxTime: time.Minute, opsPerReq: 1, maxErrors: 10, progress: io.Discard,
		send: func(context.Context, int, int64) (int, error) { return 0, errors.New("boom") }})
	if failing.Stopped != "errors" || failing.FirstError != "boom" || failing.Errors < 10 {
		t.Errorf("failing phase: %+v", failing)
	}
}

// serviceBuilt: serviceBin was called (TestMain removes its folder).
var serviceBuilt bool

// serviceBin builds the service once for the smoke tests.
var serviceBin = sync.OnceValues(func() (string, error) {
	serviceBuilt = true
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "omnimemory-load-test-")
	if err != nil {
		return "", err
	}
	return buildService(context.Background(), root, dir)
})

func smokeConfig(t *testing.T, stores ...string) benchConfig {
	bin, err := serviceBin()
	if err != nil {
		t.Fatal(err)
	}
	return benchConfig{
		Ops: 2000, Connections: 8, Duration: 700 * time.Millisecond, SingleOps: 100_000, Batch: 500, BatchConnections: 2,
		SeedTimeout: 30 * time.Second, Requests: 3, QueryBudget: 2 * time.Second, QueryTimeout: 10 * time.Second,
		RawBudget: time.Second, Stores: stores, Seed: 1, ServiceBin: bin,
	}
}

// TestBenchSmokeSQLite runs the whole bench end to end at tiny sizes on the
// embedded store: every phase, every row, the table and the JSON.
func TestBenchSmokeSQLite(t *testing.T) {
	cfg := smokeConfig(t, "sqlite")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := runBench(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	s := res.store("sqlite")
	if res.Bare == nil || res.Bare.Operations == 0 || s == nil || s.Single.Operations == 0 {
		t.Fatalf("single-op phases: bare %+v, store %+v", res.Bare, s)
	}
	// Requests cut by the end of the single-op phase may have been stored
	// without being counted: at least every counted operation is visible.
	if s.Batch.Operations != cfg.Ops || s.Batch.Errors != 0 || s.Visible < cfg.Ops+s.Single.Operations || s.Visible > cfg.Ops+s.Single.Operations+int64(cfg.Connections) {
		t.Errorf("batch phase %+v, visible %d", s.Batch, s.Visible)
	}
	if len(s.Queries) != len(queryCases) || len(s.Raw) != 5 {
		t.Fatalf("%d query cases, %d raw windows", len(s.Queries), len(s.Raw))
	}
	for _, q := range s.Queries {
		if q.Errors != 0 || q.Latency.Count == 0 {
			t.Errorf("%s: %+v", q, q)
		}
	}
	if all := s.Raw[4]; all.Rows < s.Visible {
		t.Errorf("raw SQL over all time counts %d operations, the service %d", all.Rows, s.Visible)
	}
	if s.RSS.SingleKB == 0 || s.RSS.BatchKB == 0 || s.RSS.QueryKB == 0 || s.RSS.HWMKB == 0 {
		t.Errorf("rss %+v", s.RSS)
	}
	res.Rows = buildRows(res)
	var out bytes.Buffer
	if err := renderMarkdown(&out, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| a) single-op | bare net/http |", "| a) single-op | embedded |", "| b) batch | embedded |",
		"| c) query | embedded | api-savings all: p50 · p95 |", "| d) memory | embedded |", "raw SQL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Error(err)
	}
	assertNoChildren(t)
}

// TestBenchSmokeInfluxDB runs the bench at tiny sizes on a real InfluxDB
// 1.8.3, with the line-protocol reference.
func TestBenchSmokeInfluxDB(t *testing.T) {
	realtools.Require(t, "influxd")
	cfg := smokeConfig(t, "influxdb")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := runBench(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	s := res.store("influxdb")
	if s == nil || s.Single.Operations == 0 || s.Batch.Operations != cfg.Ops || s.BatchReference == nil || s.BatchReference.Operations != cfg.Ops {
		t.Fatalf("store %+v", s)
	}
	if s.Visible < cfg.Ops+s.Single.Operations || len(s.Queries) != len(queryCases) || s.ServerKB == 0 {
		t.Errorf("visible %d, %d query cases, influxd %d kB", s.Visible, len(s.Queries), s.ServerKB)
	}
	for _, q := range s.Queries {
		if q.Latency.Count == 0 {
			t.Errorf("%s: no answer: %s", q, q.FirstError)
		}
	}
	rows := buildRows(res)
	found := false
	for _, r := range rows {
		if r.Store == "InfluxDB line protocol" {
			found = true
		}
	}
	if !found {
		t.Error("no line-protocol row")
	}
	assertNoChildren(t)
}

// TestBenchSmokePostgreSQL runs the bench at tiny sizes on a real
// PostgreSQL 15 (durable settings), with the COPY and raw-SQL references and
// the server's memory.
func TestBenchSmokePostgreSQL(t *testing.T) {
	if _, err := realtools.FindPostgres(); err != nil {
		realtools.SkipOrFatal(t, err)
	}
	cfg := smokeConfig(t, "postgresql")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := runBench(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	s := res.store("postgresql")
	if s == nil || s.Single.Operations == 0 || s.Batch.Operations != cfg.Ops || s.Batch.Errors != 0 ||
		s.BatchReference == nil || s.BatchReference.Operations != cfg.Ops || s.BatchReference.Errors != 0 {
		t.Fatalf("store %+v", s)
	}
	if s.Visible < cfg.Ops+s.Single.Operations || s.Visible > cfg.Ops+s.Single.Operations+int64(cfg.Connections) {
		t.Errorf("visible %d of %d + %d", s.Visible, cfg.Ops, s.Single.Operations)
	}
	if len(s.Queries) != len(queryCases) || len(s.Raw) != 5 || s.ServerKB == 0 || s.RSS.HWMKB == 0 {
		t.Fatalf("%d query cases, %d raw windows, server %d kB, rss %+v", len(s.Queries), len(s.Raw), s.ServerKB, s.RSS)
	}
	for _, q := range s.Queries {
		if q.Errors != 0 || q.Latency.Count == 0 {
			t.Errorf("%s: %+v", q, q)
		}
	}
	if all := s.Raw[4]; all.Rows < s.Visible {
		t.Errorf("raw SQL over all time counts %d operations, the service %d", all.Rows, s.Visible)
	}
	res.Rows = buildRows(res)
	var out bytes.Buffer
	if err := renderMarkdown(&out, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| a) single-op | PostgreSQL |", "| b) batch | PostgreSQL COPY |", "% of COPY",
		"| c) query | PostgreSQL | api-savings all: p50 · p95 |", "raw SQL", "| d) memory | PostgreSQL server |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	assertNoChildren(t)
}

func assertNoChildren(t *testing.T) {
	t.Helper()
	children.mu.Lock()
	defer children.mu.Unlock()
	for _, c := range children.list {
		t.Errorf("child %s (pid %d) still registered", c.name, c.pid())
	}
}

func TestCommandsUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"bench", "--stores", "postgres"},
		{"bench", "--batch", "6000"},
		{"ingest", "--url", "http://10.0.0.1:8003"},
		{"query", "--requests", "0"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("run %q = %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

// TestIngestAndQueryCommands drives the standalone subcommands against a
// fake service on loopback.
func TestIngestAndQueryCommands(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/track/tool-operation":
			_, _ = io.WriteString(w, `{"status":"success","operation_id":"x"}`)
		default:
			_, _ = io.WriteString(w, `{}`)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"ingest", "--url", srv.URL, "--connections", "4", "--ops", "300"}, &out, &errb); code != 0 {
		t.Fatalf("ingest: %d %s", code, errb.String())
	}
	if code := run(context.Background(), []string{"ingest", "--url", srv.URL, "--connections", "2", "--ops", "1200", "--batch", "500"}, &out, &errb); code != 0 {
		t.Fatalf("ingest batches: %d %s", code, errb.String())
	}
	if code := run(context.Background(), []string{"query", "--url", srv.URL, "--requests", "2"}, &out, &errb); code != 0 {
		t.Fatalf("query: %d %s", code, errb.String())
	}
	if got["/track/tool-operation"] != 300 || got["/track/tool-operations"] != 3 || got["/metrics/tool-breakdown"] != 8 || got["/metrics/api-savings"] != 10 {
		t.Errorf("requests %v", got)
	}
	if !strings.Contains(out.String(), "| rate |") || !strings.Contains(out.String(), "| api-savings | all | 2 |") {
		t.Errorf("summaries:\n%s", out.String())
	}
}

func TestInfluxCount(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int64
		ok   bool
	}{
		{`{"results":[{"statement_id":0,"series":[{"name":"tool_operation","columns":["time","count"],"values":[["1970-01-01T00:00:00Z",2000123]]}]}]}`, 2000123, true},
		{`{"results":[{"statement_id":0}]}`, 0, true},
		{`{"results":[{"statement_id":0,"error":"database not found: x"}]}`, 0, false},
		{`not json`, 0, false},
	} {
		got, err := influxCount([]byte(tc.body))
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("influxCount(%s) = %d, %v", tc.body, got, err)
		}
	}
}

// TestBarOfUnknownLengthFromManyGoroutines adds to a bar of unknown length
// (a run bounded by time) from several goroutines, the first Add a while
// after the bar is made (a slow first answer), as the load phases do: under
// the race detector it fails if the bar's own animation reads its state
// unlocked.
func TestBarOfUnknownLengthFromManyGoroutines(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	bar := newBar(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}), -1, "ops")
	time.Sleep(250 * time.Millisecond)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_ = bar.Add(1)
				time.Sleep(60 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	_ = bar.Finish()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(out.String(), "(20/-") {
		t.Errorf("the bar shows %q, want 20 ops counted", out.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestQueriesRunPastAColdFirstAnswer: a case whose first answer alone
// outlasts the budget still runs minQueryRequests requests, so that its
// p95 is not that first answer; a case of quick answers runs them all.
func TestQueriesRunPastAColdFirstAnswer(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			time.Sleep(300 * time.Millisecond) // the cold first answer
		}
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	out, err := runQueries(t.Context(), srv.URL, querySpec{requests: 50, budget: 100 * time.Millisecond, progress: io.Discard, label: "q"})
	if err != nil {
		t.Fatal(err)
	}
	first := out[0]
	if first.Latency.Count != minQueryRequests || !first.Capped {
		t.Errorf("the case of the cold answer ran %d requests (capped %v), want %d, capped", first.Latency.Count, first.Capped, minQueryRequests)
	}
	if first.Latency.P95Ms >= 300 || first.Latency.MaxMs < 300 {
		t.Errorf("p95 %v ms, slowest %v ms: want the cold answer as the slowest only", first.Latency.P95Ms, first.Latency.MaxMs)
	}
}
