package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// steadyLoad posts about rate operations per second from 8 connections
// until stop closes; it answers the acknowledged ids and the slowest answer.
func steadyLoad(base string, rate int, stop <-chan struct{}) func() ([]string, time.Duration) {
	var (
		mu      sync.Mutex
		acked   []string
		slowest time.Duration
		wg      sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	const workers = 8
	interval := time.Duration(workers) * time.Second / time.Duration(rate)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				id, code, err := postOperation(client, base, 1000+i)
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				if err == nil && code == 200 {
					acked = append(acked, id)
				}
				mu.Unlock()
			}
		}(w)
	}
	return func() ([]string, time.Duration) {
		wg.Wait()
		return acked, slowest
	}
}

// TestInfluxDBOutageOfAMinuteUnderLoad stops InfluxDB for 60 s while about
// 1,000 operations/s arrive: every POST answers 200 within the write
// deadline, and the backlog is delivered, each operation once, within 60 s
// of InfluxDB's return.
func TestInfluxDBOutageOfAMinuteUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("takes two minutes")
	}
	// Mostly waits: runs beside the other waiting tests.
	t.Parallel()
	srv := realtools.NewInfluxd(t)
	vars := influxVars(srv, srv.NewBucket(t), filepath.Join(t.TempDir(), "outbox"))
	vars["OMNIMEMORY_WRITE_TIMEOUT"] = "2s"
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, vars)

	stop := make(chan struct{})
	wait := steadyLoad(base, 1000, stop)
	time.Sleep(5 * time.Second)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Second)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	time.Sleep(5 * time.Second)
	close(stop)
	acked, slowest := wait()
	if slowest > 2*time.Second+time.Second {
		t.Errorf("the slowest POST took %v; the write deadline is 2s", slowest)
	}
	var total float64
	for time.Since(returned) < 60*time.Second {
		_, _, page := getJSON(t, base+"/metrics/tool-operations?limit=1")
		if total = page.(map[string]any)["total"].(float64); total >= float64(len(acked)) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	delivered := time.Since(returned)
	if total < float64(len(acked)) {
		t.Errorf("60 s after InfluxDB returned, %v of %d acknowledged operations are stored", total, len(acked))
	}
	stored := storedIDs(t, base)
	lost, doubled := 0, 0
	for _, id := range acked {
		switch stored[id] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	if lost > 0 || doubled > 0 {
		t.Errorf("of %d acknowledged operations %d lost and %d stored twice, %v after InfluxDB returned", len(acked), lost, doubled, delivered)
	}
	t.Logf("%d operations acknowledged over 70 s (60 s of outage), slowest POST %v, backlog delivered %v after InfluxDB returned",
		len(acked), slowest, delivered.Round(time.Second))
}

// TestStalledInfluxDBHoldsNoRequestPastTheWriteDeadline points the service
// at an InfluxDB that accepts connections and never answers: every POST
// still answers 200 within the write deadline (its operation waits in the
// outbox) and reads answer 503 within the query timeout, never hang.
func TestStalledInfluxDBHoldsNoRequestPastTheWriteDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { // read and never answer
				defer conns.Done()
				go func() { <-ctx.Done(); c.Close() }()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, map[string]string{
		"OMNIMEMORY_DB_TYPE": "influxdb", "INFLUXDB_URL": "http://" + ln.Addr().String(), "INFLUXDB_BUCKET": "db/autogen",
		"OMNIMEMORY_OUTBOX_DIR": filepath.Join(t.TempDir(), "outbox"), "OMNIMEMORY_WRITE_TIMEOUT": "1s", "OMNIMEMORY_QUERY_TIMEOUT": "2s",
	})
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			_, code, err := postOperation(http.DefaultClient, base, 1000+i)
			if err != nil || code != 200 {
				t.Errorf("POST with a stalled InfluxDB: %d %v", code, err)
			}
			d := int64(time.Since(start))
			for cur := slowest.Load(); d > cur && !slowest.CompareAndSwap(cur, d); cur = slowest.Load() {
			}
		}(i)
	}
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > 1500*time.Millisecond {
		t.Errorf("the slowest POST took %v; the write deadline is 1s", d)
	}
	start := time.Now()
	code, _, _ := getJSON(t, base+"/metrics/api-savings")
	if took := time.Since(start); code != 503 || took > 3*time.Second {
		t.Errorf("a read with a stalled InfluxDB: %d after %v, want 503 within the 2s query timeout", code, took)
	}
	cancel()
}
