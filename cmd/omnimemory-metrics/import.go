package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer"
	"github.com/omnimemory/omnimemory-metrics/internal/pgurl"
	"github.com/omnimemory/omnimemory-metrics/internal/textfmt"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// storeSettings are the settings that choose and reach the store, shared by
// serving and the import.
var storeSettings = []string{
	"db-type", "sqlite-db-path", "database-url", "influxdb-url", "influxdb-token", "influxdb-org", "influxdb-bucket",
	"outbox-dir", "outbox-max-bytes", "write-timeout", "query-timeout", "influx-cache-ttl",
}

// outboxDrainWait bounds how long the import waits, at its end, for
// InfluxDB to take what its outbox still holds.
const outboxDrainWait = 60 * time.Second

// runImport serves `omnimemory-metrics import`: 0 when every row was
// imported or skipped, 1 on a failure or an interruption (run it again to
// continue), 2 for bad flags.
func runImport(ctx context.Context, args []string, p proc) int {
	getenv, stdout, stderr := p.getenv, p.stdout, p.stderr
	const name = "import"
	fs := commandFlags(name, "--from FILE|URL [flags]",
		"copy the operations and sessions of the original service's database (its SQLite file, or PostgreSQL) into the configured store; "+
			"run it again after an interruption to continue, or later to add the rows written since", stderr)
	from := fs.String("from", "", "the original service's database: its SQLite file, or a postgresql:// or postgres:// URL (required; read-only; the password is never printed)")
	checkpointPath := fs.String("checkpoint", "", "checkpoint file (default: import-<hash>.json beside the store's local files)")
	skippedLog := fs.String("skipped-log", "", "file to write one JSON line per skipped row to")
	batchSize := fs.Int("batch-size", importer.DefaultBatchSize, "operations per store write (1 to 10000)")
	dryRun := fs.Bool("dry-run", false, "read and check every row, count what would be imported and skipped, write nothing")
	quiet := fs.Bool("quiet", false, "no progress bar (there is none either when standard error is not a terminal)")
	zone := fs.String("source-time-zone", "UTC", "time zone of source times written without an offset (an IANA name or Local)")
	resolve := settingFlags(fs, getenv, storeSettings...)
	if code, ok := parseCommand(fs, args, stderr, name); !ok {
		return code
	}
	if *from == "" {
		return usageError(stderr, name, errors.New("--from is required: the original service's SQLite file or PostgreSQL URL"))
	}
	if *batchSize < 1 || *batchSize > 10000 {
		return usageError(stderr, name, fmt.Errorf("--batch-size=%d: must be 1 to 10000", *batchSize))
	}
	loc, err := time.LoadLocation(*zone)
	if err != nil {
		return usageError(stderr, name, fmt.Errorf("--source-time-zone=%q: %v", *zone, err))
	}
	cfg, err := resolve()
	if err != nil {
		return usageError(stderr, name, err)
	}
	// source names the source without its password; opts.Source keeps it
	// to connect.
	source, err := importer.SourceName(*from)
	if err != nil {
		return usageError(stderr, name, fmt.Errorf("--from: %v", err))
	}
	src := source
	if pgurl.Is(*from) {
		src = *from
	}
	dest := destination(cfg)
	if source == dest {
		return usageError(stderr, name, fmt.Errorf("--from %s is the configured store itself", source))
	}
	if *checkpointPath == "" {
		*checkpointPath = defaultCheckpoint(cfg, source, dest)
	}

	opts := importer.Options{
		Source: src, Destination: dest, Checkpoint: *checkpointPath, SkippedLog: *skippedLog,
		BatchSize: *batchSize, DryRun: *dryRun, Location: loc, Now: p.now,
	}
	if !*quiet && isTerminal(stderr) {
		opts.Progress = &barProgress{w: stderr}
	}
	logger := commandLogger(stderr)
	var store tsdb.Store
	if !*dryRun {
		if store, err = openStore(ctx, cfg, prometheus.NewRegistry(), logger, false); err != nil {
			fmt.Fprintf(stderr, "omnimemory-metrics import: %v\n", err)
			return 1
		}
		opts.Store = store
	}
	sum, err := importer.Run(ctx, opts)
	if p, ok := opts.Progress.(*barProgress); ok {
		p.end()
	}
	if store != nil {
		err = errors.Join(err, finishStore(store, ctx.Err() == nil, stderr))
	}
	printImportSummary(stdout, sum, source, dest)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintf(stderr, "omnimemory-metrics import: interrupted; run the same command again to continue\n")
	default:
		fmt.Fprintf(stderr, "omnimemory-metrics import: %v\n", err)
		if sum.Checkpoint != "" {
			fmt.Fprintf(stderr, "omnimemory-metrics import: what was imported is kept; run the same command again to continue\n")
		}
	}
	return 1
}

// finishStore waits, for InfluxDB and when wait is set, until its outbox is
// delivered (or outboxDrainWait passes: what is left is delivered when the
// service or the import next starts with the same outbox), and closes the
// store.
func finishStore(store tsdb.Store, wait bool, stderr io.Writer) error {
	if s, ok := store.(interface{ Stats() influx.Stats }); ok && wait {
		deadline := time.Now().Add(outboxDrainWait)
		for s.Stats().OutboxRecords > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := s.Stats().OutboxRecords; n > 0 {
			fmt.Fprintf(stderr, "omnimemory-metrics import: InfluxDB has not yet taken %d batches; they stay in the outbox and are delivered when the service starts with the same --outbox-dir\n", n)
		}
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}
	return nil
}

// destination names the configured store, for the checkpoint and the
// summary: never with a password.
func destination(cfg config) string {
	switch cfg.DBType {
	case dbTypeInflux:
		return "influxdb:" + cfg.InfluxURL + " bucket " + cfg.InfluxBucket
	case dbTypePostgres:
		return pgurl.Redact(cfg.DatabaseURL)
	}
	if abs, err := filepath.Abs(cfg.SQLitePath); err == nil {
		return "sqlite:" + abs
	}
	return "sqlite:" + cfg.SQLitePath
}

// defaultCheckpoint is the checkpoint of importing source into dest: a file
// beside the store's local files (the SQLite file's folder, or the folder
// of InfluxDB's outbox; on PostgreSQL, which has none, the folder
// --sqlite-db-path names) named after both, so that each pair has its own.
// Neither name holds a password, so changing one keeps the checkpoint.
func defaultCheckpoint(cfg config, source, dest string) string {
	dir := filepath.Dir(cfg.SQLitePath)
	if cfg.DBType == dbTypeInflux {
		dir = filepath.Dir(cfg.OutboxDir)
	}
	sum := sha256.Sum256([]byte(source + "\n" + dest))
	return filepath.Join(dir, "import-"+hex.EncodeToString(sum[:8])+".json")
}

// printImportSummary writes the outcome: one summary line, then the skipped
// rows by reason.
func printImportSummary(w io.Writer, s importer.Summary, source, dest string) {
	verb, ops, sess := "imported", &s.Operations, &s.Sessions
	if s.DryRun {
		verb = "dry run: would import"
	}
	rate := 0.0
	if secs := s.Elapsed.Seconds(); secs > 0 {
		rate = float64(s.RowsThisRun) / secs
	}
	fmt.Fprintf(w, "%s %s of %s operations (%s skipped) and %s of %s sessions (%s created, %s merged, %s skipped) from %s into %s; %s rows in %s (%s rows/s)\n",
		verb, thousands(ops.Imported), thousands(ops.Total), thousands(ops.SkippedTotal()),
		thousands(sess.Imported+sess.Merged), thousands(sess.Total), thousands(sess.Imported), thousands(sess.Merged),
		thousands(sess.SkippedTotal()), source, dest, thousands(s.RowsThisRun),
		s.Elapsed.Round(time.Millisecond), thousands(int64(rate+0.5)))
	for _, t := range []struct {
		name string
		c    *importer.Counts
	}{{"operations", ops}, {"sessions", sess}} {
		if t.c.SkippedTotal() == 0 {
			continue
		}
		fmt.Fprintf(w, "skipped %s by reason:\n", t.name)
		for _, r := range importer.Reasons {
			if n := t.c.Skipped[r]; n > 0 {
				fmt.Fprintf(w, "  %-24s %10s\n", r, thousands(n))
			}
		}
	}
	switch {
	case s.DryRun:
		fmt.Fprintf(w, "nothing was written; ids already in the store are only recognised by a real import\n")
	case s.Checkpoint != "":
		note := ""
		if s.Resumed {
			note = " (the counts include the earlier runs it records)"
		}
		fmt.Fprintf(w, "checkpoint: %s%s\n", s.Checkpoint, note)
	}
}

// thousands formats n with comma separators: 1234567 -> "1,234,567".
func thousands(n int64) string { return textfmt.Thousands(n) }

// barProgress draws the import's progress on a terminal: rows done of the
// total, rate, elapsed and remaining time, one bar per table.
type barProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (p *barProgress) Phase(name string, total int64) {
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-10s", name)),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(total > 0),
		progressbar.OptionShowElapsedTimeOnFinish(),
	)
}

func (p *barProgress) Advance(n int) {
	if p.bar != nil {
		_ = p.bar.Add(n)
	}
}

func (p *barProgress) PhaseDone() {
	if p.bar == nil {
		return
	}
	_ = p.bar.Finish()
	fmt.Fprintln(p.w)
	p.bar = nil
}

// end ends the line of a bar left unfinished by an interruption.
func (p *barProgress) end() {
	if p.bar != nil {
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}
