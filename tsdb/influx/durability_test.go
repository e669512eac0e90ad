package influx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// mkOps answers n operations of session sess, created one second apart
// from start.
func mkOps(n int, sess uuid.UUID, start time.Time) []tsdb.Operation {
	ops := make([]tsdb.Operation, n)
	for i := range ops {
		ops[i] = tsdb.Operation{
			ID: uuid.New(), SessionID: sess, ToolName: api.ToolRead, OperationMode: "full",
			Parameters: json.RawMessage(`{"i":` + fmt.Sprint(i) + `}`), TokensOriginal: int64(100 + i),
			TokensActual: 10, TokensPrevented: int64(90 + i), ResponseTimeMs: 1.5, ToolID: "claude-code",
			CreatedAt: start.Add(time.Duration(i) * time.Second),
		}
	}
	return ops
}

func writeOK(t *testing.T, s *influx.Store, ops []tsdb.Operation) {
	t.Helper()
	if err := s.WriteOperations(context.Background(), ops); err != nil {
		t.Fatalf("WriteOperations(%d ops): %v", len(ops), err)
	}
}

// idCounts answers how often each operation id is stored.
func idCounts(t *testing.T, s *influx.Store) (map[uuid.UUID]int, int64) {
	t.Helper()
	since := t0.Add(-time.Minute) // every test operation is at or after t0
	counts := map[uuid.UUID]int{}
	var total int64
	for off := 0; ; off += 1000 {
		page, err := s.QueryOperations(context.Background(), tsdb.OperationFilter{Start: &since, Limit: 1000, Offset: off})
		if err != nil {
			t.Fatalf("QueryOperations: %v", err)
		}
		total = page.Total
		for _, op := range page.Operations {
			counts[op.ID]++
		}
		if len(page.Operations) < 1000 {
			return counts, total
		}
	}
}

// checkExactlyOnce checks that the store holds exactly want, each once.
func checkExactlyOnce(t *testing.T, s *influx.Store, want []tsdb.Operation) {
	t.Helper()
	counts, total := idCounts(t, s)
	if total != int64(len(want)) || len(counts) != len(want) {
		t.Errorf("store holds %d operations (%d distinct ids), want %d", total, len(counts), len(want))
	}
	for _, op := range want {
		if counts[op.ID] != 1 {
			t.Errorf("operation %s stored %d times, want once", op.ID, counts[op.ID])
		}
	}
}

func waitDrained(t *testing.T, s *influx.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.Stats().OutboxRecords > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %d records after %v", s.Stats().OutboxRecords, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutage: with InfluxDB down, writes succeed into the outbox and
// return at once, Ping and reads fail; once it is back, the drainer
// delivers everything, each operation exactly once, in order with later
// writes.
func TestOutage(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	cfg := config(t, srv)
	cfg.WriteTimeout = 2 * time.Second
	s := open(t, cfg)
	sess := uuid.New()
	all := mkOps(100, sess, t0)
	writeOK(t, s, all[:20])
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with InfluxDB up: %v", err)
	}
	checkExactlyOnce(t, s, all[:20])

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 80; i += 10 {
		start := time.Now()
		writeOK(t, s, all[i:i+10])
		if d := time.Since(start); d > cfg.WriteTimeout+time.Second {
			t.Errorf("write during the outage took %v (write timeout %v)", d, cfg.WriteTimeout)
		}
	}
	if err := s.Ping(context.Background()); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("Ping with InfluxDB down = %v, want ErrUnavailable", err)
	}
	if _, err := s.QueryOperations(context.Background(), tsdb.OperationFilter{Limit: 1}); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("QueryOperations with InfluxDB down = %v, want ErrUnavailable", err)
	}
	if n := s.Stats().OutboxRecords; n != 6 {
		t.Errorf("outbox holds %d records during the outage, want 6", n)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	writeOK(t, s, all[80:]) // queues behind the backlog
	waitDrained(t, s, 30*time.Second)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after the outage: %v", err)
	}
	checkExactlyOnce(t, s, all)
	st, err := s.GetSession(context.Background(), sess)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalOperations != 100 || !st.LastActivity.Equal(all[99].CreatedAt) {
		t.Errorf("session after the outage: %d operations, last activity %v; want 100, %v",
			st.TotalOperations, st.LastActivity, all[99].CreatedAt)
	}
}

// TestRestartWithBacklog: a store closed with undelivered records hands
// them to the next store opened on its outbox; a crash after delivery but
// before the outbox learnt of it (simulated by restoring a copy of the
// outbox) delivers them again, harmlessly: exactly once.
func TestRestartWithBacklog(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	cfg := config(t, srv)
	s1, err := influx.Open(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ops := mkOps(40, uuid.New(), t0)
	// Identical created_at for a part of them: the point keys chosen before
	// the outbox must hold across the restart.
	for i := 30; i < 40; i++ {
		ops[i].CreatedAt = ops[29].CreatedAt
	}
	for i := 0; i < 40; i += 10 {
		writeOK(t, s1, ops[i:i+10])
	}
	if n := s1.Stats().OutboxRecords; n != 4 {
		t.Fatalf("outbox holds %d records, want 4", n)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	backup := t.TempDir() + "/outbox-copy"
	if out, err := exec.Command("cp", "-a", cfg.OutboxDir, backup).CombinedOutput(); err != nil {
		t.Fatalf("copy outbox: %v: %s", err, out)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, cfg)
	waitDrained(t, s2, 30*time.Second)
	checkExactlyOnce(t, s2, ops)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// Crash between delivery and acknowledgement: the records come again.
	// InfluxDB is down while the store opens, so that the count below sees
	// the restored records before the drainer delivers them.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(cfg.OutboxDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, cfg.OutboxDir); err != nil {
		t.Fatal(err)
	}
	s3 := open(t, cfg)
	if n := s3.Stats().OutboxRecords; n != 4 {
		t.Fatalf("restored outbox holds %d records, want 4", n)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, s3, 30*time.Second)
	checkExactlyOnce(t, s3, ops)
}

// TestBacklogFull: at the outbox bound a write fails with ErrBacklogFull
// and stores nothing, ever.
func TestBacklogFull(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	cfg := config(t, srv)
	cfg.OutboxMaxBytes = 16 << 10
	s := open(t, cfg)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	var accepted, refused []tsdb.Operation
	sess := uuid.New()
	for i := 0; i < 100 && refused == nil; i++ {
		batch := mkOps(10, sess, t0.Add(time.Duration(i)*time.Minute))
		err := s.WriteOperations(context.Background(), batch)
		switch {
		case err == nil:
			accepted = append(accepted, batch...)
		case errors.Is(err, influx.ErrBacklogFull):
			refused = batch
		default:
			t.Fatalf("WriteOperations: %v", err)
		}
	}
	if refused == nil || len(accepted) == 0 {
		t.Fatalf("accepted %d operations, refused %d: want both", len(accepted), len(refused))
	}
	if b := s.Stats().OutboxBytes; b > cfg.OutboxMaxBytes {
		t.Errorf("outbox holds %d bytes, bound %d", b, cfg.OutboxMaxBytes)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, s, 30*time.Second)
	checkExactlyOnce(t, s, accepted) // none of refused
	writeOK(t, s, refused)           // room again
	checkExactlyOnce(t, s, append(accepted, refused...))
}

// stallServer accepts connections and never answers: a hung InfluxDB.
func stallServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c) // read, never answer
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// TestSlowInfluxDB: a hung InfluxDB holds no write longer than the write
// timeout, and no query longer than the query timeout; Close is prompt.
// It needs no influxd.
func TestSlowInfluxDB(t *testing.T) {
	cfg := influx.Config{
		URL:            stallServer(t),
		Bucket:         "db/autogen",
		OutboxDir:      t.TempDir() + "/outbox",
		WriteTimeout:   300 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
		QueryTimeout:   400 * time.Millisecond,
	}
	s, err := influx.Open(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	const slack = 500 * time.Millisecond
	for i := range 3 {
		start := time.Now()
		writeOK(t, s, mkOps(5, uuid.New(), t0))
		if d := time.Since(start); d > cfg.WriteTimeout+slack {
			t.Errorf("write %d took %v; write timeout %v", i, d, cfg.WriteTimeout)
		}
	}
	start := time.Now()
	_, err = s.QueryOperations(context.Background(), tsdb.OperationFilter{Limit: 1})
	if !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("query against a hung InfluxDB = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > cfg.QueryTimeout+slack {
		t.Errorf("query took %v; query timeout %v", d, cfg.QueryTimeout)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Errorf("Ping against a hung InfluxDB = %v, want ErrUnavailable", err)
	}
	if n := s.Stats().OutboxRecords; n != 3 {
		t.Errorf("outbox holds %d records, want 3", n)
	}
	start = time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

// TestIdenticalKeysBeyondOneMicrosecond: more operations of one series at
// one microsecond than there are nanosecond slots are all kept.
func TestIdenticalKeysBeyondOneMicrosecond(t *testing.T) {
	s := open(t, config(t, realtools.SharedInfluxd(t)))
	ops := mkOps(1200, uuid.New(), t0)
	for i := range ops {
		ops[i].CreatedAt = t0.Add(123 * time.Microsecond)
	}
	writeOK(t, s, ops[:700])
	writeOK(t, s, ops[700:])
	checkExactlyOnce(t, s, ops)
	at := ops[0].CreatedAt
	bd, err := s.Breakdown(context.Background(), tsdb.Window{Start: &at, End: at})
	if err != nil {
		t.Fatal(err)
	}
	if len(bd) != 1 || bd[0].Count != 1200 {
		t.Fatalf("Breakdown at the one instant: %+v, want one row of 1200", bd)
	}
	page, err := s.QueryOperations(context.Background(), tsdb.OperationFilter{Start: &at, End: &at, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 1200 || !page.Operations[0].CreatedAt.Equal(at) {
		t.Fatalf("QueryOperations: total %d, created_at %v", page.Total, page.Operations[0].CreatedAt)
	}
}

// TestHostileStrings: strings that would break a naive Flux or line
// protocol writer round-trip, and filter exactly, as tool ids, file paths,
// parameters and session attributes.
func TestHostileStrings(t *testing.T) {
	s := open(t, config(t, realtools.SharedInfluxd(t)))
	ctx := context.Background()
	hostile := []string{
		`a"b`, `a\b`, `end\`, `\"`, `${x}`, `\${x}`, `$`, `{}`, `") |> drop(columns: ["_value"]) //`,
		"new\nline", "cr\rtab\t", `a,b=c d`, "日本語 café", `~b64~notreally`, `"`, `\\`,
	}
	var ops []tsdb.Operation
	for i, h := range hostile {
		fp := h
		params, _ := json.Marshal(map[string]string{"q": h})
		ops = append(ops, tsdb.Operation{
			ID: uuid.New(), SessionID: uuid.New(), ToolName: api.ToolSearch, OperationMode: "semantic",
			Parameters: params, FilePath: &fp, TokensOriginal: 10, TokensActual: 1, TokensPrevented: 9,
			ResponseTimeMs: 0.25, ToolID: h, CreatedAt: t0.Add(time.Duration(i) * time.Minute),
		})
	}
	empty := ""
	ops = append(ops, tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: api.ToolRead, OperationMode: "full",
		Parameters: json.RawMessage(`{}`), FilePath: &empty, ToolID: "plain", CreatedAt: t0.Add(time.Hour)})
	writeOK(t, s, ops)

	for _, op := range ops {
		page, err := s.QueryOperations(ctx, tsdb.OperationFilter{ToolID: op.ToolID, Limit: 10})
		if err != nil {
			t.Fatalf("QueryOperations(tool_id %q): %v", op.ToolID, err)
		}
		if page.Total != 1 || len(page.Operations) != 1 {
			t.Errorf("tool_id %q: %d operations, want 1", op.ToolID, page.Total)
			continue
		}
		got := page.Operations[0]
		if got.ID != op.ID || got.ToolID != op.ToolID || string(got.Parameters) != string(op.Parameters) ||
			got.FilePath == nil || *got.FilePath != *op.FilePath {
			t.Errorf("tool_id %q: got id %s tool_id %q params %s file_path %v", op.ToolID, got.ID, got.ToolID,
				got.Parameters, got.FilePath)
		}
		bd, err := s.Breakdown(ctx, tsdb.Window{ToolID: op.ToolID, End: t0.Add(24 * time.Hour)})
		if err != nil || len(bd) != 1 || bd[0].Count != 1 {
			t.Errorf("Breakdown(tool_id %q) = %+v, %v; want one operation", op.ToolID, bd, err)
		}
		first, ok, err := s.FirstOperationTime(ctx, op.ToolID)
		if err != nil || !ok || !first.Equal(op.CreatedAt) {
			t.Errorf("FirstOperationTime(%q) = %v, %v, %v; want %v", op.ToolID, first, ok, err, op.CreatedAt)
		}
	}

	// Session attributes and match keys.
	for i, h := range hostile {
		pid := int64(1000 + i)
		sess := tsdb.Session{SessionID: uuid.New(), ToolID: h, ToolVersion: &h, ProcessID: &pid, InstanceID: &h,
			ProjectID: &h, WorkspacePath: &h, StartedAt: t0, LastActivity: t0}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatalf("CreateSession(%q): %v", h, err)
		}
		got, err := s.FindOpenSession(ctx, tsdb.SessionMatch{ToolID: "x", InstanceID: &h})
		if err != nil || got.SessionID != sess.SessionID || *got.InstanceID != h || *got.WorkspacePath != h || got.ToolID != h {
			t.Errorf("FindOpenSession(instance %q) = %+v, %v", h, got, err)
		}
		got, err = s.FindOpenSession(ctx, tsdb.SessionMatch{ToolID: h, ProcessID: &pid})
		if err != nil || got.SessionID != sess.SessionID {
			t.Errorf("FindOpenSession(tool %q, pid %d) = %+v, %v", h, pid, got, err)
		}
		// The session, and the one its operation above created implicitly.
		act, err := s.ActiveSessions(ctx, h, t0)
		ids := map[uuid.UUID]bool{}
		for _, a := range act {
			ids[a.SessionID] = true
		}
		if err != nil || len(act) != 2 || !ids[ops[i].SessionID] || !ids[sess.SessionID] {
			t.Errorf("ActiveSessions(%q) = %+v, %v; want the implicit and the created session", h, act, err)
		}
	}
}

// TestRejectedBatchDeadLettered: a batch InfluxDB refuses as invalid (here
// a field type conflict) fails the write, goes to the dead-letter file and
// does not block the writes after it.
func TestRejectedBatchDeadLettered(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	cfg := config(t, srv)
	s := open(t, cfg)
	// tokens_actual as a string in the shard of t0: integer writes there
	// conflict.
	lp := fmt.Sprintf("tool_operation,tool_name=read tokens_actual=\"text\" %d\n", t0.Add(-time.Hour).UnixNano())
	resp, err := http.Post(srv.URL+"/api/v2/write?bucket="+cfg.Bucket, "text/plain", strings.NewReader(lp))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("seeding the conflict: HTTP %d", resp.StatusCode)
	}
	bad := mkOps(3, uuid.New(), t0)
	err = s.WriteOperations(context.Background(), bad)
	if err == nil || errors.Is(err, influx.ErrBacklogFull) {
		t.Fatalf("WriteOperations of a conflicting batch = %v, want a rejection", err)
	}
	dl, rerr := os.ReadFile(filepath.Clean(cfg.OutboxDir + ".rejected.lp"))
	if rerr != nil || !strings.Contains(string(dl), bad[0].ID.String()) || !strings.HasPrefix(string(dl), "# rejected ") {
		t.Fatalf("dead-letter file: %v\n%s", rerr, dl)
	}
	good := mkOps(3, uuid.New(), t0.AddDate(0, 1, 0)) // another shard
	writeOK(t, s, good)
	if s.Stats().OutboxRecords != 0 {
		t.Errorf("outbox holds %d records after the rejection", s.Stats().OutboxRecords)
	}
	checkExactlyOnce(t, s, good)
}

// TestLargeWriteInParallelPartsExactlyOnce: a write of 8,000 operations
// (about 2.3 MB of line protocol) is delivered to InfluxDB as several
// requests at once; every operation is stored once, those of one series
// and instant too (each keeps its own nanosecond offset).
func TestLargeWriteInParallelPartsExactlyOnce(t *testing.T) {
	s := open(t, config(t, realtools.SharedInfluxd(t)))
	ops := mkOps(8000, uuid.New(), t0)
	for i := 4000; i < 4100; i++ {
		ops[i].CreatedAt = ops[3999].CreatedAt
	}
	writeOK(t, s, ops)
	waitDrained(t, s, 30*time.Second)
	checkExactlyOnce(t, s, ops)
}
