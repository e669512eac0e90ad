package realtools

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// One server per test package is the usual shape: SharedInfluxd starts it on
// first use and RunMain stops it when the package's tests are done. Tests
// that stop and restart the server (outage tests) take their own from
// NewInfluxd. Each test takes its own database from NewDatabase, so tests
// sharing a server never see each other's data.

// NewInfluxd starts a server of t's own in a temporary directory and closes
// it when t ends. Without a binary it skips t (fails it under CI=true; see
// SkipOrFatal).
func NewInfluxd(t TB) *Influxd {
	t.Helper()
	s, err := StartInfluxd(context.Background(), InfluxdOptions{})
	if err != nil {
		SkipOrFatal(t, fmt.Errorf("influxd: %w", err))
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("influxd: %v", err)
		}
	})
	return s
}

var shared struct {
	mu  sync.Mutex
	srv *Influxd
	err error
}

// SharedInfluxd answers the test package's shared server, started on first
// use; RunMain stops it. Without a binary it skips t (fails it under
// CI=true). Tests that stop the server must not use it: take one from
// NewInfluxd instead.
func SharedInfluxd(t TB) *Influxd {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = StartInfluxd(context.Background(), InfluxdOptions{})
	}
	if shared.err != nil {
		SkipOrFatal(t, fmt.Errorf("influxd: %w", shared.err))
	}
	if !shared.srv.Running() {
		t.Fatalf("influxd: the shared server was stopped; tests that stop it must use NewInfluxd")
	}
	return shared.srv
}

// M is what RunMain needs of a *testing.M.
type M interface{ Run() int }

// RunMain runs the package's tests and then stops the shared servers
// (influxd, PostgreSQL), if they were started. Use it from TestMain:
// os.Exit(realtools.RunMain(m)).
func RunMain(m M) int {
	code := m.Run()
	stopSharedPostgres()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if err := shared.srv.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "influxd: %v\n", err)
		}
		shared.srv = nil
	}
	return code
}

var dbSeq atomic.Int64

// NewDatabase creates a database with a name unique to this process and
// answers it; it is dropped when t ends (when the server still runs).
func (s *Influxd) NewDatabase(t TB) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("test_%d_%s", dbSeq.Add(1), hex.EncodeToString(r[:]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("influxd: %v", err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Query(ctx, `DROP DATABASE "`+name+`"`)
	})
	return name
}

// NewBucket creates a database as NewDatabase does and answers its v2
// compatibility bucket name, "<database>/autogen".
func (s *Influxd) NewBucket(t TB) string {
	t.Helper()
	return s.NewDatabase(t) + "/autogen"
}
