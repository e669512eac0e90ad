package exporter

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// SessionRequest is what a tool opens a session with; nil fields were not
// sent. ToolID is validated already.
type SessionRequest struct {
	ToolID                                            string
	ToolVersion, ProjectID, WorkspacePath, InstanceID *string
	ProcessID                                         *int64
}

// Sessions keeps the tools' working sessions (Phase 1 of the contract):
// opening, reuse, activity, end and reads.
type Sessions struct {
	store tsdb.SessionStore
	now   func() time.Time
	// mu serialises GetOrCreateSession, so that concurrent calls of one
	// instance share one session.
	mu sync.Mutex
}

// NewSessions keeps sessions in store; now is the clock (time.Now when nil).
func NewSessions(store tsdb.SessionStore, now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{store: store, now: now}
}

// clock answers now at the stores' precision.
func (s *Sessions) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func (s *Sessions) newSession(req SessionRequest) tsdb.Session {
	now := s.clock()
	return tsdb.Session{
		SessionID:     uuid.New(),
		ToolID:        req.ToolID,
		ToolVersion:   req.ToolVersion,
		ProcessID:     req.ProcessID,
		InstanceID:    req.InstanceID,
		ProjectID:     req.ProjectID,
		WorkspacePath: req.WorkspacePath,
		StartedAt:     now,
		LastActivity:  now,
	}
}

// StartSession opens a new session, started now. It takes no instance id:
// only GetOrCreateSession does.
func (s *Sessions) StartSession(ctx context.Context, req SessionRequest) (tsdb.Session, error) {
	req.InstanceID = nil
	sess := s.newSession(req)
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return tsdb.Session{}, err
	}
	return sess, nil
}

// GetOrCreateSession reuses the session that req selects (see
// tsdb.SessionMatch), marking it active now, or opens one; created says
// which.
func (s *Sessions) GetOrCreateSession(ctx context.Context, req SessionRequest) (sess tsdb.Session, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	found, err := s.store.FindOpenSession(ctx, tsdb.SessionMatch{ToolID: req.ToolID, InstanceID: req.InstanceID, ProcessID: req.ProcessID})
	switch {
	case err == nil:
		if _, err := s.store.TouchSession(ctx, found.SessionID, s.clock()); err != nil {
			return tsdb.Session{}, false, err
		}
		return found, false, nil
	case !errors.Is(err, tsdb.ErrNotFound):
		return tsdb.Session{}, false, err
	}
	sess = s.newSession(req)
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return tsdb.Session{}, false, err
	}
	return sess, true, nil
}

// Heartbeat marks the session active now and answers it; an ended session
// stays ended. tsdb.ErrNotFound when it does not exist.
func (s *Sessions) Heartbeat(ctx context.Context, id uuid.UUID) (tsdb.Session, error) {
	return s.store.TouchSession(ctx, id, s.clock())
}

// EndSession ends the session now (an ended one is answered unchanged) and
// answers it with its totals.
func (s *Sessions) EndSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	return s.store.EndSession(ctx, id, s.clock())
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Sessions) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	return s.store.GetSession(ctx, id)
}

// ActiveSessions answers the open sessions of toolID (all when empty) active
// within the last api.ActiveWindow, newest activity first.
func (s *Sessions) ActiveSessions(ctx context.Context, toolID string) ([]tsdb.SessionStats, error) {
	return s.store.ActiveSessions(ctx, toolID, s.now().UTC().Add(-api.ActiveWindow))
}
