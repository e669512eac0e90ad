package testinflux_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/testinflux"
)

func TestMain(m *testing.M) { os.Exit(testinflux.RunMain(m)) }

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

func countFlux(t *testing.T, s *testinflux.Server, bucket string) string {
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
	s := testinflux.Shared(t)
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
	s := testinflux.Start(t)
	b := s.NewBucket(t)
	if code, body := post(t, s.URL+"/api/v2/write?bucket="+b, "text/plain", "m,k=v f=1i 1600000000000000000\n"); code != 204 {
		t.Fatalf("write: %d %s", code, body)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
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
