// Package importer copies the operations and sessions of the original
// omnimemory-metrics service (Python, FastAPI, SQLAlchemy) from its
// database, a SQLite file or PostgreSQL, into a tsdb.Store. Every row is checked with the rules the API
// applies to a request (see tsdb/validate.go); what fails them is skipped and
// counted by reason. Operations keep their ids and are Keyed, so that a store
// stores each once however often the import runs, and a checkpoint file lets
// an interrupted import continue where it stopped.
package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// DefaultBatchSize is how many operations go to the store in one write:
// as many as the service's writer commits at most in one transaction. On
// the embedded store a batch of 5,000 imports about twice as fast as one of
// 1,000 (each commit rewrites the pages it touches).
const DefaultBatchSize = 5000

// sessionBatch is how many sessions are taken between two checkpoints; each
// is a lookup and a write of its own.
const sessionBatch = 100

// Phase names, as Progress and AfterBatch see them.
const (
	PhaseSessions   = "sessions"
	PhaseOperations = "operations"
)

// Options configure an import.
type Options struct {
	// Source is the original service's database: its SQLite file, or a
	// postgresql:// or postgres:// URL. It is opened read-only.
	Source string
	// Store receives the rows; it is not used (and may be nil) with DryRun.
	Store tsdb.Store
	// Destination names Store in the checkpoint (for example
	// "sqlite:/path/metrics.db"), so that a checkpoint is never applied to
	// an import into another store.
	Destination string
	// Checkpoint is the checkpoint file; empty: none, every run starts
	// from the first row (the store still stores each operation once).
	Checkpoint string
	// SkippedLog, when set, is a file that gets one JSON line per skipped
	// row.
	SkippedLog string
	// BatchSize is how many operations one store write takes
	// (DefaultBatchSize when 0).
	BatchSize int
	// DryRun reads and checks every row of the source without writing
	// anything but the skipped-rows log, and ignores the checkpoint. Ids
	// already in the store are not looked up; ids repeated in the source are
	// counted as duplicates.
	DryRun bool
	// Location is the time zone of source times written without an offset
	// (UTC when nil: the original service wrote datetime.utcnow()).
	Location *time.Location
	// Now is the clock that times are checked against (time.Now when nil).
	Now func() time.Time
	// Progress hears about the rows taken (nil: nobody).
	Progress Progress
	// AfterBatch, when set, is called after each batch was committed to
	// the store and before the checkpoint records it; an error ends the
	// import there, as an interruption at its most delicate moment would.
	AfterBatch func(phase string, batch int) error
}

// Progress hears how an import advances.
type Progress interface {
	// Phase announces the rows of a table to take (total: rows left).
	Phase(name string, total int64)
	// Advance reports n more rows taken.
	Advance(n int)
	// PhaseDone ends a phase that took all its rows (an interrupted one
	// does not end).
	PhaseDone()
}

// Counts are the figures of one table, over every run of the import (a
// resumed import adds to what its checkpoint recorded).
type Counts struct {
	// Total is the number of rows in the source table.
	Total int64
	// Imported: operations stored; sessions created.
	Imported int64
	// Merged: sessions that were in the store already, given the source's
	// end and last activity when the store lacked them.
	Merged int64
	// Skipped counts the rows not imported, by reason (Reason*).
	Skipped map[string]int64
}

// SkippedTotal is the number of rows skipped for any reason.
func (c Counts) SkippedTotal() int64 {
	var n int64
	for _, v := range c.Skipped {
		n += v
	}
	return n
}

// Summary is the outcome of an import.
type Summary struct {
	Operations, Sessions Counts
	// Resumed: a checkpoint of an earlier run was found and continued.
	Resumed bool
	// Checkpoint is the checkpoint file ("" without one).
	Checkpoint string
	// RowsThisRun is how many rows this run took, in Elapsed.
	RowsThisRun int64
	Elapsed     time.Duration
	DryRun      bool
}

// Reasons lists the reasons a row may be skipped, in the order summaries
// give them.
var Reasons = []string{
	ReasonBadID, ReasonBadSessionID, ReasonUnknownToolName, ReasonUnknownOperationMode,
	ReasonBadParameters, ReasonBadFilePath, ReasonBadTokens, ReasonNegativeTokens,
	ReasonInconsistentTokens, ReasonBadResponseTime, ReasonBadToolID, ReasonBadCacheHit, ReasonBadTime,
	ReasonTimeOutOfRange, ReasonBadAttributes, ReasonInconsistentTimes, ReasonDuplicateID,
}

// skippedLine is one line of the skipped-rows log.
type skippedLine struct {
	Table string `json:"table"`
	// Rowid is SQLite's rowid, or tool_sessions' id on PostgreSQL; a
	// tool_operations row on PostgreSQL is known by its id.
	Rowid   int64    `json:"rowid,omitempty"`
	ID      string   `json:"id"`
	Reason  string   `json:"reason"`
	Details []string `json:"details"`
}

type importer struct {
	opts    Options
	src     source
	cp      checkpoint
	log     *os.File
	logBuf  bytes.Buffer
	started time.Time
	rows    int64
	// seen holds the ids of a dry run, to count the source's own
	// duplicates.
	seen map[uuid.UUID]bool
}

// Run imports opts.Source into opts.Store. It answers the summary so far
// also when it fails or ctx ends: what it reports is what the checkpoint
// holds, and running it again continues from there.
func Run(ctx context.Context, opts Options) (Summary, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DryRun {
		opts.Checkpoint = ""
	}
	if opts.Store == nil && !opts.DryRun {
		return Summary{}, errors.New("importer: no store")
	}
	im := &importer{opts: opts, started: time.Now()}
	sum := Summary{Checkpoint: opts.Checkpoint, DryRun: opts.DryRun}
	src, err := openSource(ctx, opts.Source)
	if err != nil {
		return sum, err
	}
	defer src.Close()
	im.src = src
	if opts.DryRun {
		im.seen = map[uuid.UUID]bool{}
	}

	if opts.Checkpoint != "" {
		cp, ok, err := loadCheckpoint(opts.Checkpoint)
		if err != nil {
			return sum, err
		}
		if ok {
			if cp.Source != src.Name() || cp.Destination != opts.Destination {
				return sum, fmt.Errorf("checkpoint %s belongs to the import of %s into %s, not of %s into %s: give another --checkpoint, or remove it",
					opts.Checkpoint, cp.Source, cp.Destination, src.Name(), opts.Destination)
			}
			im.cp, sum.Resumed = cp, true
		}
	}
	im.cp.Source, im.cp.Destination = src.Name(), opts.Destination
	if err := im.openLog(); err != nil {
		return sum, err
	}
	defer func() {
		if im.log != nil {
			im.log.Close()
		}
	}()

	err = im.sessions(ctx)
	if err == nil {
		err = im.operations(ctx)
	}
	sum.Operations, sum.Sessions = counts(im.cp.Operations), counts(im.cp.Sessions)
	var terr error
	if sum.Operations.Total, terr = src.Count(context.WithoutCancel(ctx), operationsTable, position{}); terr != nil {
		err = errors.Join(err, terr)
	}
	if src.HasSessions() {
		if sum.Sessions.Total, terr = src.Count(context.WithoutCancel(ctx), sessionsTable, position{}); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	sum.RowsThisRun, sum.Elapsed = im.rows, time.Since(im.started)
	return sum, err
}

func counts(ps phaseState) Counts {
	c := Counts{Imported: ps.Imported, Merged: ps.Merged, Skipped: map[string]int64{}}
	for k, v := range ps.Skipped {
		c.Skipped[k] = v
	}
	return c
}

// openLog opens the skipped-rows log: a resumed import cuts it back to
// what its checkpoint recorded (dropping lines of a batch it did not
// finish), a new one starts it empty.
func (im *importer) openLog() error {
	path := im.opts.SkippedLog
	if path == "" {
		im.cp.SkippedLog, im.cp.SkippedLogBytes = "", 0
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("skipped-rows log: %w", err)
	}
	keep := int64(0)
	if im.cp.SkippedLog == abs {
		keep = im.cp.SkippedLogBytes
	}
	if err = f.Truncate(keep); err == nil {
		_, err = f.Seek(keep, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("skipped-rows log: %w", err)
	}
	im.log = f
	im.cp.SkippedLog, im.cp.SkippedLogBytes = abs, keep
	return nil
}

// batchCounts are the figures of one batch, added to the checkpoint's once
// the batch is committed.
type batchCounts struct {
	imported, merged int64
	skipped          map[string]int64
}

func (b *batchCounts) skip(reason string) {
	if b.skipped == nil {
		b.skipped = map[string]int64{}
	}
	b.skipped[reason]++
}

func (b *batchCounts) addTo(ps *phaseState) {
	ps.Imported += b.imported
	ps.Merged += b.merged
	for k, v := range b.skipped {
		if ps.Skipped == nil {
			ps.Skipped = map[string]int64{}
		}
		ps.Skipped[k] += v
	}
}

// skip counts a skipped row and logs it (in memory until the batch ends).
func (im *importer) skip(b *batchCounts, table string, r rawRow, reason string, details []string) {
	b.skip(reason)
	if im.log == nil {
		return
	}
	id := ""
	if len(r.values) > 0 {
		switch v := r.values[0].(type) {
		case string:
			id = v
		case nil:
		default:
			id = show(v)
		}
	}
	line, _ := json.Marshal(skippedLine{Table: table, Rowid: r.pos.Rowid, ID: id, Reason: reason, Details: details})
	im.logBuf.Write(line)
	im.logBuf.WriteByte('\n')
}

// finishBatch records a committed batch: its log lines, its counts, and a
// checkpoint past its last row.
func (im *importer) finishBatch(ps *phaseState, b *batchCounts, last position, n int) error {
	if im.log != nil && im.logBuf.Len() > 0 {
		if _, err := im.log.Write(im.logBuf.Bytes()); err != nil {
			return fmt.Errorf("skipped-rows log: %w", err)
		}
		im.cp.SkippedLogBytes += int64(im.logBuf.Len())
		im.logBuf.Reset()
		if im.opts.Checkpoint != "" {
			if err := im.log.Sync(); err != nil {
				return fmt.Errorf("skipped-rows log: %w", err)
			}
		}
	}
	b.addTo(ps)
	ps.Done, ps.Pending = last, nil
	im.rows += int64(n)
	if im.opts.Progress != nil {
		im.opts.Progress.Advance(n)
	}
	return im.saveCheckpoint()
}

func (im *importer) saveCheckpoint() error {
	if im.opts.Checkpoint == "" {
		return nil
	}
	return im.cp.save(im.opts.Checkpoint)
}

func (im *importer) now() time.Time {
	return im.opts.Now().UTC().Truncate(time.Microsecond)
}

// sessions imports tool_sessions: a session missing from the store is
// created with its times and attributes (ended sessions stay ended); one
// that is there already (a resumed import, or a session the service
// created from its operations) gets the source's end and last activity
// when it lacks them.
func (im *importer) sessions(ctx context.Context) error {
	if !im.src.HasSessions() {
		return nil
	}
	ps := &im.cp.Sessions
	pending := ps.Pending // the end of the batch an earlier run was committing
	if err := im.phase(ctx, PhaseSessions, sessionsTable, ps.Done); err != nil {
		return err
	}
	for batch := 1; ; batch++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err := im.src.Read(ctx, sessionsTable, ps.Done, sessionBatch)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			im.donePhase()
			return nil
		}
		last := rows[len(rows)-1].pos
		if !im.opts.DryRun {
			ps.Pending = &last
			if err := im.saveCheckpoint(); err != nil {
				return err
			}
		}
		conv := rowConverter{loc: im.opts.Location, now: im.now()}
		var b batchCounts
		for _, r := range rows {
			s, p := conv.session(r)
			if !p.ok() {
				im.skip(&b, sessionsTable, r, p.reasons[0], p.details)
				continue
			}
			if im.opts.DryRun {
				b.imported++
				continue
			}
			created, err := im.putSession(ctx, s)
			if err != nil {
				return fmt.Errorf("session %s (%s): %w", s.SessionID, r.pos, err)
			}
			if created || inPending(r.pos, pending) {
				b.imported++
			} else {
				b.merged++
			}
		}
		if im.opts.AfterBatch != nil {
			if err := im.opts.AfterBatch(PhaseSessions, batch); err != nil {
				return err
			}
		}
		if err := im.finishBatch(ps, &b, last, len(rows)); err != nil {
			return err
		}
	}
}

// putSession creates s, or completes the stored session of its id; created
// says which.
func (im *importer) putSession(ctx context.Context, s tsdb.Session) (created bool, err error) {
	st := im.opts.Store
	cur, err := st.GetSession(ctx, s.SessionID)
	if errors.Is(err, tsdb.ErrNotFound) {
		return true, st.CreateSession(ctx, s)
	}
	if err != nil {
		return false, err
	}
	if s.LastActivity.After(cur.LastActivity) {
		if _, err := st.TouchSession(ctx, s.SessionID, s.LastActivity); err != nil {
			return false, err
		}
	}
	if s.EndedAt != nil && cur.EndedAt == nil {
		if _, err := st.EndSession(ctx, s.SessionID, *s.EndedAt); err != nil {
			return false, err
		}
	}
	return false, nil
}

// operations imports tool_operations in batches, each one store write.
func (im *importer) operations(ctx context.Context) error {
	ps := &im.cp.Operations
	pending := ps.Pending
	if err := im.phase(ctx, PhaseOperations, operationsTable, ps.Done); err != nil {
		return err
	}
	for batch := 1; ; batch++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err := im.src.Read(ctx, operationsTable, ps.Done, im.opts.BatchSize)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			im.donePhase()
			return nil
		}
		last := rows[len(rows)-1].pos
		conv := rowConverter{loc: im.opts.Location, now: im.now()}
		var b batchCounts
		ops := make([]tsdb.Operation, 0, len(rows))
		opRows := make([]rawRow, 0, len(rows))
		for _, r := range rows {
			op, p := conv.operation(r)
			if !p.ok() {
				im.skip(&b, operationsTable, r, p.reasons[0], p.details)
				continue
			}
			ops = append(ops, op)
			opRows = append(opRows, r)
		}
		if im.opts.DryRun {
			for i := range ops {
				if im.seen[ops[i].ID] {
					ops[i].Duplicate = true
				}
				im.seen[ops[i].ID] = true
			}
		} else if len(ops) > 0 {
			ps.Pending = &last
			if err := im.saveCheckpoint(); err != nil {
				return err
			}
			if err := im.opts.Store.WriteOperations(ctx, ops); err != nil {
				return fmt.Errorf("writing operations from %s to %s: %w", rows[0].pos, last, err)
			}
		}
		for i := range ops {
			if !ops[i].Duplicate {
				b.imported++
				continue
			}
			if inPending(opRows[i].pos, pending) {
				// The run interrupted before it recorded this batch may
				// have stored it: unless the source itself holds the id
				// earlier, the operation counts as imported.
				earlier, err := im.src.HasEarlier(ctx, opRows[i].pos, ops[i].ID)
				if err != nil {
					return err
				}
				if !earlier {
					b.imported++
					continue
				}
			}
			im.skip(&b, operationsTable, opRows[i], ReasonDuplicateID,
				[]string{fmt.Sprintf("an operation with id %s is stored already", ops[i].ID)})
		}
		if im.opts.AfterBatch != nil {
			if err := im.opts.AfterBatch(PhaseOperations, batch); err != nil {
				return err
			}
		}
		if err := im.finishBatch(ps, &b, last, len(rows)); err != nil {
			return err
		}
	}
}

// inPending reports whether the row at pos belongs to the batch an earlier
// run was committing when it stopped (the rows up to pending).
func inPending(pos position, pending *position) bool {
	return pending != nil && !pending.before(pos)
}

func (im *importer) phase(ctx context.Context, name, table string, after position) error {
	if im.opts.Progress == nil {
		return nil
	}
	n, err := im.src.Count(ctx, table, after)
	if err != nil {
		return err
	}
	im.opts.Progress.Phase(name, n)
	return nil
}

func (im *importer) donePhase() {
	if im.opts.Progress != nil {
		im.opts.Progress.PhaseDone()
	}
}
