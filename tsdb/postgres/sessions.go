package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

const sessionColumns = `session_id, tool_id, tool_version, process_id, instance_id, project_id,
	workspace_path, started_at, ended_at, last_activity,
	total_operations, tokens_saved, total_compressions, total_embeddings`

// newestFirst orders candidate sessions for get_or_create: the latest
// started wins; ties go to the latest activity, then the larger id.
const newestFirst = ` ORDER BY started_at DESC, last_activity DESC, session_id DESC LIMIT 1`

func scanSession(r pgx.Row) (tsdb.SessionStats, error) {
	var st tsdb.SessionStats
	if err := r.Scan(&st.SessionID, &st.ToolID, &st.ToolVersion, &st.ProcessID, &st.InstanceID,
		&st.ProjectID, &st.WorkspacePath, &st.StartedAt, &st.EndedAt, &st.LastActivity,
		&st.TotalOperations, &st.TokensSaved, &st.TotalCompressions, &st.TotalEmbeddings); err != nil {
		return st, err
	}
	st.StartedAt = st.StartedAt.UTC()
	st.LastActivity = st.LastActivity.UTC()
	if st.EndedAt != nil {
		t := st.EndedAt.UTC()
		st.EndedAt = &t
	}
	return st, nil
}

func notFound(id uuid.UUID) error {
	return fmt.Errorf("session %s: %w", id, tsdb.ErrNotFound)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// CreateSession stores a new session; a session with the same id is an
// error.
func (s *Store) CreateSession(ctx context.Context, sess tsdb.Session) error {
	if s.closed.Load() {
		return errClosed
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO tool_sessions
	(session_id, tool_id, tool_version, process_id, instance_id, project_id, workspace_path,
	 started_at, ended_at, last_activity)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		sess.SessionID, sess.ToolID, sess.ToolVersion, sess.ProcessID, sess.InstanceID, sess.ProjectID,
		sess.WorkspacePath, sess.StartedAt.UTC(), utcPtr(sess.EndedAt), sess.LastActivity.UTC())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("postgres: create session: session %s exists already", sess.SessionID)
	}
	return s.wrap("create session", err)
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	if s.closed.Load() {
		return tsdb.SessionStats{}, errClosed
	}
	st, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM tool_sessions WHERE session_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
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
	try := func(where string, a ...any) (tsdb.Session, bool, error) {
		st, err := scanSession(s.pool.QueryRow(ctx,
			`SELECT `+sessionColumns+` FROM tool_sessions WHERE ended_at IS NULL AND `+where+newestFirst, a...))
		if errors.Is(err, pgx.ErrNoRows) {
			return tsdb.Session{}, false, nil
		}
		if err != nil {
			return tsdb.Session{}, false, s.wrap("find open session", err)
		}
		return st.Session, true, nil
	}
	if m.InstanceID != nil {
		if sess, ok, err := try(`instance_id = $1`, *m.InstanceID); err != nil || ok {
			return sess, err
		}
	}
	if m.ProcessID != nil {
		if sess, ok, err := try(`tool_id = $1 AND process_id = $2`, m.ToolID, *m.ProcessID); err != nil || ok {
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
	st, err := scanSession(s.pool.QueryRow(ctx,
		`UPDATE tool_sessions SET last_activity = greatest(last_activity, $1) WHERE session_id = $2 RETURNING `+sessionColumns,
		at.UTC(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return tsdb.Session{}, notFound(id)
	}
	if err != nil {
		return tsdb.Session{}, s.wrap("touch session", err)
	}
	return st.Session, nil
}

// EndSession sets ended_at to at unless the session already ended, and
// answers the session with its totals.
func (s *Store) EndSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.SessionStats, error) {
	if s.closed.Load() {
		return tsdb.SessionStats{}, errClosed
	}
	st, err := scanSession(s.pool.QueryRow(ctx,
		`UPDATE tool_sessions SET ended_at = coalesce(ended_at, $1) WHERE session_id = $2 RETURNING `+sessionColumns,
		at.UTC(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return tsdb.SessionStats{}, notFound(id)
	}
	if err != nil {
		return tsdb.SessionStats{}, s.wrap("end session", err)
	}
	return st, nil
}

// ActiveSessions answers the open sessions of toolID (all when empty) active
// at or after since, newest activity first.
func (s *Store) ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	q := `SELECT ` + sessionColumns + ` FROM tool_sessions WHERE ended_at IS NULL AND last_activity >= $1`
	a := []any{since.UTC()}
	if toolID != "" {
		q += ` AND tool_id = $2`
		a = append(a, toolID)
	}
	q += ` ORDER BY last_activity DESC, session_id DESC`
	rows, err := s.pool.Query(ctx, q, a...)
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
