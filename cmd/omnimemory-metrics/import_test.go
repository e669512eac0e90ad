package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer/legacytest"

	"github.com/jackc/pgx/v5"

	"github.com/omnimemory/omnimemory-metrics/exporter/importer"
	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// legacyOps is the number of valid operations of the generated databases.
const legacyOps = 3000

// runImportCmd runs `omnimemory-metrics import args...` in this process.
func runImportCmd(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code, ok := runCommand(context.Background(), append([]string{"import"}, args...), testProc(vars, &out, &errOut, nil))
	if !ok {
		t.Fatal("import is not a command")
	}
	return code, out.String(), errOut.String()
}

// wantSummary checks the import's output against what db must give.
func wantSummary(t *testing.T, out string, db *legacytest.DB) {
	t.Helper()
	first, _, _ := strings.Cut(out, "\n")
	opsTaken := int64(len(db.Ops))
	sessSkipped := int64(0)
	for _, n := range db.SessSkipped {
		sessSkipped += n
	}
	want := fmt.Sprintf("imported %s of %s operations (%s skipped) and %s of %s sessions (%s created, 0 merged, %s skipped)",
		thousands(opsTaken), thousands(db.OpRows), thousands(db.SkippedTotal()),
		thousands(int64(len(db.Sessions))), thousands(db.SessRows), thousands(int64(len(db.Sessions))), thousands(sessSkipped))
	if !strings.HasPrefix(first, want) {
		t.Errorf("summary line\n%s\nwant it to start with\n%s", first, want)
	}
	for _, part := range []struct {
		title  string
		counts map[string]int64
	}{{"skipped operations by reason:", db.Skipped}, {"skipped sessions by reason:", db.SessSkipped}} {
		got := skippedSection(out, part.title)
		if !reflect.DeepEqual(got, part.counts) {
			t.Errorf("%s\n got %v\nwant %v", part.title, got, part.counts)
		}
	}
}

// skippedSection reads the counts by reason under title in an import's
// output (nil when it is not there).
func skippedSection(out, title string) map[string]int64 {
	_, section, ok := strings.Cut(out, title+"\n")
	if !ok {
		return nil
	}
	got := map[string]int64{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		var reason, n string
		fmt.Sscan(line, &reason, &n)
		var v int64
		fmt.Sscan(strings.ReplaceAll(n, ",", ""), &v)
		got[reason] = v
	}
	return got
}

// skippedLogCounts counts the lines of a skipped-rows log by table and
// reason.
func skippedLogCounts(t *testing.T, path string) map[string]map[string]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]int64{}
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var l struct {
			Table, Reason, ID string
			Rowid             int64
			Details           []string
		}
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("skipped-rows log line %q: %v", lines.Text(), err)
		}
		if (l.Rowid <= 0 && (l.Table != "tool_operations" || l.ID == "")) || len(l.Details) == 0 {
			t.Errorf("skipped-rows log line without rowid (or id) or details: %s", lines.Text())
		}
		if out[l.Table] == nil {
			out[l.Table] = map[string]int64{}
		}
		out[l.Table][l.Reason]++
	}
	return out
}

func openSQLite(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestImportIntoTheEmbeddedStore imports a database of the original
// service, bad rows of every kind included, and checks every figure: the
// operations one by one, the savings and breakdowns of every range, the
// sessions, the skip counts in the summary and in the skipped-rows log. A
// second run finds nothing left to do; a dry run counts the same without
// writing.
func TestImportIntoTheEmbeddedStore(t *testing.T) {
	dir := t.TempDir()
	db := legacytest.Build(t, dir, legacyOps)
	dst := filepath.Join(dir, "store", "metrics.db")
	vars := map[string]string{"SQLITE_DB_PATH": dst}
	skippedLog := filepath.Join(dir, "skipped.jsonl")

	dryLog := filepath.Join(dir, "dry.jsonl")
	code, out, errOut := runImportCmd(t, vars, "--from", db.Path, "--dry-run", "--skipped-log", dryLog)
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "dry run: would import ") {
		t.Errorf("dry run summary: %s", out)
	}
	wantSummary(t, strings.Replace(out, "dry run: would import", "imported", 1), db)
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the dry run created the store (%v)", err)
	}

	start := time.Now()
	code, out, errOut = runImportCmd(t, vars, "--from", db.Path, "--skipped-log", skippedLog, "--quiet")
	elapsed := time.Since(start)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if errOut != "" {
		t.Errorf("unexpected standard error: %s", errOut)
	}
	wantSummary(t, out, db)
	t.Logf("%d source rows imported in %v (%.0f rows/s):\n%s", db.OpRows+db.SessRows, elapsed.Round(time.Millisecond),
		float64(db.OpRows+db.SessRows)/elapsed.Seconds(), out)
	logged := skippedLogCounts(t, skippedLog)
	if !reflect.DeepEqual(logged["tool_operations"], db.Skipped) || !reflect.DeepEqual(logged["tool_sessions"], db.SessSkipped) {
		t.Errorf("skipped-rows log counts %v, want operations %v and sessions %v", logged, db.Skipped, db.SessSkipped)
	}
	if dry := skippedLogCounts(t, dryLog); !reflect.DeepEqual(dry, logged) {
		t.Errorf("the dry run logged %v, the import %v", dry, logged)
	}
	checkpoint := defaultCheckpoint(config{SQLitePath: dst}, db.Path, "sqlite:"+dst)
	if !strings.Contains(out, "checkpoint: "+checkpoint) {
		t.Errorf("summary does not name the checkpoint %s:\n%s", checkpoint, out)
	}

	// Run again: nothing left; the summary still gives the whole import.
	code, again, errOut := runImportCmd(t, vars, "--from", db.Path, "--skipped-log", skippedLog, "--quiet")
	if code != 0 {
		t.Fatalf("second run: exit %d: %s%s", code, again, errOut)
	}
	wantSummary(t, again, db)
	if !strings.Contains(again, "; 0 rows in ") {
		t.Errorf("the second run took rows again:\n%s", again)
	}
	if logged2 := skippedLogCounts(t, skippedLog); !reflect.DeepEqual(logged2, logged) {
		t.Errorf("the second run changed the skipped-rows log: %v", logged2)
	}

	db.Check(t, openSQLite(t, dst))
}

// importedRowid answers the rowid of the last source operation the
// checkpoint at path records as imported, 0 before any.
func importedRowid(path string) int64 {
	var cp struct {
		Operations struct {
			Done struct {
				Rowid int64 `json:"rowid"`
			} `json:"done"`
		} `json:"operations"`
	}
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &cp) != nil {
		return 0
	}
	return cp.Operations.Done.Rowid
}

// TestImportKilledAtAnyPoint runs the import as a child process and kills
// it with SIGKILL until a run completes: the first at 50 ms, wherever it
// is then, and the first runs as soon as the import of operations has
// moved past where the last kill left it (so that the kills land in its
// middle however fast this machine imports), the next at growing delays. Every source row ends up stored exactly once,
// and the summary is that of an uninterrupted import.
func TestImportKilledAtAnyPoint(t *testing.T) {
	dir := t.TempDir()
	db := legacytest.Build(t, dir, legacyOps)
	dst := filepath.Join(dir, "metrics.db")
	checkpoint := filepath.Join(dir, "checkpoint.json")
	skippedLog := filepath.Join(dir, "skipped.jsonl")
	args := "import --from " + db.Path + " --batch-size 25 --checkpoint " + checkpoint + " --skipped-log " + skippedLog
	if strings.ContainsAny(dir, " \t") {
		t.Skip("the child's arguments are split at spaces")
	}
	const midwayKills = 3
	var out bytes.Buffer
	kills, midway, lastRowid := 0, 0, int64(0)
	for attempt := 0; ; attempt++ {
		if attempt == 40 {
			t.Fatalf("the import never completed in %d attempts", attempt)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "OMNIMEMORY_TEST_RUN_MAIN=1", "OMNIMEMORY_TEST_ARGS="+args, "SQLITE_DB_PATH="+dst)
		out.Reset()
		var errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// killNow answers whether this run is to be killed now: the first
		// also 50 ms after its start, wherever it is then.
		started := time.Now()
		killNow := func() bool {
			return importedRowid(checkpoint) > lastRowid || attempt == 0 && time.Since(started) > 50*time.Millisecond
		}
		if midway >= midwayKills {
			deadline := time.Now().Add(time.Duration(150+attempt*attempt*40) * time.Millisecond)
			killNow = func() bool { return time.Now().After(deadline) }
		}
		tick := time.NewTicker(time.Millisecond)
		killed, exitErr := false, error(nil)
	wait:
		for {
			select {
			case exitErr = <-done:
				break wait
			case <-tick.C:
				if killNow() {
					_ = cmd.Process.Kill()
					<-done
					killed = true
					break wait
				}
			}
		}
		tick.Stop()
		if killed {
			kills++
			if rowid := importedRowid(checkpoint); rowid > lastRowid {
				midway++
				lastRowid = rowid
			}
			continue
		}
		if exitErr != nil {
			t.Fatalf("attempt %d: %v\n%s%s", attempt, exitErr, out.String(), errOut.String())
		}
		t.Logf("completed on attempt %d after %d kills (%d while operations were being imported)", attempt+1, kills, midway)
		break
	}
	if midway < midwayKills {
		t.Errorf("only %d of %d kills hit the import of operations", midway, kills)
	}
	wantSummary(t, out.String(), db)
	if !strings.Contains(out.String(), "(the counts include the earlier runs it records)") && kills > 0 {
		t.Errorf("the summary does not say it resumed:\n%s", out.String())
	}
	logged := skippedLogCounts(t, skippedLog)
	if !reflect.DeepEqual(logged["tool_operations"], db.Skipped) || !reflect.DeepEqual(logged["tool_sessions"], db.SessSkipped) {
		t.Errorf("skipped-rows log counts %v, want operations %v and sessions %v", logged, db.Skipped, db.SessSkipped)
	}
	db.Check(t, openSQLite(t, dst))
}

// TestImportIntoInfluxDB imports into a real InfluxDB and checks the same
// figures; a second import with a new checkpoint finds every operation
// stored already.
func TestImportIntoInfluxDB(t *testing.T) {
	srv := realtools.NewInfluxd(t)
	dir := t.TempDir()
	db := legacytest.Build(t, dir, legacyOps)
	outbox := filepath.Join(dir, "outbox")
	vars := influxVars(srv, srv.NewBucket(t), outbox)
	start := time.Now()
	code, out, errOut := runImportCmd(t, vars, "--from", db.Path, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	elapsed := time.Since(start)
	wantSummary(t, out, db)
	t.Logf("%d source rows imported into InfluxDB in %v (%.0f rows/s)", db.OpRows+db.SessRows, elapsed.Round(time.Millisecond),
		float64(db.OpRows+db.SessRows)/elapsed.Seconds())
	if want := filepath.Join(dir, "import-"); !strings.Contains(out, "checkpoint: "+want) {
		t.Errorf("the checkpoint is not beside the outbox (%s*):\n%s", want, out)
	}

	// The same rows again under a new checkpoint: InfluxDB keeps each
	// operation once.
	code, again, errOut := runImportCmd(t, vars, "--from", db.Path, "--quiet", "--checkpoint", filepath.Join(dir, "again.json"))
	if code != 0 {
		t.Fatalf("second import: exit %d: %s%s", code, again, errOut)
	}
	want := fmt.Sprintf("imported 0 of %s operations (%s skipped) and %d of %d sessions (0 created, %d merged",
		thousands(db.OpRows), thousands(db.OpRows), len(db.Sessions), db.SessRows, len(db.Sessions))
	dups := skippedSection(again, "skipped operations by reason:")[importer.ReasonDuplicateID]
	if !strings.HasPrefix(again, want) || dups != int64(len(db.Ops))+db.Skipped[importer.ReasonDuplicateID] {
		t.Errorf("second import:\n%s\nwant %q and every valid row a duplicate", again, want)
	}

	store, err := influx.Open(context.Background(), influx.Config{URL: srv.URL, Bucket: vars["INFLUXDB_BUCKET"],
		OutboxDir: filepath.Join(dir, "check-outbox"), CacheTTL: influx.CacheNoExpiry}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	db.Check(t, store)

	// The report read straight from InfluxDB is the report of the same
	// rows imported into the embedded store.
	onSQLite := map[string]string{"SQLITE_DB_PATH": filepath.Join(dir, "metrics.db")}
	if code, out, errOut := runImportCmd(t, onSQLite, "--from", db.Path, "--quiet"); code != 0 {
		t.Fatalf("import into SQLite: exit %d: %s%s", code, out, errOut)
	}
	fixReportClock(t, db.Now)
	for _, r := range []string{"24h", "30d", "all"} {
		code, fromInflux, errOut := runReportCmd(t, vars, "--range", r)
		if code != 0 {
			t.Fatalf("report %s from InfluxDB: exit %d: %s", r, code, errOut)
		}
		_, fromSQLite, _ := runReportCmd(t, onSQLite, "--range", r)
		if fromInflux != fromSQLite {
			t.Errorf("report %s: InfluxDB and SQLite differ:\n%s\n---\n%s", r, fromInflux, fromSQLite)
		}
	}
}

// TestImportCommandLine: bad flags exit 2 with one line; a missing or
// foreign source file exits 1.
func TestImportCommandLine(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"SQLITE_DB_PATH": filepath.Join(dir, "m.db")}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "--from is required"},
		{[]string{"--from", "x.db", "--batch-size", "0"}, 2, "--batch-size"},
		{[]string{"--from", "x.db", "--source-time-zone", "Mars/Olympus"}, 2, "--source-time-zone"},
		{[]string{"--from", "x.db", "--db-type", "postgres"}, 2, "--db-type"},
		{[]string{"--from", "x.db", "extra"}, 2, "unexpected argument"},
		{[]string{"--nope"}, 2, "nope"},
		{[]string{"--from", filepath.Join(dir, "missing.db")}, 1, "missing.db"},
		{[]string{"--from", filepath.Join(dir, "m.db"), "--dry-run"}, 1, "m.db"},
	} {
		code, out, errOut := runImportCmd(t, vars, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("import %v: exit %d, %q%q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	// A database without the original tables, and this service's own
	// store, are refused by name.
	foreign := filepath.Join(dir, "foreign.db")
	if err := os.WriteFile(foreign, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "own.db")
	openSQLite(t, own).Close()
	for path, want := range map[string]string{foreign: "no tool_operations table", own: "a store of omnimemory-metrics itself"} {
		code, _, errOut := runImportCmd(t, vars, "--from", path)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("import of %s: exit %d, %s; want 1 and %q", filepath.Base(path), code, errOut, want)
		}
	}
}

// pgSecret is the password of the source URLs of the tests. The test
// server trusts every local connection, so it is sent for nothing, and
// must appear nowhere.
const pgSecret = "hunter2-S3cret"

// withPassword answers the test server's URL with user postgres given a
// password.
func withPassword(t *testing.T, url string) string {
	t.Helper()
	if !strings.Contains(url, "://postgres@") {
		t.Fatalf("unexpected URL %s", url)
	}
	return strings.Replace(url, "://postgres@", "://postgres:"+pgSecret+"@", 1)
}

// noSecret fails t when the source's password is in any of texts or
// files.
func noSecret(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, pgSecret) {
			t.Errorf("%s shows the password:\n%s", what, s)
		}
	}
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestImportFromPostgreSQL imports the original service's database on
// PostgreSQL (the schema SQLAlchemy creates there) into each store: a dry
// run writes nothing and counts what the import then imports; the figures
// are those of the same rows on SQLite, less those PostgreSQL cannot hold;
// a second run takes no row; the password of the URL is in no output, log
// or checkpoint.
func TestImportFromPostgreSQL(t *testing.T) {
	pg := realtools.SharedPostgres(t)
	dir := t.TempDir()
	from := withPassword(t, pg.NewDatabase(t))
	db := legacytest.BuildPostgres(t, from, legacyOps, false)
	redacted := strings.Replace(from, pgSecret, "xxxxx", 1)

	for _, dest := range []string{"sqlite", "postgresql", "influxdb"} {
		t.Run(dest, func(t *testing.T) {
			dir := filepath.Join(dir, dest)
			var vars map[string]string
			var open func() tsdb.Store
			switch dest {
			case "sqlite":
				dst := filepath.Join(dir, "metrics.db")
				vars = map[string]string{"SQLITE_DB_PATH": dst}
				open = func() tsdb.Store { return openSQLite(t, dst) }
			case "postgresql":
				dst := withPassword(t, pg.NewDatabase(t))
				vars = map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql", "DATABASE_URL": dst, "SQLITE_DB_PATH": filepath.Join(dir, "metrics.db")}
				open = func() tsdb.Store {
					s, err := postgres.Open(context.Background(), postgres.Config{URL: dst}, nil)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
			case "influxdb":
				srv := realtools.SharedInfluxd(t)
				vars = influxVars(srv, srv.NewBucket(t), filepath.Join(dir, "outbox"))
				open = func() tsdb.Store {
					s, err := influx.Open(context.Background(), influx.Config{URL: srv.URL, Bucket: vars["INFLUXDB_BUCKET"],
						OutboxDir: filepath.Join(dir, "check-outbox"), CacheTTL: influx.CacheNoExpiry}, nil)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			skippedLog := filepath.Join(dir, "skipped.jsonl")

			if dest != "influxdb" {
				code, out, errOut := runImportCmd(t, vars, "--from", from, "--dry-run")
				if code != 0 {
					t.Fatalf("dry run: exit %d: %s%s", code, out, errOut)
				}
				noSecret(t, "the dry run", out, errOut)
				wantSummary(t, strings.Replace(out, "dry run: would import", "imported", 1), db)
				if dest == "sqlite" {
					if _, err := os.Stat(vars["SQLITE_DB_PATH"]); !os.IsNotExist(err) {
						t.Errorf("the dry run created the store (%v)", err)
					}
				} else if tables := pgTables(t, vars["DATABASE_URL"]); tables != 0 {
					t.Errorf("the dry run created %d tables in the store", tables)
				}
			}

			start := time.Now()
			code, out, errOut := runImportCmd(t, vars, "--from", from, "--skipped-log", skippedLog, "--quiet")
			elapsed := time.Since(start)
			if code != 0 {
				t.Fatalf("exit %d: %s%s", code, out, errOut)
			}
			if errOut != "" {
				t.Errorf("unexpected standard error: %s", errOut)
			}
			wantSummary(t, out, db)
			t.Logf("%d source rows imported from PostgreSQL into %s in %v (%.0f rows/s)", db.OpRows+db.SessRows, dest,
				elapsed.Round(time.Millisecond), float64(db.OpRows+db.SessRows)/elapsed.Seconds())
			if !strings.Contains(out, " from "+redacted+" into ") {
				t.Errorf("the summary does not name the source as %s:\n%s", redacted, out)
			}
			logged := skippedLogCounts(t, skippedLog)
			if !reflect.DeepEqual(logged["tool_operations"], db.Skipped) || !reflect.DeepEqual(logged["tool_sessions"], db.SessSkipped) {
				t.Errorf("skipped-rows log counts %v, want operations %v and sessions %v", logged, db.Skipped, db.SessSkipped)
			}
			_, after, _ := strings.Cut(out, "checkpoint: ")
			checkpoint, _, _ := strings.Cut(after, "\n")
			noSecret(t, "the import", out, errOut, fileText(t, skippedLog), fileText(t, checkpoint), checkpoint)
			if !strings.Contains(fileText(t, checkpoint), `"source": "`+redacted+`"`) {
				t.Errorf("checkpoint %s does not name the source as %s:\n%s", checkpoint, redacted, fileText(t, checkpoint))
			}

			// Again, with another password: the same checkpoint, nothing
			// left to take.
			other := strings.Replace(from, pgSecret, "another-one", 1)
			code, again, errOut := runImportCmd(t, vars, "--from", other, "--skipped-log", skippedLog, "--quiet")
			if code != 0 {
				t.Fatalf("second run: exit %d: %s%s", code, again, errOut)
			}
			wantSummary(t, again, db)
			if !strings.Contains(again, "; 0 rows in ") || !strings.Contains(again, "checkpoint: "+checkpoint+" (the counts include") {
				t.Errorf("the second run did not continue from %s:\n%s", checkpoint, again)
			}
			db.Check(t, open())
		})
	}
}

// pgTables counts the tables of the database at url.
func pgTables(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImportFromPostgreSQLRefused: a URL that cannot be used exits 2 as a
// bad flag; a server that does not answer, a database without the
// original tables and a store of this service itself exit 1, at once,
// naming the source without its password.
func TestImportFromPostgreSQLRefused(t *testing.T) {
	pg := realtools.SharedPostgres(t)
	dir := t.TempDir()
	vars := map[string]string{"SQLITE_DB_PATH": filepath.Join(dir, "m.db")}
	foreign := withPassword(t, pg.NewDatabase(t))
	own := withPassword(t, pg.NewDatabase(t))
	s, err := postgres.Open(context.Background(), postgres.Config{URL: own}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, tc := range []struct {
		name string
		args []string
		vars map[string]string
		code int
		want string
	}{
		{"bad port", []string{"--from", "postgresql://u:" + pgSecret + "@127.0.0.1:port/db"}, vars, 2, "--from"},
		{"bad sslmode", []string{"--from", "postgres://u:" + pgSecret + "@127.0.0.1/db?sslmode=sometimes"}, vars, 2, "sslmode"},
		{"password parameter", []string{"--from", "postgresql://127.0.0.1:1/db?password=" + pgSecret}, vars, 1, "postgresql://127.0.0.1:1/db?password=xxxxx"},
		{"unreachable", []string{"--from", "postgresql://u:" + pgSecret + "@127.0.0.1:1/db", "--dry-run"}, vars, 1, "postgresql://u:xxxxx@127.0.0.1:1/db"},
		{"no such database", []string{"--from", strings.Replace(foreign, "/test_", "/missing_", 1)}, vars, 1, "missing_"},
		{"foreign", []string{"--from", foreign}, vars, 1, "no tool_operations table"},
		{"own store", []string{"--from", own}, vars, 1, "a store of omnimemory-metrics itself"},
		{"the store itself", []string{"--from", own}, map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql",
			"DATABASE_URL": strings.Replace(own, pgSecret, "other", 1)}, 2, "is the configured store itself"},
	} {
		start := time.Now()
		code, out, errOut := runImportCmd(t, tc.vars, tc.args...)
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("%s: took %v", tc.name, took)
		}
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %q%q; want %d and %q", tc.name, code, out, errOut, tc.code, tc.want)
		}
		noSecret(t, tc.name, out, errOut)
		t.Logf("%s: exit %d: %s", tc.name, code, errOut)
	}
}
