package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// postgresVars configures a service on the PostgreSQL database at url.
func postgresVars(url string, more ...string) map[string]string {
	vars := map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql", "DATABASE_URL": url}
	for i := 0; i+1 < len(more); i += 2 {
		vars[more[i]] = more[i+1]
	}
	return vars
}

// operationsTotal answers the total of the service's operation list.
func operationsTotal(t *testing.T, base string) int {
	t.Helper()
	_, _, page := getJSON(t, base+"/metrics/tool-operations?limit=1")
	return int(page.(map[string]any)["total"].(float64))
}

// TestPostgresReplicasShareOneDatabase runs two services on one PostgreSQL
// database: an operation posted to either is in the other's very next
// answer; the sample written half through each gives, from both, every
// answer a service on the embedded store gives for it; and a retried
// operation sent to both at once is stored once.
func TestPostgresReplicasShareOneDatabase(t *testing.T) {
	url := realtools.SharedPostgres(t).NewDatabase(t)
	a := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, postgresVars(url))
	b := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, postgresVars(url))
	onSQLite := startInProcess(t, []string{"--listen", "127.0.0.1:0"},
		map[string]string{"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "m.db")})
	replicas := []string{a, b}

	// Read-your-writes across replicas: each single POST goes to one
	// replica and the other answers with it at once.
	ops, paths := answerSample(time.Now().UTC())
	for i, op := range ops[:10] {
		writer, reader := replicas[i%2], replicas[(i+1)%2]
		before := operationsTotal(t, reader)
		code, _, body := postJSON(t, writer+"/track/tool-operation", op)
		if code != 200 {
			t.Fatalf("%s: %d %v", writer, code, body)
		}
		if got := operationsTotal(t, reader); got != before+1 {
			t.Fatalf("operation %d posted to one replica: the other lists %d operations, want %d", i, got, before+1)
		}
		_, _, listed := getJSON(t, reader+"/metrics/tool-operations?limit=1000")
		found := false
		for _, o := range listed.(map[string]any)["operations"].([]any) {
			found = found || o.(map[string]any)["id"] == body["operation_id"]
		}
		if !found {
			t.Fatalf("operation %v posted to one replica is not in the other's list", body["operation_id"])
		}
	}
	// The rest as a batch to b, the session ended through b: every answer
	// of both replicas is the embedded store's for the same writes.
	postSample(t, onSQLite, ops)
	postSampleTail(t, b, ops)
	compareAnswers(t, onSQLite, map[string]string{"replica a": a, "replica b": b}, paths)
	if ia, ib := storedIDs(t, a), storedIDs(t, b); !maps.Equal(ia, ib) {
		t.Errorf("the replicas list different operations: %d and %d", len(ia), len(ib))
	}

	// A retry sent to both replicas at once is stored once, whichever wins.
	for _, key := range []string{"retry-1", "retry-2", "retry-3"} {
		before := operationsTotal(t, a)
		var wg sync.WaitGroup
		ids := make([]string, 2)
		for i, base := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i] = postKeyed(t, base, key)
			}()
		}
		wg.Wait()
		if ids[0] == "" || ids[0] != ids[1] {
			t.Fatalf("Idempotency-Key %s sent to both replicas answered ids %q and %q, want one", key, ids[0], ids[1])
		}
		for _, base := range replicas {
			if got := operationsTotal(t, base); got != before+1 {
				t.Errorf("Idempotency-Key %s sent to both replicas: %d operations listed, want %d", key, got, before+1)
			}
		}
	}
}

// postKeyed posts one operation with an Idempotency-Key and answers its id.
func postKeyed(t *testing.T, base, key string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/track/tool-operation", strings.NewReader(
		`{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"search","operation_mode":"semantic",`+
			`"tokens_original":900,"tokens_actual":90,"response_time_ms":2,"tool_id":"cursor"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		t.Errorf("keyed POST to %s: %d %v", base, resp.StatusCode, out)
	}
	return out["operation_id"]
}

// outcome is what a steady load got while its store came and went.
type outcome struct {
	ok, unavailable, other int
	noRetryAfter           int
	slowest                time.Duration
	firstOKAfterReturn     time.Duration
	otherSamples           []string
}

// TestPostgresStoppedOrStalledUnderLoad: under a steady load, PostgreSQL
// is stopped, then started again, then frozen (SIGSTOP: connections stay
// open and nothing answers), then let go. While it is away every POST is
// answered 503 with Retry-After (no 500) within the write deadline, the
// service takes writes again by itself when it returns, and every
// acknowledged operation is stored once.
func TestPostgresStoppedOrStalledUnderLoad(t *testing.T) {
	// Mostly waits: runs beside the other waiting tests.
	t.Parallel()
	srv := realtools.NewPostgres(t)
	const deadline = 2 * time.Second
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"},
		postgresVars(srv.NewDatabase(t), "OMNIMEMORY_WRITE_TIMEOUT", deadline.String(), "OMNIMEMORY_QUERY_TIMEOUT", deadline.String()))

	var (
		mu       sync.Mutex
		phase    = "up"
		outcomes = map[string]*outcome{"up": {}, "stopped": {}, "restarted": {}, "paused": {}, "resumed": {}}
		acked    []string
		since    = time.Now()
	)
	enter := func(p string) {
		mu.Lock()
		phase, since = p, time.Now()
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				start := time.Now()
				req, _ := http.NewRequest(http.MethodPost, base+"/track/tool-operation", strings.NewReader(fmt.Sprintf(
					`{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"read","operation_mode":"symbol",`+
						`"tokens_original":%d,"tokens_actual":100,"response_time_ms":3.5,"tool_id":"claude-code"}`, 1000+w*100000+i)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				took := time.Since(start)
				mu.Lock()
				o := outcomes[phase]
				o.slowest = max(o.slowest, took)
				switch {
				case err != nil:
					o.other++
					o.otherSamples = append(o.otherSamples, err.Error())
				case resp.StatusCode == 200:
					var out map[string]string
					_ = json.NewDecoder(resp.Body).Decode(&out)
					acked = append(acked, out["operation_id"])
					if o.ok == 0 {
						o.firstOKAfterReturn = time.Since(since)
					}
					o.ok++
				case resp.StatusCode == 503:
					o.unavailable++
					if resp.Header.Get("Retry-After") == "" {
						o.noRetryAfter++
					}
				default:
					o.other++
					o.otherSamples = append(o.otherSamples, resp.Status)
				}
				if resp != nil {
					resp.Body.Close()
				}
				mu.Unlock()
			}
		}()
	}
	step := func(next string, hold time.Duration, act func() error) {
		t.Helper()
		if err := act(); err != nil {
			t.Fatalf("%s: %v", next, err)
		}
		enter(next)
		time.Sleep(hold)
	}
	time.Sleep(2 * time.Second)
	step("stopped", 6*time.Second, srv.Stop)
	notReady := func(then func() error) func() error {
		return func() error {
			resp, err := client.Get(base + "/ready")
			if err != nil {
				t.Errorf("/ready while PostgreSQL is away: %v", err)
			} else if resp.Body.Close(); resp.StatusCode != 503 {
				t.Errorf("/ready while PostgreSQL is away: %s, want 503", resp.Status)
			}
			return then()
		}
	}
	step("restarted", 4*time.Second, notReady(srv.Restart))
	step("paused", 0, srv.Pause)
	readsTimeOut(t, client, base, deadline)
	time.Sleep(6 * time.Second)
	step("resumed", 4*time.Second, notReady(srv.Resume))
	close(stop)
	wg.Wait()

	for _, p := range []string{"up", "stopped", "restarted", "paused", "resumed"} {
		o := outcomes[p]
		t.Logf("%-9s %4d × 200, %4d × 503, %d other; slowest %v; first 200 after %v",
			p, o.ok, o.unavailable, o.other, o.slowest.Round(time.Millisecond), o.firstOKAfterReturn.Round(time.Millisecond))
		if o.other > 0 {
			t.Errorf("%s: %d answers neither 200 nor 503, e.g. %v", p, o.other, o.otherSamples[:min(3, len(o.otherSamples))])
		}
		if o.noRetryAfter > 0 {
			t.Errorf("%s: %d answers 503 without Retry-After", p, o.noRetryAfter)
		}
		// A POST waits for its commit at most the write deadline; the
		// margin is for a loaded machine, far below the 30 s it would be
		// without the deadline.
		if o.slowest > deadline+3*time.Second {
			t.Errorf("%s: the slowest POST took %v; the write deadline is %v", p, o.slowest, deadline)
		}
	}
	for _, p := range []string{"stopped", "paused"} {
		if outcomes[p].unavailable == 0 {
			t.Errorf("%s: no POST answered 503 while PostgreSQL was away", p)
		}
	}
	for _, p := range []string{"up", "restarted", "resumed"} {
		if outcomes[p].ok == 0 {
			t.Errorf("%s: no POST was stored: the service did not recover by itself", p)
		}
	}
	checkAllOnce(t, base, acked)
}

// readsTimeOut checks that reads of a service whose PostgreSQL does not
// answer are answered 503 with Retry-After within the query timeout.
func readsTimeOut(t *testing.T, client *http.Client, base string, timeout time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, path := range []string{
		"/metrics/tool-breakdown?time_range=24h",
		"/metrics/api-savings?time_range=7d",
		"/metrics/tool-operations?limit=5",
		"/sessions/123e4567-e89b-12d3-a456-426614174000",
		"/sessions/active",
		"/metrics/tool-operations/export?format=ndjson",
	} {
		wg.Go(func() {
			start := time.Now()
			resp, err := client.Get(base + path)
			took := time.Since(start)
			if err != nil {
				t.Errorf("GET %s while PostgreSQL does not answer: %v", path, err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("GET %s while PostgreSQL does not answer: %s, Retry-After %q; want 503 with Retry-After",
					path, resp.Status, resp.Header.Get("Retry-After"))
			}
			if took > timeout+3*time.Second {
				t.Errorf("GET %s took %v; the query timeout is %v", path, took, timeout)
			}
		})
	}
	wg.Wait()
}

// TestKill9OnPostgreSQL: under load, kill -9 of the service, then a new
// one on the same database holds every acknowledged operation once.
func TestKill9OnPostgreSQL(t *testing.T) {
	url := realtools.SharedPostgres(t).NewDatabase(t)
	vars := []string{"OMNIMEMORY_DB_TYPE=postgresql", "DATABASE_URL=" + url}
	acked := crashUnderLoad(t, vars...)
	c := startChild(t, vars...)
	checkAllOnce(t, c.base, acked)
}
