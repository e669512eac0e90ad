package realtools_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

func TestMain(m *testing.M) { os.Exit(realtools.RunMain(m)) }

func post(t *testing.T, url, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func countFlux(t *testing.T, s *realtools.Influxd, bucket string) string {
	t.Helper()
	q := `from(bucket: "` + bucket + `") |> range(start: 2020-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == "m") |> count()`
	code, body := post(t, s.URL+"/api/v2/query", "application/vnd.flux", q)
	if code != 200 {
		t.Fatalf("query: %d %s", code, body)
	}
	return body
}

// TestSharedServerWriteAndFlux writes through the v2 compatibility API and
// reads back with Flux.
func TestSharedServerWriteAndFlux(t *testing.T) {
	s := realtools.SharedInfluxd(t)
	b := s.NewBucket(t)
	code, body := post(t, s.URL+"/api/v2/write?bucket="+b+"&precision=ns", "text/plain", "m,k=v f=1i 1600000000000000000\nm,k=v f=2i 1600000000000000001\n")
	if code != 204 {
		t.Fatalf("write: %d %s", code, body)
	}
	if got := countFlux(t, s, b); !strings.Contains(got, ",2\r\n") {
		t.Fatalf("count: %q", got)
	}
}

// TestStopRestartKeepsData stops the server, sees it down, restarts it on the
// same port and finds the data again.
func TestStopRestartKeepsData(t *testing.T) {
	s := realtools.NewInfluxd(t)
	b := s.NewBucket(t)
	if code, body := post(t, s.URL+"/api/v2/write?bucket="+b, "text/plain", "m,k=v f=1i 1600000000000000000\n"); code != 204 {
		t.Fatalf("write: %d %s", code, body)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Pid() != 0 {
		t.Error("a stopped server has a pid")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, "x"); err == nil {
		t.Fatal("stopped server answered")
	}
	start := time.Now()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", time.Since(start))
	if got := countFlux(t, s, b); !strings.Contains(got, ",1\r\n") {
		t.Fatalf("count after restart: %q", got)
	}
}

// TestStartInfluxdInDir starts a server as a program does: in a folder of
// its own choosing, which Close keeps, with an environment of its own.
func TestStartInfluxdInDir(t *testing.T) {
	realtools.Require(t, "influxd")
	dir := filepath.Join(t.TempDir(), "influxd")
	s, err := realtools.StartInfluxd(context.Background(), realtools.InfluxdOptions{Dir: dir, Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	if s.Pid() == 0 {
		t.Error("a running server has no pid")
	}
	if err := s.CreateDatabase(context.Background(), "db"); err != nil {
		t.Error(err)
	}
	if err := s.StopWithin(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"influxdb.conf", "influxd.log", "data"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after Close: %v", err)
		}
	}
}

// TestStartInfluxdCanceled gives up on a start whose context ends.
func TestStartInfluxdCanceled(t *testing.T) {
	realtools.Require(t, "influxd")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := realtools.StartInfluxd(ctx, realtools.InfluxdOptions{}); err == nil {
		s.Close()
		t.Fatal("started with a canceled context")
	}
}
