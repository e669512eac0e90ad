package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadWriteSoakOnTheEmbeddedStore runs writers and readers of every
// aggregate endpoint at once for a few seconds: no answer may be a busy
// error or any other 5xx.
func TestReadWriteSoakOnTheEmbeddedStore(t *testing.T) {
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, map[string]string{"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "m.db")})
	stop := make(chan struct{})
	var writes, reads, failures atomic.Int64
	var firstFailure atomic.Value
	fail := func(what string) {
		failures.Add(1)
		firstFailure.CompareAndSwap(nil, what)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, code, err := postOperation(client, base, 1000+i)
				if err != nil || code != 200 {
					fail(fmt.Sprintf("POST: %d %v", code, err))
					continue
				}
				writes.Add(1)
			}
		}(w)
	}
	paths := []string{"/metrics/api-savings?time_range=24h", "/metrics/tool-breakdown?time_range=30d", "/metrics/api-savings?time_range=all",
		"/metrics/tool-operations?limit=50", "/sessions/123e4567-e89b-12d3-a456-426614174000", "/sessions/active"}
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(base + paths[(r+i)%len(paths)])
				if err != nil {
					fail(err.Error())
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 404 {
					fail(fmt.Sprintf("GET %s: %d", paths[(r+i)%len(paths)], resp.StatusCode))
					continue
				}
				reads.Add(1)
			}
		}(r)
	}
	time.Sleep(4 * time.Second)
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Errorf("%d failed requests, the first: %v", failures.Load(), firstFailure.Load())
	}
	t.Logf("%d writes and %d reads in 4 s, %d failures", writes.Load(), reads.Load(), failures.Load())
}

// TestSlowClientsAreCutOff: a client that sends its headers a byte at a
// time (slow loris) is disconnected by the server's header timeout, and a
// header block over the limit is refused, while other clients are served.
func TestSlowClientsAreCutOff(t *testing.T) {
	// Mostly waits: runs beside the other waiting tests.
	t.Parallel()
	base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, map[string]string{"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "m.db")})
	addr := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 1)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := conn.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	header := "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
	for i := 0; i < len(header); i++ {
		if _, err := conn.Write([]byte{header[i]}); err != nil {
			break // the server hung up
		}
		select {
		case d := <-closed:
			t.Logf("slow client cut off after %v", d)
			goto served
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("the server kept a slow client's connection open for its whole header")
served:
	if resp, err := http.Get(base + "/health"); err != nil || resp.StatusCode != 200 {
		t.Errorf("other clients are not served: %v", err)
	}
	// A header block over the limit is refused.
	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 200<<10))
	status, err := bufio.NewReader(conn2).ReadString('\n')
	if err != nil || !strings.Contains(status, "431") {
		t.Errorf("an oversized header block answered %q (%v), want 431", status, err)
	}
}
