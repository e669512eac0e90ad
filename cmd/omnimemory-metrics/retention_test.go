package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

func TestConfigRetention(t *testing.T) {
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want time.Duration
	}{
		{nil, nil, 0},
		{nil, map[string]string{"OMNIMEMORY_RETENTION": "90d"}, 90 * 24 * time.Hour},
		{nil, map[string]string{"OMNIMEMORY_RETENTION": "720h"}, 720 * time.Hour},
		{nil, map[string]string{"OMNIMEMORY_RETENTION": "0"}, 0},
		{nil, map[string]string{"OMNIMEMORY_RETENTION": "0d"}, 0},
		{[]string{"--retention", "1h"}, map[string]string{"OMNIMEMORY_RETENTION": "90d"}, time.Hour},
		{nil, map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql", "DATABASE_URL": "postgresql://h/db", "OMNIMEMORY_RETENTION": "30d"}, 30 * 24 * time.Hour},
		{nil, map[string]string{"OMNIMEMORY_DB_TYPE": "influxdb", "OMNIMEMORY_RETENTION": "0"}, 0},
	} {
		c, err := loadConfig(tc.args, env(tc.vars), io.Discard)
		if err != nil || c.Retention != tc.want {
			t.Errorf("%v %v: retention %v, %v; want %v", tc.args, tc.vars, c.Retention, err, tc.want)
		}
	}
}

// TestRetentionInTheService: with OMNIMEMORY_RETENTION set, the service
// expires the raw operations older than it as it starts (the clock is the
// process's, fixed here), reports it on /metrics, lists only what remains,
// and its savings over every range still count what expired.
func TestRetentionInTheService(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	store, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ops []tsdb.Operation
	for _, at := range []time.Time{
		now.Add(-9 * 24 * time.Hour), now.Add(-9*24*time.Hour + time.Minute), now.Add(-3 * 24 * time.Hour), // older than 2 days
		now.Add(-2 * time.Hour), now.Add(-time.Hour),
	} {
		ops = append(ops, tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: "full",
			Parameters: json.RawMessage(`{}`), TokensOriginal: 1000, TokensActual: 100, TokensPrevented: 900,
			ResponseTimeMs: 1, ToolID: "claude-code", CreatedAt: at})
	}
	if err := store.WriteOperations(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	store.Close()

	base := startInProcessAt(t, []string{"--listen", "127.0.0.1:0", "--retention", "2d"}, map[string]string{"SQLITE_DB_PATH": path},
		func() time.Time { return now })
	deleted := regexp.MustCompile(`(?m)^omnimemory_retention_deleted_total\{kind="operations"\} (\d+)$`)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if m := deleted.FindSubmatch(body); m != nil && string(m[1]) == "3" {
			if !strings.Contains(string(body), "omnimemory_retention_raw_horizon_timestamp_seconds 1.7414352e+09") {
				t.Errorf("the exposition lacks the horizon 2025-03-08T12:00:00Z:\n%s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exposition never showed 3 operations deleted:\n%s", body)
		}
	}
	if time.Unix(1741435200, 0).UTC() != now.Add(-48*time.Hour) {
		t.Fatal("the horizon in the exposition checked is not 2025-03-08T12:00:00Z")
	}
	field := func(url, name string) float64 {
		t.Helper()
		code, _, v := getJSON(t, url)
		m, _ := v.(map[string]any)
		n, ok := m[name].(float64)
		if code != http.StatusOK || !ok {
			t.Fatalf("GET %s: %d, no number %s in %v", url, code, name, v)
		}
		return n
	}
	if n := field(base+"/metrics/tool-operations", "total"); n != 2 {
		t.Errorf("the list holds %v operations, want the 2 of the last 2 days", n)
	}
	for _, r := range []string{"30d", "all"} {
		url := base + "/metrics/api-savings?time_range=" + r
		if n, p := field(url, "total_operations"), field(url, "total_tokens_prevented"); n != 5 || p != 4500 {
			t.Errorf("api-savings %s: %v operations, %v tokens prevented; want all 5 and 4500", r, n, p)
		}
	}
}
