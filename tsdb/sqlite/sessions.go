package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/internal/sqlq"
)

func scanSession(r sqlq.Row) (tsdb.SessionStats, error) {
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

// CreateSession stores a new session; a session with the same id is an
// error.
func (s *Store) CreateSession(ctx context.Context, sess tsdb.Session) error {
	if err := s.startRead(ctx); err != nil {
		return err
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

// sessions reads tool_sessions through the readers and updates it through
// the writer.
func (s *Store) sessions() sqlq.Sessions {
	return sqlq.Sessions{
		Dialect: &dialect,
		Read: func(ctx context.Context, q string, args ...any) sqlq.Row {
			return s.reader.QueryRowContext(ctx, q, args...)
		},
		Write: func(ctx context.Context, q string, args ...any) sqlq.Row {
			return s.writer.QueryRowContext(ctx, q, args...)
		},
		Query:  queryIn(s.reader),
		NoRows: sql.ErrNoRows,
		Scan:   scanSession,
	}
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	if err := s.startRead(ctx); err != nil {
		return tsdb.SessionStats{}, err
	}
	st, err := s.sessions().Get(ctx, id)
	return st, s.wrap("get session", err)
}

// FindOpenSession answers the session m selects (see tsdb.SessionMatch).
func (s *Store) FindOpenSession(ctx context.Context, m tsdb.SessionMatch) (tsdb.Session, error) {
	if err := s.startRead(ctx); err != nil {
		return tsdb.Session{}, err
	}
	sess, err := s.sessions().FindOpen(ctx, m)
	return sess, s.wrap("find open session", err)
}

// TouchSession moves the session's last_activity forward to at (never
// back) and answers the session. An ended session stays ended.
func (s *Store) TouchSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.Session, error) {
	if err := s.startRead(ctx); err != nil {
		return tsdb.Session{}, err
	}
	st, err := s.sessions().Touch(ctx, id, at)
	if err == nil {
		s.committed()
	}
	return st, s.wrap("touch session", err)
}

// EndSession sets ended_at to at unless the session already ended, and
// answers the session with its totals.
func (s *Store) EndSession(ctx context.Context, id uuid.UUID, at time.Time) (tsdb.SessionStats, error) {
	if err := s.startRead(ctx); err != nil {
		return tsdb.SessionStats{}, err
	}
	st, err := s.sessions().End(ctx, id, at)
	if err == nil {
		s.committed()
	}
	return st, s.wrap("end session", err)
}

// ActiveSessions answers the open sessions of toolID (all when empty) active
// at or after since, newest activity first.
func (s *Store) ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	if err := s.startRead(ctx); err != nil {
		return nil, err
	}
	out, err := s.sessions().Active(ctx, toolID, since)
	return out, s.wrap("active sessions", err)
}
