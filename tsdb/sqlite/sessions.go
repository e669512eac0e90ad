package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

const sessionColumns = `session_id, tool_id, tool_version, process_id, instance_id, project_id,
	workspace_path, started_at, ended_at, last_activity,
	total_operations, tokens_saved, total_compressions, total_embeddings`

// newestFirst orders candidate sessions for get_or_create: the latest
// started wins; ties go to the latest activity, then the larger id, so the
// answer is deterministic.
const newestFirst = ` ORDER BY started_at DESC, last_activity DESC, session_id DESC LIMIT 1`

type rowScanner interface{ Scan(dest ...any) error }

func scanSession(r rowScanner) (tsdb.SessionStats, error) {
	var (
		st                                    tsdb.SessionStats
		id                                    string
		version, instance, project, workspace sql.NullString
		pid, ended                            sql.NullInt64
		started, last                         int64
	)
	if err := r.Scan(&id, &st.ToolID, &version, &pid, &instance, &project, &workspace,
		&started, &ended, &last, &st.TotalOperations, &st.TokensSaved,
		&st.TotalCompressions, &st.TotalEmbeddings); err != nil {
		return st, err
	}
	var err error
	if st.SessionID, err = uuid.Parse(id); err != nil {
		return st, fmt.Errorf("session id %q: %w", id, err)
	}
	st.ToolVersion = nullString(version)
	st.InstanceID = nullString(instance)
	st.ProjectID = nullString(project)
	st.WorkspacePath = nullString(workspace)
	if pid.Valid {
		st.ProcessID = &pid.Int64
	}
	st.StartedAt = fromMicros(started)
	if ended.Valid {
		t := fromMicros(ended.Int64)
		st.EndedAt = &t
	}
	st.LastActivity = fromMicros(last)
	return st, nil
}

func nullString(v sql.NullString) *string {
	if !v.Valid {
		return nil
	}
	return &v.String
}

func optString(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func optInt(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func optTime(p *time.Time) any {
	if p == nil {
		return nil
	}
	return p.UnixMicro()
}

func notFound(id uuid.UUID) error {
	return fmt.Errorf("session %s: %w", id, tsdb.ErrNotFound)
}

// CreateSession stores a new session; a session with the same id is an
// error.
func (s *Store) CreateSession(ctx context.Context, sess tsdb.Session) error {
	if s.closed.Load() {
		return errClosed
	}
	_, err := s.writer.ExecContext(ctx, `INSERT INTO tool_sessions
	(session_id, tool_id, tool_version, process_id, instance_id, project_id, workspace_path,
	 started_at, ended_at, last_activity)
VALUES (?,?,?,?,?,?,?,?,?,?)`,
		sess.SessionID.String(), sess.ToolID, optString(sess.ToolVersion), optInt(sess.ProcessID),
		optString(sess.InstanceID), optString(sess.ProjectID), optString(sess.WorkspacePath),
		sess.StartedAt.UnixMicro(), optTime(sess.EndedAt), sess.LastActivity.UnixMicro())
	if err == nil {
		s.committed()
	}
	return s.wrap("create session", err)
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	if s.closed.Load() {
		return tsdb.SessionStats{}, errClosed
	}
	st, err := scanSession(s.reader.QueryRowContext(ctx,
		`SELECT `+sessionColumns+` FROM tool_sessions WHERE session_id = ?`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return tsdb.SessionStats{}, notFound(id)
	}
	if err != nil {
		return tsdb.SessionStats{}, s.wrap("get session", err)
	}
	return st, nil
}

// FindOpenSession answers the session m selects (see tsdb.SessionMatch): the
// newest open one with m.InstanceID, else the newest open one with m.ToolID
// and m.ProcessID, else tsdb.ErrNotFound.
func (s *Store) FindOpenSession(ctx context.Context, m tsdb.SessionMatch) (tsdb.Session, error) {
	if s.closed.Load() {
		return tsdb.Session{}, errClosed
	}
	try := func(where string, args ...any) (tsdb.Session, bool, error) {
		st, err := scanSession(s.reader.QueryRowContext(ctx,
			`SELECT `+sessionColumns+` FROM tool_sessions WHERE ended_at IS NULL AND `+where+newestFirst, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return tsdb.Session{}, false, nil
		}
		if err != nil {
			return tsdb.Session{}, false, s.wrap("find open session", err)
		}
		return st.Session, true, nil
	}
	if m.InstanceID != nil {
		if sess, ok, err := try(`instance_id = ?`, *m.InstanceID); err != nil || ok {
			return sess, err
		}
	}
	if m.ProcessID != nil {
		if sess, ok, err := try(`tool_id = ? AND process_id = ?`, m.ToolID, *m.ProcessID); err != nil || ok {
			return sess, err
		}
	}
	return tsdb.Session{}, fmt.Errorf("open session for tool %q: %w", m.ToolID, tsdb.ErrNotFound)
}

// TouchSession moves the session's last_activity forward to at (never
// back) and answers the session. An ended session stays ended.
func (s *Store) TouchSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.Session, error) {
	if s.closed.Load() {
		return tsdb.Session{}, errClosed
	}
	st, err := scanSession(s.writer.QueryRowContext(ctx,
		`UPDATE tool_sessions SET last_activity = max(last_activity, ?) WHERE session_id = ? RETURNING `+sessionColumns,
		at.UnixMicro(), id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return tsdb.Session{}, notFound(id)
	}
	if err != nil {
		return tsdb.Session{}, s.wrap("touch session", err)
	}
	s.committed()
	return st.Session, nil
}

// EndSession sets ended_at to at unless the session already ended, and
// answers the session with its totals.
func (s *Store) EndSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.SessionStats, error) {
	if s.closed.Load() {
		return tsdb.SessionStats{}, errClosed
	}
	st, err := scanSession(s.writer.QueryRowContext(ctx,
		`UPDATE tool_sessions SET ended_at = coalesce(ended_at, ?) WHERE session_id = ? RETURNING `+sessionColumns,
		at.UnixMicro(), id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return tsdb.SessionStats{}, notFound(id)
	}
	if err != nil {
		return tsdb.SessionStats{}, s.wrap("end session", err)
	}
	s.committed()
	return st, nil
}

// ActiveSessions answers the open sessions of toolID (all when empty) active
// at or after since, newest activity first.
func (s *Store) ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	q := `SELECT ` + sessionColumns + ` FROM tool_sessions WHERE ended_at IS NULL AND last_activity >= ?`
	args := []any{since.UnixMicro()}
	if toolID != "" {
		q += ` AND tool_id = ?`
		args = append(args, toolID)
	}
	q += ` ORDER BY last_activity DESC, session_id DESC`
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.wrap("active sessions", err)
	}
	defer rows.Close()
	out := []tsdb.SessionStats{}
	for rows.Next() {
		st, err := scanSession(rows)
		if err != nil {
			return nil, s.wrap("active sessions", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("active sessions", err)
	}
	return out, nil
}
