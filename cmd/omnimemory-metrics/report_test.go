package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer/legacytest"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// runReportCmd runs `omnimemory-metrics report args...` in this process.
func runReportCmd(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code, ok := runCommand(context.Background(), append([]string{"report"}, args...), testProc(vars, &out, &errOut, reportNow))
	if !ok {
		t.Fatal("report is not a command")
	}
	return code, out.String(), errOut.String()
}

// reportNow is the clock runReportCmd hands the report (the real one when
// nil).
var reportNow func() time.Time

// fixReportClock sets the clock of the reports a test runs.
func fixReportClock(t *testing.T, now time.Time) {
	t.Helper()
	reportNow = func() time.Time { return now }
	t.Cleanup(func() { reportNow = nil })
}

// reportService serves the API over store in this process, wired as serve
// wires it, with the clock now; it answers its URL.
func reportService(t *testing.T, store tsdb.Store, now time.Time) string {
	t.Helper()
	clock := func() time.Time { return now }
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	svc := exporter.New(store, exporter.Options{Pricing: exporter.Pricing{PerThousandUSD: 0.015}, Registerer: reg, Now: clock, Logger: logger})
	srv := httptest.NewServer(handlers.New(svc, handlers.Options{
		Gatherer: reg, Registerer: reg, CORSOrigins: []string{"*"}, Logger: logger,
	}))
	t.Cleanup(func() {
		srv.Close()
		_ = svc.Close(context.Background())
	})
	return srv.URL
}

// sampleNow is the clock of the sample report.
var sampleNow = time.Date(2025, 1, 14, 12, 0, 0, 0, time.UTC)

// sampleOperations are the five operations of the specification's sample
// (read full/overview/symbol, search semantic/tri_index), made in the hour
// before sampleNow.
func sampleOperations() []tsdb.Operation {
	session := uuid.MustParse("123e4567-e89b-12d3-a456-426614174000")
	mk := func(i int, tool, mode string, orig, actual int64, rt float64) tsdb.Operation {
		op := tsdb.Operation{ID: uuid.NewSHA1(session, []byte{byte(i)}), SessionID: session, ToolName: tool, OperationMode: mode,
			Parameters: json.RawMessage(`{"compress":true}`), TokensOriginal: orig, TokensActual: actual, TokensPrevented: orig - actual,
			ResponseTimeMs: rt, ToolID: "claude-code", CreatedAt: sampleNow.Add(-time.Duration(50-10*i) * time.Minute)}
		if tool == api.ToolRead {
			fp := "src/main.py"
			op.FilePath = &fp
		}
		return op
	}
	return []tsdb.Operation{
		mk(0, "read", "full", 5000, 5000, 150),
		mk(1, "read", "overview", 5000, 500, 110.5),
		mk(2, "read", "symbol", 8000, 800, 95.2),
		mk(3, "search", "semantic", 50000, 5000, 250.3),
		mk(4, "search", "tri_index", 30000, 3000, 180.4),
	}
}

// TestReportOfTheSpecSample prints the report of the specification's five
// sample operations in every format: the golden files hold it, and the
// report from a running service (--url) is byte for byte the report read
// from the store's file, in every range.
func TestReportOfTheSpecSample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	store := openSQLite(t, path)
	if err := store.WriteOperations(context.Background(), sampleOperations()); err != nil {
		t.Fatal(err)
	}
	// What Claude Code reported spending in the same hour: 2.5 USD beside
	// the 1.2555 saved, a savings share of 33.43 %.
	if err := store.WriteSpend(context.Background(), []tsdb.SpendPoint{
		{ID: uuid.NewSHA1(uuid.Nil, []byte("spend-1")), ToolID: "claude-code", Model: "claude-sonnet-4", Time: sampleNow.Add(-30 * time.Minute),
			CostUSD: 2.25, Tokens: tsdb.Tokens{Input: 40000, Output: 3000, CacheRead: 120000}},
		{ID: uuid.NewSHA1(uuid.Nil, []byte("spend-2")), ToolID: "claude-code", Model: "claude-haiku", Time: sampleNow.Add(-20 * time.Minute),
			CostUSD: 0.25, Tokens: tsdb.Tokens{Input: 9000, CacheCreation: 700}},
	}); err != nil {
		t.Fatal(err)
	}
	fixReportClock(t, sampleNow)
	base := reportService(t, store, sampleNow)
	vars := map[string]string{"SQLITE_DB_PATH": path}
	for _, format := range []string{"table", "markdown", "json"} {
		for _, r := range exporter.SavingsRanges {
			code, fromFile, errOut := runReportCmd(t, vars, "--range", string(r.Name), "--format", format)
			if code != 0 {
				t.Fatalf("%s %s from the file: exit %d: %s", format, r.Name, code, errOut)
			}
			code, fromService, errOut := runReportCmd(t, vars, "--range", string(r.Name), "--format", format, "--url", base)
			if code != 0 {
				t.Fatalf("%s %s from the service: exit %d: %s", format, r.Name, code, errOut)
			}
			if fromFile != fromService {
				t.Errorf("%s %s: the file and the service differ:\n%s\n---\n%s", format, r.Name, fromFile, fromService)
			}
			if format != "json" {
				for _, figure := range []string{"98,000", "14,300", "83,700", "$1.47", "$0.2145", "$1.2555", "85.41 %",
					"$2.50", "33.43 %", "49,000", "120,000", "claude-sonnet-4"} {
					if !strings.Contains(fromFile, figure) {
						t.Errorf("%s %s: no %s in\n%s", format, r.Name, figure, fromFile)
					}
				}
			}
			if r.Name != "24h" {
				continue
			}
			ext := map[string]string{"table": "txt", "markdown": "md", "json": "json"}[format]
			golden := filepath.Join("testdata", "report_sample_24h."+ext)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(fromFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run the test with -update to write it)", err)
			}
			if string(want) != fromFile {
				t.Errorf("%s differs from the report:\n%s", golden, fromFile)
			}
		}
	}
	var rep report
	_, out, _ := runReportCmd(t, vars, "--format", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	tot := rep.Totals
	if tot.Operations != 5 || tot.TokensOriginal != 98000 || tot.TokensActual == nil || *tot.TokensActual != 14300 || tot.TokensPrevented != 83700 ||
		tot.CostBaseline != 1.47 || tot.CostActual != 0.2145 || tot.CostSaved != 1.2555 || tot.SavingsPercentage != 85.41 {
		t.Errorf("json totals %+v", tot)
	}
}

// TestReportFromTheServiceIsTheReportFromTheFile imports a database of the
// original service and compares the reports of every range, format and
// tool filter, from a running service and from the file. The one exception
// is "all" over more than 30 days of history: the service answers
// /metrics/tool-breakdown for 30 days at most, so the report from it leaves
// out what only that answer gives, while the store gives all of it.
func TestReportFromTheServiceIsTheReportFromTheFile(t *testing.T) {
	dir := t.TempDir()
	db := legacytest.Build(t, dir, legacyOps)
	path := filepath.Join(dir, "metrics.db")
	vars := map[string]string{"SQLITE_DB_PATH": path}
	if code, out, errOut := runImportCmd(t, vars, "--from", db.Path, "--quiet"); code != 0 {
		t.Fatalf("import: exit %d: %s%s", code, out, errOut)
	}
	store := openSQLite(t, path)
	fixReportClock(t, db.Now)
	base := reportService(t, store, db.Now)
	for _, format := range []string{"table", "markdown", "json"} {
		for _, r := range exporter.SavingsRanges {
			for _, tool := range []string{"", "cursor", "nobody"} {
				args := []string{"--range", string(r.Name), "--format", format, "--tool-id", tool}
				code, fromFile, errOut := runReportCmd(t, vars, args...)
				if code != 0 {
					t.Fatalf("%v from the file: exit %d: %s", args, code, errOut)
				}
				code, fromService, errOut := runReportCmd(t, vars, append(args, "--url", base+"/")...)
				if code != 0 {
					t.Fatalf("%v from the service: exit %d: %s", args, code, errOut)
				}
				if r.Name == "all" && db.HasOlder(tool, db.Now.Add(-exporter.Range30d.Duration)) {
					missing := "n/a"
					if format == "json" {
						missing = `"tokens_actual": null`
					}
					if strings.Contains(fromFile, missing) || !strings.Contains(fromService, missing) {
						t.Errorf("%v: the service's report should lack the breakdown of all time, the file's have it:\n%s\n---\n%s", args, fromFile, fromService)
					}
					continue
				}
				if fromFile != fromService {
					t.Errorf("%v: the file and the service differ:\n%s\n---\n%s", args, fromFile, fromService)
				}
			}
		}
	}
	_, out, _ := runReportCmd(t, vars, "--range", "30d")
	t.Logf("the 30-day report of the imported database:\n%s", out)
}

// TestReportWhileTheServiceWrites reads the store's file while the service
// runs on it and takes operations, and asks the service itself.
func TestReportWhileTheServiceWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	vars := map[string]string{"SQLITE_DB_PATH": path, "OMNIMEMORY_API_TOKEN": "s3cret"}
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, vars)
	client := &http.Client{Timeout: 10 * time.Second}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	posted := 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/track/tool-operation", strings.NewReader(
					`{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"read","operation_mode":"symbol",
					"tokens_original":5000,"tokens_actual":500,"response_time_ms":3.5,"tool_id":"claude-code"}`))
				req.Header.Set("Authorization", "Bearer s3cret")
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					posted++
					mu.Unlock()
				}
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Second)
	reports := 0
	for time.Now().Before(deadline) {
		code, out, errOut := runReportCmd(t, vars, "--range", "1h", "--format", "json")
		if code != 0 {
			t.Fatalf("report from the file while the service writes: exit %d: %s", code, errOut)
		}
		var rep report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Totals.TokensPrevented != rep.Totals.Operations*4500 {
			t.Errorf("an inconsistent report: %+v", rep.Totals)
		}
		reports++
	}
	close(stop)
	wg.Wait()
	code, out, errOut := runReportCmd(t, vars, "--range", "1h", "--url", base, "--format", "json")
	if code != 0 {
		t.Fatalf("report from the service with the token of the environment: exit %d: %s", code, errOut)
	}
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Operations != int64(posted) {
		t.Errorf("the service reports %d operations, %d were posted", rep.Totals.Operations, posted)
	}
	code, _, errOut = runReportCmd(t, map[string]string{}, "--url", base, "--token", "wrong")
	if code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("a wrong token: exit %d, %s", code, errOut)
	}
	t.Logf("%d reports read from the file while %d operations were posted", reports, posted)
}

// TestReportCommandLine: bad flags exit 2; a service or store that cannot
// answer exits 1 within the timeout.
func TestReportCommandLine(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"SQLITE_DB_PATH": filepath.Join(dir, "missing.db")}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--range", "2d"}, 2, "--range"},
		{[]string{"--format", "yaml"}, 2, "--format"},
		{[]string{"--url", "localhost:8003"}, 2, "--url"},
		{[]string{"--timeout", "0s"}, 2, "--timeout"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"--cost-per-1k-tokens", "cheap"}, 2, "--cost-per-1k-tokens"},
		{nil, 1, "no embedded store at"},
		{[]string{"--url", closed.URL}, 1, "asking the service"},
		{[]string{"--url", slow.URL, "--timeout", "300ms"}, 1, "asking the service"},
	} {
		start := time.Now()
		code, out, errOut := runReportCmd(t, vars, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("report %v: exit %d, %q%q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("report %v took %v", tc.args, took)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !os.IsNotExist(err) {
		t.Errorf("the report created the store it did not find (%v)", err)
	}
	var out bytes.Buffer
	if code, _ := runCommand(context.Background(), []string{"help"}, testProc(nil, &out, &out, nil)); code != 0 ||
		!strings.Contains(out.String(), "omnimemory-metrics import") || !strings.Contains(out.String(), "omnimemory-metrics report") {
		t.Errorf("help: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code, _ := runCommand(context.Background(), []string{"help", "report"}, testProc(nil, &out, &out, nil)); code != 0 || !strings.Contains(out.String(), "-tool-id") {
		t.Errorf("help report: exit %d\n%s", code, out.String())
	}
	if code, ok := runCommand(context.Background(), []string{"imprt"}, testProc(nil, &out, &out, nil)); !ok || code != 2 {
		t.Errorf("an unknown command: exit %d (%v)", code, ok)
	}
}
