package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// TestMain lets a test run this binary as the real service: the child
// process runs main() when OMNIMEMORY_TEST_RUN_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("OMNIMEMORY_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{os.Args[0]}, strings.Fields(os.Getenv("OMNIMEMORY_TEST_ARGS"))...)
		main()
		return
	}
	os.Exit(realtools.RunMain(m))
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// testProc is a process with the environment vars, the given streams and
// the clock now (the real clock when nil).
func testProc(vars map[string]string, stdout, stderr io.Writer, now func() time.Time) proc {
	if now == nil {
		now = time.Now
	}
	return proc{getenv: env(vars), stdout: stdout, stderr: stderr, now: now}
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if c.Listen != ":8003" || c.DBType != "sqlite" || c.SQLitePath != filepath.Join(home, ".omnimemory/metrics.db") ||
		c.InfluxURL != "http://localhost:8086" || c.InfluxBucket != "omnimemory" || c.InfluxToken != "" || c.InfluxOrg != "" ||
		c.CostPer1K != 0.015 || len(c.CORSOrigins) != 1 || c.CORSOrigins[0] != "*" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigEnvironmentAndFlags(t *testing.T) {
	vars := map[string]string{
		"OMNIMEMORY_LISTEN": "127.0.0.1:9000", "OMNIMEMORY_DB_TYPE": "influxdb", "SQLITE_DB_PATH": "/tmp/x.db",
		"INFLUXDB_URL": "http://influx:8086/", "INFLUXDB_TOKEN": "secret", "INFLUXDB_ORG": "acme",
		"INFLUXDB_BUCKET": "db/autogen", "OMNIMEMORY_COST_PER_1K_TOKENS": "0.003",
		"OMNIMEMORY_CORS_ORIGINS": "http://localhost:8004, https://dash.example",
	}
	c, err := loadConfig(nil, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.DBType != "influxdb" || c.SQLitePath != "/tmp/x.db" || c.InfluxURL != "http://influx:8086" ||
		c.InfluxToken != "secret" || c.InfluxOrg != "acme" || c.InfluxBucket != "db/autogen" || c.CostPer1K != 0.003 ||
		strings.Join(c.CORSOrigins, " ") != "http://localhost:8004 https://dash.example" {
		t.Errorf("from the environment: %+v", c)
	}
	// A flag wins over its variable.
	c, err = loadConfig([]string{"--listen", ":9100", "--db-type=sqlite", "--cost-per-1k-tokens", "0.01",
		"--cors-origins", "*", "--sqlite-db-path", "/tmp/y.db", "--influxdb-bucket", "b2", "--influxdb-token", "t2"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9100" || c.DBType != "sqlite" || c.CostPer1K != 0.01 || c.CORSOrigins[0] != "*" ||
		c.SQLitePath != "/tmp/y.db" || c.InfluxBucket != "b2" || c.InfluxToken != "t2" || c.InfluxOrg != "acme" {
		t.Errorf("flags over the environment: %+v", c)
	}
}

func TestBadSettingStopsStartupWithOneLine(t *testing.T) {
	cases := []struct {
		name string
		args []string
		vars map[string]string
		want string
	}{
		{"cost not a number", nil, map[string]string{"OMNIMEMORY_COST_PER_1K_TOKENS": "cheap"}, "OMNIMEMORY_COST_PER_1K_TOKENS"},
		{"cost negative flag", []string{"--cost-per-1k-tokens=-1"}, nil, "--cost-per-1k-tokens"},
		{"db type", nil, map[string]string{"OMNIMEMORY_DB_TYPE": "postgres"}, "OMNIMEMORY_DB_TYPE"},
		{"listen", nil, map[string]string{"OMNIMEMORY_LISTEN": "8003"}, "OMNIMEMORY_LISTEN"},
		{"influx url", nil, map[string]string{"INFLUXDB_URL": "localhost:8086"}, "INFLUXDB_URL"},
		{"cors origin", nil, map[string]string{"OMNIMEMORY_CORS_ORIGINS": "localhost"}, "OMNIMEMORY_CORS_ORIGINS"},
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"postgresql without a URL", nil, map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql"}, "DATABASE_URL"},
		{"database url scheme", nil, map[string]string{"DATABASE_URL": "mysql://u:hunter2-pw@h/db"}, "DATABASE_URL"},
		{"database url flag", []string{"--database-url", "http://u:hunter2-pw@h/db"}, nil, "--database-url"},
		{"postgresql unreachable", []string{"--db-type", "postgresql", "--database-url", "postgresql://u:hunter2-pw@127.0.0.1:1/db"}, nil, "PostgreSQL"},
		{"retention negative", nil, map[string]string{"OMNIMEMORY_RETENTION": "-90d"}, "OMNIMEMORY_RETENTION"},
		{"retention not a duration", []string{"--retention", "ninety days"}, nil, "--retention"},
		{"retention under an hour", nil, map[string]string{"OMNIMEMORY_RETENTION": "30m"}, "OMNIMEMORY_RETENTION"},
		{"retention on influxdb", nil, map[string]string{"OMNIMEMORY_DB_TYPE": "influxdb", "OMNIMEMORY_RETENTION": "90d"}, "InfluxDB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			vars := map[string]string{"INFLUXDB_TOKEN": "hunter2-secret"}
			for k, v := range tc.vars {
				vars[k] = v
			}
			code := run(context.Background(), tc.args, testProc(vars, io.Discard, &stderr, nil), nil)
			if want := 2; tc.name == "postgresql unreachable" {
				if code == 0 {
					t.Errorf("exit code 0 with no PostgreSQL to reach")
				}
			} else if code != want {
				t.Errorf("exit code %d, want %d", code, want)
			}
			out := stderr.String()
			if !strings.Contains(out, tc.want) {
				t.Errorf("message %q does not name %s", out, tc.want)
			}
			if tc.name != "unknown flag" && strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("message is not one line: %q", out)
			}
			if strings.Contains(out, "hunter2") {
				t.Errorf("message leaks a secret: %q", out)
			}
		})
	}
}

// startInProcess runs the service in this process on a free port and answers
// its URL; the service stops with the test.
func startInProcess(t *testing.T, args []string, vars map[string]string) string {
	t.Helper()
	return startInProcessAt(t, args, vars, nil)
}

// startInProcessAt is startInProcess with the clock now (the real clock
// when nil).
func startInProcessAt(t *testing.T, args []string, vars map[string]string, now func() time.Time) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() { done <- run(ctx, args, testProc(vars, io.Discard, &stderr, now), ready) }()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("service exited %d: %s", code, stderr.String())
			}
		})
		return "http://" + addr
	case code := <-done:
		cancel()
		t.Fatalf("service exited %d before serving: %s", code, stderr.String())
	}
	return ""
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func postOperation(client *http.Client, base string, tokens int) (string, int, error) {
	body := fmt.Sprintf(`{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"read","operation_mode":"symbol",
		"tokens_original":%d,"tokens_actual":100,"response_time_ms":3.5,"tool_id":"claude-code"}`, tokens)
	resp, err := client.Post(base+"/track/tool-operation", "application/json", strings.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out["operation_id"], resp.StatusCode, nil
}

func TestServiceServesOnTheConfiguredStoreAndPrice(t *testing.T) {
	dir := t.TempDir()
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0", "--cost-per-1k-tokens", "0.01"},
		map[string]string{"SQLITE_DB_PATH": filepath.Join(dir, "nested", "metrics.db"), "OMNIMEMORY_LISTEN": "bad"})
	if _, code, err := postOperation(http.DefaultClient, base, 1100); err != nil || code != 200 {
		t.Fatalf("post: %d %v", code, err)
	}
	resp, err := http.Get(base + "/metrics/api-savings?time_range=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sv map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&sv)
	if sv["total_cost_saved"] != 0.01 {
		t.Errorf("total_cost_saved %v at 0.01/1k for 1000 tokens", sv["total_cost_saved"])
	}
	if _, err := os.Stat(filepath.Join(dir, "nested", "metrics.db")); err != nil {
		t.Errorf("the store file was not created in its new folder: %v", err)
	}
}

func TestExpositionPassesPromtoolCheckMetrics(t *testing.T) {
	promtool := realtools.Require(t, "promtool")
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, map[string]string{"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "m.db")})
	for i := 0; i < 3; i++ {
		if _, code, err := postOperation(http.DefaultClient, base, 1000*(i+1)); err != nil || code != 200 {
			t.Fatalf("post: %d %v", code, err)
		}
	}
	http.Get(base + "/metrics/tool-breakdown") //nolint:errcheck // only to fill the request metrics
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"omnimemory_tool_operations_total", "omnimemory_tool_tokens_original_total",
		"omnimemory_tool_tokens_actual_total", "omnimemory_tool_tokens_prevented_total", "omnimemory_tool_operation_duration_seconds_bucket",
		"omnimemory_tool_operation_savings_ratio_bucket", "omnimemory_cost_per_1k_tokens_usd", "omnimemory_http_requests_total",
		"omnimemory_ingest_commit_duration_seconds", "omnimemory_ingest_batch_size", "omnimemory_ingest_queue_depth", "go_goroutines", "process_resident_memory_bytes"} {
		if !bytes.Contains(exposition, []byte(name)) {
			t.Errorf("exposition lacks %s", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// child is the real service binary (this test binary running main) in a
// process of its own.
type child struct {
	cmd  *exec.Cmd
	base string
	log  *syncBuffer
}

// startChild runs the service with the extra environment vars and waits
// until it says where it serves.
func startChild(t *testing.T, vars ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "OMNIMEMORY_TEST_RUN_MAIN=1", "OMNIMEMORY_TEST_ARGS=--listen 127.0.0.1:0"), vars...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &child{cmd: cmd, log: &syncBuffer{}}
	addrRe := regexp.MustCompile(`addr=(\S+)`)
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		c.log.Write([]byte(lines.Text() + "\n"))
		if m := addrRe.FindStringSubmatch(lines.Text()); m != nil {
			c.base = "http://" + m[1]
			break
		}
	}
	if c.base == "" {
		t.Fatalf("the service never said where it serves: %s", c.log.String())
	}
	go func() { _, _ = io.Copy(c.log, stderr) }()
	return c
}

// load posts operations from 16 connections until stop is closed and
// answers the ids acknowledged with 200.
func load(base string, stop <-chan struct{}) func() []string {
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id, code, err := postOperation(client, base, 1000+w*100000+i)
				if err != nil {
					time.Sleep(time.Millisecond) // refused once the service is gone
					continue
				}
				if code == 200 {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		}(w)
	}
	return func() []string {
		wg.Wait()
		return acked
	}
}

// storedIDs answers the id of every operation the service at base holds,
// with how many times it is stored.
func storedIDs(t *testing.T, base string) map[string]int {
	t.Helper()
	// One streamed export, not pages of the list: an offset page on
	// InfluxDB reads every point before it, so paging tens of thousands
	// of operations costs minutes.
	client := &http.Client{Timeout: 5 * time.Minute}
	resp, err := client.Get(base + "/metrics/tool-operations/export?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %s", resp.Status)
	}
	ids := map[string]int{}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			ID string `json:"id"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			return ids
		} else if err != nil {
			t.Fatalf("export: %v", err)
		}
		if line.ID == "" {
			t.Fatalf("export: a line without an id")
		}
		ids[line.ID]++
	}
}

// TestSIGTERMLosesNoAcknowledgedOperation runs the real binary, keeps it
// busy with concurrent POSTs, sends SIGTERM, and checks that every operation
// answered 200 is in the store file afterwards.
func TestSIGTERMLosesNoAcknowledgedOperation(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "metrics.db")
	c := startChild(t, "SQLITE_DB_PATH="+dbPath)
	stop := make(chan struct{})
	wait := load(c.base, stop)
	time.Sleep(500 * time.Millisecond)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("service exited with %v: %s", err, c.log.String())
		}
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		t.Fatal("service did not stop within 60s of SIGTERM")
	}
	close(stop)
	acked := wait()
	if len(acked) == 0 {
		t.Fatal("no operation was acknowledged before SIGTERM")
	}
	store, err := sqlite.Open(context.Background(), dbPath, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	page, err := store.QueryOperations(context.Background(), tsdb.OperationFilter{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[uuid.UUID]bool{}
	for _, op := range page.Operations {
		stored[op.ID] = true
	}
	for _, id := range acked {
		if !stored[uuid.MustParse(id)] {
			t.Errorf("acknowledged operation %s was lost", id)
		}
	}
	t.Logf("%d operations acknowledged before SIGTERM, %d stored", len(acked), len(stored))
}

// TestTracesAreExportedByOTLPWhenConfigured points the standard
// OTEL_EXPORTER_OTLP_ENDPOINT at a local receiver and checks that the spans
// of a request reach it by the time the service has stopped.
func TestTracesAreExportedByOTLPWhenConfigured(t *testing.T) {
	var mu sync.Mutex
	var posts int
	var bodyBytes int
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		if r.URL.Path == "/v1/traces" {
			posts++
			bodyBytes += len(data)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	t.Run("service", func(t *testing.T) {
		base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, map[string]string{
			"SQLITE_DB_PATH":              filepath.Join(t.TempDir(), "m.db"),
			"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.URL,
		})
		if _, code, err := postOperation(http.DefaultClient, base, 1000); err != nil || code != 200 {
			t.Fatalf("post: %d %v", code, err)
		}
	}) // the service stops here, flushing its spans
	mu.Lock()
	defer mu.Unlock()
	if posts == 0 || bodyBytes == 0 {
		t.Errorf("no spans reached the OTLP receiver")
	}
}
