package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// crashUnderLoad runs the service in a child process with vars, loads it
// for a while, kills it with SIGKILL, and answers the acknowledged ids.
func crashUnderLoad(t *testing.T, vars ...string) []string {
	t.Helper()
	c := startChild(t, vars...)
	stop := make(chan struct{})
	wait := load(c.base, stop)
	time.Sleep(700 * time.Millisecond)
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
	close(stop)
	acked := wait()
	if len(acked) == 0 {
		t.Fatalf("nothing was acknowledged before the crash: %s", c.log.String())
	}
	return acked
}

// tearTail appends garbage to the file, as a write cut short by a crash or
// a power loss leaves it.
func tearTail(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte(strings.Repeat("\xde\xad\xbe\xef torn", 97))); err != nil {
		t.Fatal(err)
	}
}

// checkAllOnce waits up to a minute until every acknowledged id is stored,
// and checks none is stored twice.
func checkAllOnce(t *testing.T, base string, acked []string) {
	t.Helper()
	var stored map[string]int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		stored = storedIDs(t, base)
		if len(stored) >= len(acked) {
			break
		}
	}
	lost := 0
	for _, id := range acked {
		switch stored[id] {
		case 0:
			lost++
		case 1:
		default:
			t.Errorf("operation %s stored %d times", id, stored[id])
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged operations lost", lost, len(acked))
	}
	t.Logf("%d operations acknowledged, %d stored", len(acked), len(stored))
}

// TestKill9OnTheEmbeddedStore: under load, kill -9, a torn write-ahead-log
// tail, then a restart: the service starts, says it recovered, and holds
// every acknowledged operation once.
func TestKill9OnTheEmbeddedStore(t *testing.T) {
	db := filepath.Join(t.TempDir(), "metrics.db")
	acked := crashUnderLoad(t, "SQLITE_DB_PATH="+db)
	if _, err := os.Stat(db + "-wal"); err != nil {
		t.Fatalf("no write-ahead log after the crash: %v", err)
	}
	tearTail(t, db+"-wal")
	c := startChild(t, "SQLITE_DB_PATH="+db)
	checkAllOnce(t, c.base, acked)
	if !strings.Contains(c.log.String(), "not closed cleanly") {
		t.Errorf("the restart did not report the unclean shutdown:\n%s", c.log.String())
	}
}

// TestKill9OnInfluxDBWithItsOutbox: the same on InfluxDB, with a torn tail
// on the outbox's last segment: the intact records are delivered, the torn
// bytes reported, nothing acknowledged lost or doubled.
func TestKill9OnInfluxDBWithItsOutbox(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	bucket := srv.NewBucket(t)
	outbox := filepath.Join(t.TempDir(), "outbox")
	vars := []string{"OMNIMEMORY_DB_TYPE=influxdb", "INFLUXDB_URL=" + srv.URL, "INFLUXDB_BUCKET=" + bucket, "OMNIMEMORY_OUTBOX_DIR=" + outbox}
	acked := crashUnderLoad(t, vars...)
	segments, _ := filepath.Glob(filepath.Join(outbox, "*.seg"))
	if len(segments) == 0 {
		t.Fatalf("no outbox segment after the crash")
	}
	sort.Strings(segments)
	tearTail(t, segments[len(segments)-1])
	c := startChild(t, vars...)
	checkAllOnce(t, c.base, acked)
	if !strings.Contains(c.log.String(), "discarded_bytes") {
		t.Errorf("the restart did not report the torn outbox tail:\n%s", c.log.String())
	}
}
