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
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

func scanSession(r sqlq.Row) (tsdb.SessionStats, error) {
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
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO tool_sessions
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

// sessions reads and updates tool_sessions through the pool.
func (s *Store) sessions() sqlq.Sessions {
	row := func(ctx context.Context, q string, args ...any) sqlq.Row { return s.pool.QueryRow(ctx, q, args...) }
	return sqlq.Sessions{
		Dialect: &dialect, Read: row, Write: row, Query: queryIn(s.pool),
		NoRows: pgx.ErrNoRows, Scan: scanSession,
	}
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return tsdb.SessionStats{}, err
	}
	st, err := s.sessions().Get(ctx, id)
	return st, s.wrap("get session", err)
}

// FindOpenSession answers the session m selects (see tsdb.SessionMatch).
func (s *Store) FindOpenSession(ctx context.Context, m tsdb.SessionMatch) (tsdb.Session, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return tsdb.Session{}, err
	}
	sess, err := s.sessions().FindOpen(ctx, m)
	return sess, s.wrap("find open session", err)
}

// TouchSession moves the session's last_activity forward to at (never
// back) and answers the session. An ended session stays ended.
func (s *Store) TouchSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.Session, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return tsdb.Session{}, err
	}
	st, err := s.sessions().Touch(ctx, id, at)
	return st, s.wrap("touch session", err)
}

// EndSession sets ended_at to at unless the session already ended, and
// answers the session with its totals.
func (s *Store) EndSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.SessionStats, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return tsdb.SessionStats{}, err
	}
	st, err := s.sessions().End(ctx, id, at)
	return st, s.wrap("end session", err)
}

// ActiveSessions answers the open sessions of toolID (all when empty) active
// at or after since, newest activity first.
func (s *Store) ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	ctx, cancel, err := s.startRead(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	out, err := s.sessions().Active(ctx, toolID, since)
	return out, s.wrap("active sessions", err)
}
