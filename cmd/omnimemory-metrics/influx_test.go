package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// influxVars configures a service on the InfluxDB server srv, with a bucket
// of its own and its outbox in outbox.
func influxVars(srv *realtools.Influxd, bucket, outbox string) map[string]string {
	return map[string]string{
		"OMNIMEMORY_DB_TYPE":    "influxdb",
		"INFLUXDB_URL":          srv.URL,
		"INFLUXDB_BUCKET":       bucket,
		"OMNIMEMORY_OUTBOX_DIR": outbox,
	}
}

func getJSON(t *testing.T, url string) (int, http.Header, any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("GET %s: not JSON: %s", url, data)
	}
	return resp.StatusCode, resp.Header, v
}

func postJSON(t *testing.T, url string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	data, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, resp.Header, v
}

// scrub removes what differs between two services by nature: generated
// operation ids, the time of calculation and the bounds of the previous
// period that follow from it, and when each service was told to end a
// session (only whether it ended is compared).
func scrub(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			if k == "id" || k == "calculated_at" || k == "start" || k == "end" {
				continue
			}
			if k == "ended_at" {
				out[k] = val != nil
				continue
			}
			out[k] = scrub(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = scrub(x[i])
		}
		return out
	}
	return v
}

// sampleSessions are the sessions of answerSample's operations; the
// second is written in upper case.
var sampleSessions = []string{"123e4567-e89b-12d3-a456-426614174000", "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"}

// answerSample is the operations (as POST bodies) that the tests comparing
// services post, spread over 40 days before now, every tool and mode, and
// the read paths whose answers they compare.
func answerSample(now time.Time) (ops []map[string]any, paths []string) {
	tools := []string{"claude-code", "cursor", `odd "tool", v2`}
	modes := map[string][]string{"read": {"full", "overview", "symbol", "references"}, "search": {"semantic", "tri_index"}}
	ages := []time.Duration{20 * time.Minute, 150 * time.Minute, 30 * time.Hour, 5 * 24 * time.Hour, 20 * 24 * time.Hour, 40 * 24 * time.Hour}
	i := 0
	for _, age := range ages {
		for _, tool := range []string{"read", "search"} {
			for _, mode := range modes[tool] {
				i++
				op := map[string]any{
					"session_id": sampleSessions[i%2], "tool_name": tool, "operation_mode": mode,
					"parameters":      map[string]any{"n": i, "q": "a \"quoted\" query"},
					"tokens_original": 1000 * i, "tokens_actual": 100*i + 7, "response_time_ms": float64(i) + 0.25,
					"tool_id": tools[i%3], "created_at": now.Add(-age).Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
				}
				if tool == "read" {
					op["file_path"] = fmt.Sprintf("src/file_%d.go", i%4)
				}
				if i%5 == 0 {
					op["tokens_actual"] = 1000*i + 50
					op["tokens_prevented"] = -50
				}
				if i%3 > 0 {
					op["cache_hit"] = i%3 == 1
				}
				ops = append(ops, op)
			}
		}
	}
	paths = []string{
		"/metrics/tool-operations?limit=1000",
		"/metrics/tool-operations?limit=7&offset=3",
		"/metrics/tool-operations?tool_name=search&limit=5",
		"/metrics/tool-operations?session_id=" + sampleSessions[1],
		"/metrics/tool-operations?tool_id=" + "odd%20%22tool%22%2C%20v2",
		"/metrics/tool-operations?operation_mode=overview&start_date=" + now.Add(-72*time.Hour).Format("2006-01-02"),
		"/sessions/" + sampleSessions[0],
		"/sessions/" + strings.ToLower(sampleSessions[1]),
		"/sessions/active",
	}
	for _, r := range []string{"1h", "24h", "7d", "30d"} {
		paths = append(paths, "/metrics/tool-breakdown?time_range="+r, "/metrics/tool-breakdown?time_range="+r+"&tool_id=cursor")
	}
	for _, r := range []string{"1h", "24h", "7d", "30d", "all"} {
		paths = append(paths, "/metrics/api-savings?time_range="+r, "/metrics/api-savings?time_range="+r+"&tool_id=claude-code")
	}
	for _, r := range []string{"1h", "24h", "7d", "30d", "all"} {
		paths = append(paths, "/metrics/spend?time_range="+r, "/metrics/spend?time_range="+r+"&tool_id=claude-code")
	}
	for _, r := range []string{"1h", "24h", "7d", "30d"} {
		paths = append(paths, "/metrics/api-savings?compare=previous&time_range="+r, "/metrics/api-savings?compare=previous&time_range="+r+"&tool_id=claude-code")
	}
	week := now.Add(-7 * 24 * time.Hour).Format(time.RFC3339)
	for _, q := range []string{
		"group_by=file_path", "group_by=file_path,day&start_date=" + week, "group_by=file_path&tool_name=read&order_by=count",
		"group_by=project_id,day", "group_by=session_id&order_by=avg_response_time_ms",
		"group_by=tool_id,hour&order_by=count&limit=5", "group_by=day,tool_name,operation_mode&start_date=" + week,
		"group_by=operation_mode&tool_id=cursor&order_by=cost_saved", "group_by=tool_id&session_id=" + sampleSessions[0],
	} {
		paths = append(paths, "/metrics/aggregate?"+q)
	}
	return ops, paths
}

// postSample posts ops to the service at base: the first ten one by one,
// then postSampleTail.
func postSample(t *testing.T, base string, ops []map[string]any) {
	t.Helper()
	for _, op := range ops[:10] {
		if code, _, body := postJSON(t, base+"/track/tool-operation", op); code != 200 {
			t.Fatalf("%s: %d %v", base, code, body)
		}
	}
	postSampleTail(t, base, ops)
}

// postSampleTail posts what postSample posts after its single operations:
// the rest in one batch, and the end of the second session.
func postSampleTail(t *testing.T, base string, ops []map[string]any) {
	t.Helper()
	if code, _, body := postJSON(t, base+"/track/tool-operations", map[string]any{"operations": ops[10:]}); code != 200 {
		t.Fatalf("%s batch: %d %v", base, code, body)
	}
	if code, _, body := postJSON(t, base+"/sessions/"+strings.ToLower(sampleSessions[1])+"/end", nil); code != 200 {
		t.Fatalf("%s end: %d %v", base, code, body)
	}
}

// compareAnswers compares every path's answer of each other service with
// the reference's, field by field after scrub.
func compareAnswers(t *testing.T, ref string, others map[string]string, paths []string) {
	t.Helper()
	for name, other := range others {
		for _, path := range paths {
			var a, b any
			for attempt := 0; attempt < 2; attempt++ { // an hour may turn between the two calls
				_, _, a = getJSON(t, ref+path)
				_, _, b = getJSON(t, other+path)
				if reflect.DeepEqual(scrub(a), scrub(b)) {
					break
				}
			}
			if sa, sb := scrub(a), scrub(b); !reflect.DeepEqual(sa, sb) {
				ja, _ := json.Marshal(sa)
				jb, _ := json.Marshal(sb)
				t.Errorf("%s differs:\nreference %s\n%s %s", path, ja, name, jb)
			}
		}
	}
}

// TestStoresAnswerAlike posts the same operations to a service on SQLite,
// one on a real InfluxDB and one on a real PostgreSQL, and compares every
// read answer of the other two with the embedded store's, field by field.
func TestStoresAnswerAlike(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	dir := t.TempDir()
	onSQLite := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, map[string]string{"SQLITE_DB_PATH": filepath.Join(dir, "m.db")})
	others := map[string]string{
		"influxdb": startInProcess(t, []string{"--listen", "127.0.0.1:0"}, influxVars(srv, srv.NewBucket(t), filepath.Join(dir, "outbox"))),
		"postgresql": startInProcess(t, []string{"--listen", "127.0.0.1:0"},
			map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql", "DATABASE_URL": realtools.SharedPostgres(t).NewDatabase(t)}),
	}
	ops, paths := answerSample(time.Now().UTC())
	for _, base := range []string{onSQLite, others["influxdb"], others["postgresql"]} {
		postSample(t, base, ops)
	}
	compareAnswers(t, onSQLite, others, paths)
}

// TestInfluxOutageLosesNothing stops the real InfluxDB under a running
// service: POSTs keep answering 200 within the write deadline and /ready says
// 503; then InfluxDB and the service both restart, and every acknowledged
// operation is there exactly once. Past the outbox's bound a POST answers 503
// with Retry-After and that request is never stored.
func TestInfluxOutageLosesNothing(t *testing.T) {
	// Mostly waits: runs beside the other waiting tests.
	t.Parallel()
	srv := realtools.NewInfluxd(t)
	bucket := srv.NewBucket(t)
	dir := t.TempDir()
	vars := influxVars(srv, bucket, filepath.Join(dir, "outbox"))
	vars["OMNIMEMORY_WRITE_TIMEOUT"] = "1s"
	vars["OMNIMEMORY_OUTBOX_MAX_BYTES"] = "1048576"
	args := []string{"--listen", "127.0.0.1:0"}

	acked := map[string]bool{}
	post := func(base string, n int, tag string) (int, http.Header) {
		items := make([]any, n)
		for i := range items {
			items[i] = map[string]any{"session_id": "123e4567-e89b-12d3-a456-426614174000", "tool_name": "read",
				"operation_mode": "symbol", "tokens_original": 5000, "tokens_actual": 500, "response_time_ms": 2,
				"tool_id": "claude-code", "file_path": tag + strings.Repeat("/padding", 20)}
		}
		code, header, body := postJSON(t, base+"/track/tool-operations", map[string]any{"operations": items})
		if code == 200 {
			for _, id := range body["operation_ids"].([]any) {
				acked[id.(string)] = true
			}
		}
		return code, header
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() { done <- run(ctx, args, testProc(vars, io.Discard, &stderr, nil), ready) }()
	base := "http://" + <-ready

	if code, _ := post(base, 10, "up"); code != 200 {
		t.Fatalf("post while InfluxDB is up: %d", code)
	}
	_, _, page := getJSON(t, base+"/metrics/tool-operations")
	if page.(map[string]any)["total"] != 10.0 {
		t.Fatalf("read-your-writes: total %v right after the POST, want 10", page.(map[string]any)["total"])
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := getJSON(t, base+"/ready"); code != 503 {
		t.Errorf("/ready with InfluxDB down: %d, want 503", code)
	}
	var full bool
	var retryAfter string
	for round := 0; round < 200 && !full; round++ {
		start := time.Now()
		code, header := post(base, 250, fmt.Sprintf("down-%d", round))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("a POST took %v with InfluxDB down; the write deadline is 1s", took)
		}
		switch code {
		case 200:
		case 503:
			full, retryAfter = true, header.Get("Retry-After")
		default:
			t.Fatalf("post with InfluxDB down: %d", code)
		}
	}
	if !full {
		t.Fatal("the outbox never reported full")
	}
	if retryAfter == "" {
		t.Error("503 without Retry-After")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("service exited %d: %s", code, stderr.String())
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	base = startInProcess(t, args, vars)
	deadline := time.Now().Add(60 * time.Second)
	var total float64
	for time.Now().Before(deadline) {
		_, _, p := getJSON(t, base+"/metrics/tool-operations?limit=1")
		if total = p.(map[string]any)["total"].(float64); total >= float64(len(acked)) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if total != float64(len(acked)) {
		t.Fatalf("after the outage: %v operations stored, %d acknowledged", total, len(acked))
	}
	seen := map[string]bool{}
	for offset := 0; offset < len(acked); offset += 1000 {
		_, _, p := getJSON(t, fmt.Sprintf("%s/metrics/tool-operations?limit=1000&offset=%d", base, offset))
		for _, o := range p.(map[string]any)["operations"].([]any) {
			id := o.(map[string]any)["id"].(string)
			if seen[id] {
				t.Errorf("operation %s stored twice", id)
			}
			if !acked[id] {
				t.Errorf("operation %s stored but never acknowledged", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("%d of %d acknowledged operations found", len(seen), len(acked))
	}
	if code, _, _ := getJSON(t, base+"/ready"); code != 200 {
		t.Errorf("/ready after InfluxDB returned: %d", code)
	}
	t.Logf("%d operations acknowledged across the outage, all delivered once", len(acked))
}
