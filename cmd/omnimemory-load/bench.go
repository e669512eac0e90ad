package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// benchConfig is every setting of the bench command.
type benchConfig struct {
	Ops              int64         `json:"ops"`
	Connections      int           `json:"connections"`
	Duration         time.Duration `json:"single_duration_ns"`
	SingleOps        int64         `json:"single_ops"`
	Batch            int           `json:"batch"`
	BatchConnections int           `json:"batch_connections"`
	SeedTimeout      time.Duration `json:"seed_timeout_ns"`
	Requests         int           `json:"requests"`
	QueryBudget      time.Duration `json:"query_budget_ns"`
	QueryTimeout     time.Duration `json:"query_timeout_ns"`
	RawBudget        time.Duration `json:"raw_budget_ns"`
	Stores           []string      `json:"stores"`
	Seed             uint64        `json:"seed"`
	Scatter          bool          `json:"scatter"`
	JSONPath         string        `json:"-"`
	ServiceBin       string        `json:"-"`
	Keep             bool          `json:"-"`
}

func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	var c benchConfig
	var stores string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Int64Var(&c.Ops, "ops", 2_000_000, "operations seeded through the batch endpoint per store (the batch phase), spread over the last 30 days; the queries run over them")
	fs.IntVar(&c.Connections, "connections", 32, "connections of the single-operation phase")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "time bound of each single-operation phase")
	fs.Int64Var(&c.SingleOps, "single-ops", 2_000_000, "count bound of each single-operation phase")
	fs.IntVar(&c.Batch, "batch", api.MaxBatchOperations, fmt.Sprintf("operations per batch request (at most %d)", api.MaxBatchOperations))
	fs.IntVar(&c.BatchConnections, "batch-connections", 4, "connections of the batch phases")
	fs.DurationVar(&c.SeedTimeout, "seed-timeout", 6*time.Minute, "time bound of each batch phase (seeding and line protocol)")
	fs.IntVar(&c.Requests, "requests", 100, "requests per range of each aggregate endpoint")
	fs.DurationVar(&c.QueryBudget, "query-budget", 10*time.Second, "time bound per range and endpoint of the query phase (slow stores are capped)")
	fs.DurationVar(&c.QueryTimeout, "query-timeout", 30*time.Second, "time bound of one query request (the service's own InfluxDB query timeout is 30s)")
	fs.DurationVar(&c.RawBudget, "raw-budget", 5*time.Second, "time bound per window of the raw-SQL reference")
	fs.StringVar(&stores, "stores", "sqlite,influxdb", "stores to benchmark: sqlite, influxdb or both")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the generated operations")
	fs.BoolVar(&c.Scatter, "scatter", false, "batch phase: spread every batch over the whole 30 days (the worst case for the stores' time indexes) instead of sending the 30 days in time order, oldest first, as live traffic and an import do")
	fs.StringVar(&c.JSONPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&c.ServiceBin, "service-bin", "", "use this omnimemory-metrics binary instead of building one")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary folder (databases, logs)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(stores, ",") {
		switch s = strings.TrimSpace(s); s {
		case "sqlite", "influxdb":
			c.Stores = append(c.Stores, s)
		case "":
		default:
			return c, usagef("--stores: unknown store %q (sqlite, influxdb)", s)
		}
	}
	switch {
	case len(c.Stores) == 0:
		return c, usagef("--stores names no store")
	case c.Ops < 1 || c.Ops > 100_000_000:
		return c, usagef("--ops must be 1..100000000")
	case c.Connections < 1 || c.Connections > 1024:
		return c, usagef("--connections must be 1..1024")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return c, usagef("--duration must be positive and at most 1h")
	case c.SingleOps < 1:
		return c, usagef("--single-ops must be positive")
	case c.Batch < 1 || c.Batch > api.MaxBatchOperations:
		return c, usagef("--batch must be 1..%d", api.MaxBatchOperations)
	case c.BatchConnections < 1 || c.BatchConnections > 64:
		return c, usagef("--batch-connections must be 1..64")
	case c.SeedTimeout <= 0 || c.SeedTimeout > 2*time.Hour:
		return c, usagef("--seed-timeout must be positive and at most 2h")
	case c.Requests < 1 || c.Requests > 100_000:
		return c, usagef("--requests must be 1..100000")
	case c.QueryBudget <= 0 || c.RawBudget <= 0 || c.QueryTimeout <= 0 || c.QueryTimeout > 10*time.Minute:
		return c, usagef("--query-budget, --query-timeout and --raw-budget must be positive (--query-timeout at most 10m)")
	}
	return c, nil
}

// machine describes where the bench ran.
type machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryKB int64  `json:"memory_kb"`
	OS       string `json:"os"`
	// LoadBefore and LoadAfter are the 1-minute load averages when the run
	// started and ended: other work on the machine shows there.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

func readMachine() machine {
	m := machine{CPU: "unknown", Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryKB, _ = statusKB(string(b), "MemTotal")
	}
	m.LoadBefore = loadAverage()
	return m
}

// loadAverage answers the 1-minute load average of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}

// cpuModel answers the first "model name" of a /proc/cpuinfo text.
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}

// rssResult is the service's peak memory per phase (kB).
type rssResult struct {
	SingleKB int64 `json:"single_kb"`
	BatchKB  int64 `json:"batch_kb"`
	QueryKB  int64 `json:"query_kb"`
	MaxKB    int64 `json:"max_kb"` // largest VmRSS sample over the service's life
	HWMKB    int64 `json:"hwm_kb"` // VmHWM at the end
}

// storeResult is everything measured on one store.
type storeResult struct {
	Store        string        `json:"store"`
	Single       *ingestResult `json:"single,omitempty"`
	Batch        *ingestResult `json:"batch,omitempty"`
	Visible      int64         `json:"visible_operations"` // total_operations of api-savings?time_range=all after seeding
	DrainSeconds float64       `json:"drain_seconds"`      // until every acknowledged operation was queryable
	LineProtocol *ingestResult `json:"line_protocol,omitempty"`
	Queries      []queryResult `json:"queries,omitempty"`
	Raw          []rawResult   `json:"raw_sql,omitempty"`
	RSS          rssResult     `json:"rss"`
	InfluxdKB    int64         `json:"influxd_max_rss_kb,omitempty"`
	Error        string        `json:"error,omitempty"`
}

// benchResults is the whole run (the --json output).
type benchResults struct {
	Date      time.Time     `json:"date"`
	Machine   machine       `json:"machine"`
	GoVersion string        `json:"go_version"`
	Service   string        `json:"service"`
	Command   string        `json:"command"`
	Config    benchConfig   `json:"config"`
	Bare      *ingestResult `json:"bare,omitempty"`
	Stores    []storeResult `json:"stores"`
	Seconds   float64       `json:"seconds"`
	Rows      []row         `json:"rows"`
}

func (r *benchResults) store(name string) *storeResult {
	for i := range r.Stores {
		if r.Stores[i].Store == name {
			return &r.Stores[i]
		}
	}
	return nil
}

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	res, err := runBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	res.Command = "omnimemory-load bench " + strings.Join(args, " ")
	res.Rows = buildRows(res)
	if err := renderMarkdown(stdout, res); err != nil {
		return err
	}
	if cfg.JSONPath != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.JSONPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runBench runs every phase. Every child it starts is stopped before it
// returns, whatever happens.
func runBench(ctx context.Context, cfg benchConfig, progress io.Writer) (_ *benchResults, err error) {
	defer stopAll()
	started := time.Now()
	res := &benchResults{Date: started.UTC(), Machine: readMachine(), GoVersion: runtime.Version(), Config: cfg}
	step := func(format string, a ...any) { fmt.Fprintf(progress, "==> "+format+"\n", a...) }

	dir, err := os.MkdirTemp("", "omnimemory-load-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		step("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	bin := cfg.ServiceBin
	if bin == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		step("building the service")
		if bin, err = buildService(ctx, root, dir); err != nil {
			return nil, err
		}
	}
	res.Service = serviceVersion(bin)

	bodies := singleBodies(cfg.Seed, 4096)
	single := func(name, base string) ingestResult {
		c := newClient(cfg.Connections, 30*time.Second)
		defer c.CloseIdleConnections()
		return runLoad(ctx, loadSpec{
			name: name, conns: cfg.Connections, maxRequests: cfg.SingleOps, maxTime: cfg.Duration,
			opsPerReq: 1, maxErrors: 1000, progress: progress, spinner: true,
			send: singleSender(c, base, bodies),
		})
	}

	step("single-operation ingest on a bare net/http handler (%d connections, %s)", cfg.Connections, cfg.Duration)
	bare, base, err := startBare(ctx, dir)
	if err != nil {
		return nil, err
	}
	b := single("bare net/http", base)
	bare.stop(5 * time.Second)
	res.Bare = &b
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	for _, store := range cfg.Stores {
		sr, err := benchStore(ctx, cfg, bin, dir, store, single, progress, step)
		res.Stores = append(res.Stores, sr)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%s: %w", store, err)
		}
	}
	res.Seconds = time.Since(started).Seconds()
	res.Machine.LoadAfter = loadAverage()
	return res, nil
}

// serviceVersion answers the VCS revision the service binary was built from.
func serviceVersion(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "omnimemory-metrics"
	}
	rev, modified := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "omnimemory-metrics (no VCS revision)"
	}
	v := "omnimemory-metrics " + rev[:min(12, len(rev))]
	if modified {
		v += " with uncommitted changes"
	}
	return v
}

// benchStore runs the phases on one store: single-operation ingest, batch
// ingest (the seeding of the query phase), InfluxDB's own line-protocol rate
// (InfluxDB only), queries, and raw SQL (embedded store only).
func benchStore(ctx context.Context, cfg benchConfig, bin, dir, store string,
	single func(name, base string) ingestResult, progress io.Writer, step func(string, ...any),
) (sr storeResult, err error) {
	sr.Store = store
	sdir := filepath.Join(dir, store)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return sr, err
	}
	label := storeLabel(store)

	var settings []string
	var infl *influxServer
	var influxRSS *rssSampler
	if store == "influxdb" {
		step("starting influxd 1.8.3")
		if infl, err = startInfluxd(ctx, sdir); err != nil {
			return sr, err
		}
		defer infl.stop(15 * time.Second)
		influxRSS = sampleRSS(infl.pid(), 100*time.Millisecond)
		defer func() { sr.InfluxdKB = influxRSS.Stop() }()
		for _, db := range []string{"omnimemory", "lineprotocol"} {
			if err := infl.createDatabase(ctx, db); err != nil {
				return sr, err
			}
		}
		settings = []string{"OMNIMEMORY_DB_TYPE=influxdb", "INFLUXDB_URL=" + infl.URL,
			"INFLUXDB_BUCKET=omnimemory/autogen", "OMNIMEMORY_OUTBOX_DIR=" + filepath.Join(sdir, "outbox")}
	} else {
		settings = []string{"OMNIMEMORY_DB_TYPE=sqlite", "SQLITE_DB_PATH=" + filepath.Join(sdir, "metrics.db")}
	}
	step("starting the service on %s", label)
	svc, base, err := startService(ctx, bin, sdir, "omnimemory-metrics-"+store, settings...)
	if err != nil {
		return sr, err
	}
	defer svc.stop(30 * time.Second)
	rss := sampleRSS(svc.pid(), 100*time.Millisecond)
	defer func() {
		if hwm, err := readStatusKB(svc.pid(), "VmHWM"); err == nil {
			sr.RSS.HWMKB = hwm
		}
		sr.RSS.MaxKB = rss.Stop()
	}()
	fail := func(err error) (storeResult, error) {
		sr.Error = err.Error()
		if svc.exited() {
			err = fmt.Errorf("%w; the service exited: %s", err, svc.logTail())
		}
		return sr, err
	}

	// a) single operations.
	step("single-operation ingest on %s (%d connections, %s)", label, cfg.Connections, cfg.Duration)
	s := single(label, base)
	sr.Single = &s
	sr.RSS.SingleKB = rss.Mark()
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	// b) batches, which seed the query phase.
	end := time.Now()
	gen := newGenerator(cfg.Seed, end, 30*24*time.Hour)
	nBatches := (cfg.Ops + int64(cfg.Batch) - 1) / int64(cfg.Batch)
	if !cfg.Scatter {
		gen.slices = nBatches
	}
	sizeOf := func(seq int64) int { return int(min(int64(cfg.Batch), cfg.Ops-seq*int64(cfg.Batch))) }
	buildJSON := func(b []byte, seq int64, n int) []byte { return gen.appendBatchJSON(b, cfg.Seed, seq, n) }
	step("batch ingest on %s: %s operations over 30 days, %d per request, %d connections", label, thousands(cfg.Ops), cfg.Batch, cfg.BatchConnections)
	bc := newClient(cfg.BatchConnections, 2*time.Minute)
	bt := runLoad(ctx, loadSpec{
		name: label + " batches", conns: cfg.BatchConnections, maxRequests: nBatches, maxTime: cfg.SeedTimeout,
		opsPerReq: cfg.Batch, maxErrors: 20, progress: progress,
		send: batchSender(bc, base+"/track/tool-operations", "application/json", http.StatusOK, sizeOf, buildJSON),
	})
	bc.CloseIdleConnections()
	sr.Batch = &bt
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// Every acknowledged operation must be queryable before the queries run
	// (InfluxDB: the outbox may still hold some).
	want := s.Operations + bt.Operations
	drainStart := time.Now()
	if infl != nil {
		// Counted in influxd itself: the service's all-time answer may take
		// longer than the drain.
		sr.Visible, err = waitInfluxCount(ctx, infl, "omnimemory", want, 5*time.Minute)
	} else {
		sr.Visible, err = waitVisible(ctx, base, want, 5*time.Minute)
	}
	sr.DrainSeconds = time.Since(drainStart).Seconds()
	if err != nil {
		return fail(err)
	}
	sr.RSS.BatchKB = rss.Mark()

	if infl != nil {
		step("InfluxDB's own line-protocol writes of the same points (%d per request, %d connections)", cfg.Batch, cfg.BatchConnections)
		buildLP := func(b []byte, seq int64, n int) []byte { return gen.appendBatchLines(b, cfg.Seed, seq, n) }
		lc := newClient(cfg.BatchConnections, 2*time.Minute)
		lp := runLoad(ctx, loadSpec{
			name: "line protocol", conns: cfg.BatchConnections, maxRequests: nBatches, maxTime: cfg.SeedTimeout,
			opsPerReq: cfg.Batch, maxErrors: 20, progress: progress,
			send: batchSender(lc, infl.URL+"/api/v2/write?bucket=lineprotocol/autogen&precision=ns", "text/plain; charset=utf-8", http.StatusNoContent, sizeOf, buildLP),
		})
		lc.CloseIdleConnections()
		sr.LineProtocol = &lp
		rss.Mark() // the service was idle meanwhile
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
	}

	// c) queries.
	step("queries on %s: %d requests per range, at most %s each", label, cfg.Requests, cfg.QueryBudget)
	sr.Queries, err = runQueries(ctx, base, querySpec{requests: cfg.Requests, budget: cfg.QueryBudget, timeout: cfg.QueryTimeout, progress: progress, label: label + " queries"})
	sr.RSS.QueryKB = rss.Mark()
	if err != nil {
		return fail(err)
	}
	if store == "sqlite" {
		step("plain SQL over the raw rows (read-only), at most %s per window", cfg.RawBudget)
		sr.Raw, err = runRawSQL(ctx, filepath.Join(sdir, "metrics.db"), querySpec{requests: cfg.Requests, budget: cfg.RawBudget, progress: progress, label: "raw SQL"})
		if err != nil {
			return fail(err)
		}
	}
	return sr, nil
}

func storeLabel(store string) string {
	if store == "influxdb" {
		return "InfluxDB"
	}
	return "embedded"
}

// waitInfluxCount polls InfluxQL's count of operation points in db
// until it reaches want (or more), at most timeout; it answers the last count.
func waitInfluxCount(ctx context.Context, s *influxServer, db string, want int64, timeout time.Duration) (int64, error) {
	c := newClient(1, time.Minute)
	defer c.CloseIdleConnections()
	u := s.URL + "/query?" + url.Values{"db": {db}, "q": {`SELECT count("` + schema.FieldTokensActual + `") FROM "` + schema.Operation + `"`}}.Encode()
	deadline := time.Now().Add(timeout)
	var got int64
	for {
		b, err := do(ctx, c, http.MethodGet, u, "", nil, http.StatusOK)
		if err == nil {
			got, err = influxCount(b)
			if err == nil && got >= want {
				return got, nil
			}
		}
		if ctx.Err() != nil {
			return got, ctx.Err()
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("after %s InfluxDB holds %d of %d acknowledged operations (last error: %v)", timeout, got, want, err)
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// influxCount reads the count of an InfluxQL count() answer; no series
// (nothing written yet) is 0.
func influxCount(body []byte) (int64, error) {
	var v struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return 0, err
	}
	if len(v.Results) == 0 {
		return 0, fmt.Errorf("no result in %.200s", body)
	}
	if v.Results[0].Error != "" {
		return 0, errors.New(v.Results[0].Error)
	}
	if len(v.Results[0].Series) == 0 || len(v.Results[0].Series[0].Values) == 0 {
		return 0, nil
	}
	row := v.Results[0].Series[0].Values[0]
	if len(row) < 2 {
		return 0, fmt.Errorf("unexpected row in %.200s", body)
	}
	n, ok := row[1].(json.Number)
	if !ok {
		return 0, fmt.Errorf("unexpected count in %.200s", body)
	}
	return n.Int64()
}

// waitVisible polls api-savings?time_range=all until it counts want
// operations (or more), at most timeout; it answers the last count.
func waitVisible(ctx context.Context, base string, want int64, timeout time.Duration) (int64, error) {
	c := newClient(1, 2*time.Minute)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var got int64
	for {
		b, err := do(ctx, c, http.MethodGet, base+"/metrics/api-savings?time_range=all", "", nil, http.StatusOK)
		if err == nil {
			var v struct {
				TotalOperations int64 `json:"total_operations"`
			}
			if err = json.Unmarshal(b, &v); err == nil {
				got = v.TotalOperations
				if got >= want {
					return got, nil
				}
			}
		}
		if ctx.Err() != nil {
			return got, ctx.Err()
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("after %s the service counts %d of %d acknowledged operations (last error: %v)", timeout, got, want, err)
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
