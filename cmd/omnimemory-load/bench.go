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
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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
	QueryWrites      int           `json:"query_writes"`
	StreamDuration   time.Duration `json:"stream_duration_ns"`
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
	fs.IntVar(&c.QueryWrites, "query-writes", 50, "single operations/s written beside the query phase, so that every answer's trailing edge holds fresh writes (0: none)")
	fs.DurationVar(&c.StreamDuration, "stream-duration", 5*time.Second, "time of the stream phase: single ops on --connections with one SSE subscriber timing every event (0: no stream phase)")
	fs.DurationVar(&c.RawBudget, "raw-budget", 5*time.Second, "time bound per window of the raw-SQL reference")
	fs.StringVar(&stores, "stores", "sqlite,influxdb,postgresql", "stores to benchmark, comma-separated: sqlite, influxdb, postgresql")
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
		switch s = strings.TrimSpace(s); {
		case s == "":
		case slices.ContainsFunc(storeKinds, func(k storeKind) bool { return k.name == s }):
			if !slices.Contains(c.Stores, s) {
				c.Stores = append(c.Stores, s)
			}
		default:
			return c, usagef("--stores: unknown store %q (sqlite, influxdb, postgresql)", s)
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
	case c.QueryWrites < 0 || c.QueryWrites > 10_000:
		return c, usagef("--query-writes must be 0..10000")
	case c.StreamDuration < 0 || c.StreamDuration > time.Hour:
		return c, usagef("--stream-duration must be 0..1h")
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
	// BatchReference is the same operations written without the service
	// (InfluxDB's line protocol, PostgreSQL's COPY).
	BatchReference *ingestResult `json:"batch_reference,omitempty"`
	Queries        []queryResult `json:"queries,omitempty"`
	// Stream is the live stream beside single operations.
	Stream *streamResult `json:"stream,omitempty"`
	Raw    []rawResult   `json:"raw_sql,omitempty"`
	RSS    rssResult     `json:"rss"`
	// ServerKB is the database server's peak memory: influxd's VmRSS, the
	// Pss of all PostgreSQL's processes.
	ServerKB int64  `json:"server_max_kb,omitempty"`
	Error    string `json:"error,omitempty"`
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
		sr, err := benchStore(ctx, cfg, bin, dir, store, single, bodies, progress, step)
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

// storeKind names a store and its rows in the table.
type storeKind struct {
	name  string // as --stores and OMNIMEMORY_DB_TYPE write it
	label string // the store column of its rows
	// rateTargets: the single-operation and batch rates are held to the
	// targets (the embedded store's, and PostgreSQL's, the production
	// store's).
	rateTargets bool
	reference   string // the store column of its same-run batch reference ("": none)
	refShort    string // the same in "x % of ..."
	server      string // the store column of its database server's memory ("": none)
	serverFig   string // the figure column of that row
}

// storeKinds is every store the bench runs, in the order of its rows.
var storeKinds = []storeKind{
	{name: "sqlite", label: "embedded", rateTargets: true},
	{name: "influxdb", label: "InfluxDB", reference: "InfluxDB line protocol", refShort: "line protocol",
		server: "influxd", serverFig: "influxd VmRSS peak (not the service)"},
	{name: "postgresql", label: "PostgreSQL", rateTargets: true, reference: "PostgreSQL COPY", refShort: "COPY",
		server: "PostgreSQL server", serverFig: "server peak, Pss summed over its processes (not the service)"},
}

func kindOf(store string) storeKind {
	for _, k := range storeKinds {
		if k.name == store {
			return k
		}
	}
	return storeKind{name: store, label: store}
}

func storeLabel(store string) string { return kindOf(store).label }

// database is what the service of one store runs on (nothing for the
// embedded store, influxd or PostgreSQL started beside it), and every phase
// that differs between the stores.
type database struct {
	settings []string // the service's environment
	// memory samples the server's memory (nil: no server).
	memory func() *rssSampler
	// stored waits until the database itself holds want operations and
	// answers its count (nil: the service's all-time answer counts them).
	stored func(ctx context.Context, want int64) (int64, error)
	// reference answers the sender of the same-run batch reference, which
	// writes the same operations without the service, and a cleanup (nil:
	// no reference).
	reference func(ctx context.Context, g *generator, sizeOf func(seq int64) int) (sendFunc, func(), error)
	// raw opens the service's database for the plain SQL over the raw rows
	// (nil: no such reference).
	raw  func() (*rawDB, error)
	stop func()
}

// startDatabase starts the database of store, with its data under sdir.
func startDatabase(ctx context.Context, cfg benchConfig, store, sdir string, step func(string, ...any)) (*database, error) {
	switch store {
	case "influxdb":
		step("starting influxd 1.8.3")
		infl, err := startInfluxd(ctx, sdir)
		if err != nil {
			return nil, err
		}
		db := &database{
			settings: []string{"OMNIMEMORY_DB_TYPE=influxdb", "INFLUXDB_URL=" + infl.URL,
				"INFLUXDB_BUCKET=omnimemory/autogen", "OMNIMEMORY_OUTBOX_DIR=" + filepath.Join(sdir, "outbox")},
			memory: func() *rssSampler { return sampleRSS(infl.pid(), 100*time.Millisecond) },
			// Counted in influxd itself: the service's all-time answer may
			// take longer than the outbox's drain.
			stored: func(ctx context.Context, want int64) (int64, error) {
				return waitInfluxCount(ctx, infl, "omnimemory", want, 5*time.Minute)
			},
			reference: func(_ context.Context, g *generator, sizeOf func(int64) int) (sendFunc, func(), error) {
				buildLP := func(b []byte, seq int64, n int) []byte { return g.appendBatchLines(b, cfg.Seed, seq, n) }
				lc := newClient(cfg.BatchConnections, 2*time.Minute)
				return batchSender(lc, infl.URL+"/api/v2/write?bucket=lineprotocol/autogen&precision=ns", "text/plain; charset=utf-8", http.StatusNoContent, sizeOf, buildLP),
					lc.CloseIdleConnections, nil
			},
			stop: func() { infl.stop(15 * time.Second) },
		}
		for _, name := range []string{"omnimemory", "lineprotocol"} {
			if err := infl.createDatabase(ctx, name); err != nil {
				db.stop()
				return nil, err
			}
		}
		return db, nil
	case "postgresql":
		step("starting PostgreSQL 15 (%s)", strings.Join(postgresSettings, ", "))
		pg, err := startPostgres(ctx)
		if err != nil {
			return nil, err
		}
		db := &database{
			settings: []string{"OMNIMEMORY_DB_TYPE=postgresql", "DATABASE_URL=" + pg.URL("omnimemory")},
			// Pss, not VmRSS: its processes share the shared buffers.
			memory: func() *rssSampler { return sampleTreePSS(pg.pid(), 500*time.Millisecond) },
			reference: func(ctx context.Context, g *generator, sizeOf func(int64) int) (sendFunc, func(), error) {
				conns := make([]*pgx.Conn, cfg.BatchConnections)
				closeAll := func() {
					for _, c := range conns {
						if c != nil {
							c.Close(context.Background())
						}
					}
				}
				for i := range conns {
					c, err := pgx.Connect(ctx, pg.URL("copyref"))
					if err != nil {
						closeAll()
						return nil, nil, err
					}
					conns[i] = c
				}
				return copySender(conns, g, cfg.Seed, sizeOf), closeAll, nil
			},
			raw:  func() (*rawDB, error) { return openRawPostgres(pg.URL("omnimemory")) },
			stop: pg.stop,
		}
		err = pg.exec(ctx, "postgres", "CREATE DATABASE omnimemory", "CREATE DATABASE copyref")
		if err == nil {
			err = pg.exec(ctx, "copyref", copyTable)
		}
		if err == nil {
			step("writing %d MB of WAL for the server to reuse, as a server that has run a while does", walWarmSegments*16)
			err = pg.warmWAL(ctx, walWarmSegments)
		}
		if err != nil {
			db.stop()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		return db, nil
	default:
		path := filepath.Join(sdir, "metrics.db")
		return &database{
			settings: []string{"OMNIMEMORY_DB_TYPE=sqlite", "SQLITE_DB_PATH=" + path},
			raw:      func() (*rawDB, error) { return openRawSQLite(path) },
			stop:     func() {},
		}, nil
	}
}

// benchStore runs the phases on one store: single-operation ingest, batch
// ingest (the seeding of the query phase), the same-run batch reference
// (InfluxDB's line protocol, PostgreSQL's COPY), queries, and plain SQL over
// the raw rows (embedded store, PostgreSQL).
func benchStore(ctx context.Context, cfg benchConfig, bin, dir, store string,
	single func(name, base string) ingestResult, bodies [][]byte, progress io.Writer, step func(string, ...any),
) (sr storeResult, err error) {
	sr.Store = store
	sdir := filepath.Join(dir, store)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return sr, err
	}
	kind := kindOf(store)
	label := kind.label

	db, err := startDatabase(ctx, cfg, store, sdir, step)
	if err != nil {
		return sr, err
	}
	defer db.stop()
	if db.memory != nil {
		serverMem := db.memory()
		defer func() { sr.ServerKB = serverMem.Stop() }()
	}
	step("starting the service on %s", label)
	svc, base, err := startService(ctx, bin, sdir, "omnimemory-metrics-"+store, db.settings...)
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

	// The live stream beside single operations.
	if cfg.StreamDuration > 0 {
		step("the stream on %s: one subscriber beside single ops (%d connections, %s)", label, cfg.Connections, cfg.StreamDuration)
		st, err := runStream(ctx, base, cfg.Connections, cfg.StreamDuration, bodies, progress, label+" stream")
		if err != nil {
			return fail(fmt.Errorf("stream: %w", err))
		}
		sr.Stream = &st
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
	batches := func(name string, send sendFunc) ingestResult {
		return runLoad(ctx, loadSpec{
			name: name, conns: cfg.BatchConnections, maxRequests: nBatches, maxTime: cfg.SeedTimeout,
			opsPerReq: cfg.Batch, maxErrors: 20, progress: progress, send: send,
		})
	}
	step("batch ingest on %s: %s operations over 30 days, %d per request, %d connections", label, thousands(cfg.Ops), cfg.Batch, cfg.BatchConnections)
	bc := newClient(cfg.BatchConnections, 2*time.Minute)
	bt := batches(label+" batches", batchSender(bc, base+"/track/tool-operations", "application/json", http.StatusOK, sizeOf, buildJSON))
	bc.CloseIdleConnections()
	sr.Batch = &bt
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// Every acknowledged operation must be queryable before the queries run
	// (InfluxDB: the outbox may still hold some).
	want := s.Operations + bt.Operations
	if sr.Stream != nil {
		want += sr.Stream.Acked
	}
	drainStart := time.Now()
	if db.stored != nil {
		sr.Visible, err = db.stored(ctx, want)
	} else {
		sr.Visible, err = waitVisible(ctx, base, want, 5*time.Minute)
	}
	sr.DrainSeconds = time.Since(drainStart).Seconds()
	if err != nil {
		return fail(err)
	}
	sr.RSS.BatchKB = rss.Mark()

	if db.reference != nil {
		step("%s: the same operations without the service (%d per request, %d connections)", kind.reference, cfg.Batch, cfg.BatchConnections)
		send, done, err := db.reference(ctx, gen, sizeOf)
		if err != nil {
			return fail(err)
		}
		ref := batches(kind.reference, send)
		done()
		sr.BatchReference = &ref
		rss.Mark() // the service was idle meanwhile
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
	}

	// c) queries.
	step("queries on %s: %d requests per range, at most %s each; %d single ops/s written meanwhile", label, cfg.Requests, cfg.QueryBudget, cfg.QueryWrites)
	qs := querySpec{requests: cfg.Requests, budget: cfg.QueryBudget, timeout: cfg.QueryTimeout, progress: progress, label: label + " queries"}
	if cfg.QueryWrites > 0 {
		wc := newClient(1, 30*time.Second)
		defer wc.CloseIdleConnections()
		qs.trickle, qs.trickleRate = singleSender(wc, base, bodies), cfg.QueryWrites
	}
	sr.Queries, err = runQueries(ctx, base, qs)
	sr.RSS.QueryKB = rss.Mark()
	if err != nil {
		return fail(err)
	}
	if db.raw != nil {
		step("plain SQL over the raw rows of %s (read-only), at most %s per window", label, cfg.RawBudget)
		r, err := db.raw()
		if err == nil {
			sr.Raw, err = runRawSQL(ctx, r, querySpec{requests: cfg.Requests, budget: cfg.RawBudget, progress: progress, label: "raw SQL"})
		}
		if err != nil {
			return fail(err)
		}
	}
	return sr, nil
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
