package sqlq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// SessionColumns are the columns of tool_sessions that a session and its
// totals are read from, in the order the stores scan them.
const SessionColumns = `session_id, tool_id, tool_version, process_id, instance_id, project_id,
	workspace_path, started_at, ended_at, last_activity,
	total_operations, tokens_saved, total_compressions, total_embeddings`

// newestFirst orders candidate sessions for get_or_create: the latest
// started wins; ties go to the latest activity, then the larger id, so the
// answer is deterministic.
const newestFirst = ` ORDER BY started_at DESC, last_activity DESC, session_id DESC LIMIT 1`

// Stmt is a statement and its arguments.
type Stmt struct {
	SQL  string
	Args []any
}

// GetSession reads the session id with its totals.
func (d *Dialect) GetSession(id uuid.UUID) Stmt {
	q := d.NewQuery()
	return Stmt{`SELECT ` + SessionColumns + ` FROM tool_sessions WHERE session_id = ` + q.Arg(d.SessionID(id)), q.Args}
}

// OpenSessionQueries are the statements that find the session m selects
// (see tsdb.SessionMatch), to try in order until one reads a row: the newest
// open session with m.InstanceID, else the newest open one with m.ToolID and
// m.ProcessID.
func (d *Dialect) OpenSessionQueries(m tsdb.SessionMatch) []Stmt {
	var out []Stmt
	open := func(where func(q *Query) string) {
		q := d.NewQuery()
		sql := `SELECT ` + SessionColumns + ` FROM tool_sessions WHERE ended_at IS NULL AND ` + where(q) + newestFirst
		out = append(out, Stmt{sql, q.Args})
	}
	if m.InstanceID != nil {
		open(func(q *Query) string { return `instance_id = ` + q.Arg(*m.InstanceID) })
	}
	if m.ProcessID != nil {
		open(func(q *Query) string {
			return `tool_id = ` + q.Arg(m.ToolID) + ` AND process_id = ` + q.Arg(*m.ProcessID)
		})
	}
	return out
}

// NoOpenSession is the error of a tsdb.SessionMatch that no query of
// OpenSessionQueries answered.
func NoOpenSession(m tsdb.SessionMatch) error {
	return fmt.Errorf("open session for tool %q: %w", m.ToolID, tsdb.ErrNotFound)
}

// SessionNotFound is the error of a session id that no row holds.
func SessionNotFound(id uuid.UUID) error {
	return fmt.Errorf("session %s: %w", id, tsdb.ErrNotFound)
}

// TouchSession moves the session's last_activity forward to at (never
// back) and reads the session.
func (d *Dialect) TouchSession(id uuid.UUID, at time.Time) Stmt {
	q := d.NewQuery()
	sql := `UPDATE tool_sessions SET last_activity = ` + d.Greatest + `(last_activity, ` + q.Arg(d.Time(at)) +
		`) WHERE session_id = ` + q.Arg(d.SessionID(id)) + ` RETURNING ` + SessionColumns
	return Stmt{sql, q.Args}
}

// EndSession sets ended_at to at unless the session ended already, and
// reads the session with its totals.
func (d *Dialect) EndSession(id uuid.UUID, at time.Time) Stmt {
	q := d.NewQuery()
	sql := `UPDATE tool_sessions SET ended_at = coalesce(ended_at, ` + q.Arg(d.Time(at)) +
		`) WHERE session_id = ` + q.Arg(d.SessionID(id)) + ` RETURNING ` + SessionColumns
	return Stmt{sql, q.Args}
}

// ActiveSessions reads the open sessions of toolID (all when empty) active
// at or after since, newest activity first.
func (d *Dialect) ActiveSessions(toolID string, since time.Time) Stmt {
	q := d.NewQuery()
	sql := `SELECT ` + SessionColumns + ` FROM tool_sessions WHERE ended_at IS NULL AND last_activity >= ` + q.Arg(d.Time(since))
	if toolID != "" {
		sql += ` AND tool_id = ` + q.Arg(toolID)
	}
	return Stmt{sql + ` ORDER BY last_activity DESC, session_id DESC`, q.Args}
}

// Collect reads every row with scan.
func Collect[T any](rows Rows, scan func(Rows) (T, error)) ([]T, error) {
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Row is what both drivers' single-row results offer.
type Row interface{ Scan(dest ...any) error }

// RowFunc runs a statement that answers at most one row.
type RowFunc func(ctx context.Context, sql string, args ...any) Row

// Sessions reads and updates tool_sessions through a store's driver.
type Sessions struct {
	*Dialect
	// Read runs the lookups, Write the updates.
	Read, Write RowFunc
	// Query runs the lists.
	Query QueryFunc
	// NoRows is the driver's error of a row that is not there.
	NoRows error
	// Scan reads a row of SessionColumns.
	Scan func(Row) (tsdb.SessionStats, error)
}

// Get answers the session and its totals, or tsdb.ErrNotFound.
func (s Sessions) Get(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	return s.one(ctx, s.Read, s.GetSession(id), id)
}

// FindOpen answers the session m selects (see tsdb.SessionMatch): the
// newest open one with m.InstanceID, else the newest open one with m.ToolID
// and m.ProcessID, else tsdb.ErrNotFound.
func (s Sessions) FindOpen(ctx context.Context, m tsdb.SessionMatch) (tsdb.Session, error) {
	for _, q := range s.OpenSessionQueries(m) {
		st, err := s.Scan(s.Read(ctx, q.SQL, q.Args...))
		if !errors.Is(err, s.NoRows) {
			return st.Session, err
		}
	}
	return tsdb.Session{}, NoOpenSession(m)
}

// Touch moves the session's last_activity forward to at (never back) and
// answers the session. An ended session stays ended.
func (s Sessions) Touch(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.Session, error) {
	st, err := s.one(ctx, s.Write, s.TouchSession(id, at), id)
	return st.Session, err
}

// End sets ended_at to at unless the session ended already, and answers
// the session with its totals.
func (s Sessions) End(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.SessionStats, error) {
	return s.one(ctx, s.Write, s.EndSession(id, at), id)
}

// Active answers the open sessions of toolID (all when empty) active at or
// after since, newest activity first.
func (s Sessions) Active(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	q := s.ActiveSessions(toolID, since)
	rows, done, err := s.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, err
	}
	defer done()
	return Collect(rows, func(r Rows) (tsdb.SessionStats, error) { return s.Scan(r) })
}

// one runs q, which reads session id, through run.
func (s Sessions) one(ctx context.Context, run RowFunc, q Stmt, id uuid.UUID) (tsdb.SessionStats, error) {
	st, err := s.Scan(run(ctx, q.SQL, q.Args...))
	if errors.Is(err, s.NoRows) {
		return tsdb.SessionStats{}, SessionNotFound(id)
	}
	return st, err
}
