package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// SessionRequest opens a session (StartSession, GetOrCreateSession).
type SessionRequest struct {
	// ToolID is required: 1 to 100 characters.
	ToolID      string `json:"tool_id"`
	ToolVersion string `json:"tool_version,omitempty"`
	// ProcessID is the tool's process id; 0 sends none.
	ProcessID     int    `json:"process_id,omitempty"`
	ProjectID     string `json:"project_id,omitempty"`
	WorkspacePath string `json:"workspace_path,omitempty"`
	// InstanceID identifies one running instance of the tool. Only
	// GetOrCreateSession uses it: it reuses the instance's open session,
	// which also makes the call safe to retry.
	InstanceID string `json:"instance_id,omitempty"`
}

// SessionStarted is the answer of StartSession.
type SessionStarted struct {
	SessionID   uuid.UUID `json:"session_id"`
	ToolID      string    `json:"tool_id"`
	ToolVersion *string   `json:"tool_version"`
	Status      string    `json:"status"` // "started"
}

// SessionHandle is the answer of GetOrCreateSession.
type SessionHandle struct {
	SessionID uuid.UUID `json:"session_id"`
	ToolID    string    `json:"tool_id"`
	// Status is "existing" when an open session was reused, "created"
	// otherwise.
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Session is a session and its totals (GET /sessions/{id}).
type Session struct {
	SessionID    uuid.UUID  `json:"session_id"`
	ToolID       string     `json:"tool_id"`
	ToolVersion  *string    `json:"tool_version"`
	ProcessID    *int64     `json:"process_id"`
	InstanceID   *string    `json:"instance_id"`
	ProjectID    *string    `json:"project_id"`
	StartedAt    time.Time  `json:"started_at"`
	EndedAt      *time.Time `json:"ended_at"` // nil while open
	LastActivity time.Time  `json:"last_activity"`
	// TotalOperations counts its operations; TokensSaved sums their
	// tokens_prevented; TotalCompressions counts its read operations and
	// TotalEmbeddings its search operations.
	TotalOperations   int64 `json:"total_operations"`
	TokensSaved       int64 `json:"tokens_saved"`
	TotalCompressions int64 `json:"total_compressions"`
	TotalEmbeddings   int64 `json:"total_embeddings"`
}

// Heartbeat is the answer of Heartbeat.
type Heartbeat struct {
	SessionID uuid.UUID `json:"session_id"`
	// Status is "active", or "ended" for a session that has ended (a
	// heartbeat never reopens one).
	Status       string    `json:"status"`
	LastActivity time.Time `json:"last_activity"`
}

// SessionEnded is the answer of EndSession.
type SessionEnded struct {
	SessionID uuid.UUID `json:"session_id"`
	Status    string    `json:"status"` // "ended"
	Summary   Session   `json:"summary"`
}

// ActiveSessions is the answer of ActiveSessions: sessions not ended with
// activity in the last 30 minutes.
type ActiveSessions struct {
	Sessions []Session `json:"active_sessions"`
	Count    int       `json:"count"`
	// ToolID echoes the filter, nil when none.
	ToolID *string `json:"tool_id"`
}

// StartSession opens a new session (POST /sessions/start). Each call that
// reaches the service opens one, so it is retried only when the service
// provably did not act: no connection could be made, or it answered 429 or
// 503. After a timeout or a lost answer the error is returned; prefer
// GetOrCreateSession with an InstanceID, which is safe to retry.
func (c *Client) StartSession(ctx context.Context, req SessionRequest) (*SessionStarted, error) {
	var out SessionStarted
	if _, err := c.postJSON(ctx, "/sessions/start", req, retryUnsent, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetOrCreateSession reuses the newest open session of the same InstanceID,
// else of the same ToolID and ProcessID, else opens one
// (POST /sessions/get_or_create). With an InstanceID or a ProcessID it is
// retried like any idempotent call: a retry finds the session that a lost
// attempt opened. With neither, every call opens a session, so it is
// retried only as StartSession is.
func (c *Client) GetOrCreateSession(ctx context.Context, req SessionRequest) (*SessionHandle, error) {
	class := retryUnsent
	if req.InstanceID != "" || req.ProcessID != 0 {
		class = retryIdempotent
	}
	var out SessionHandle
	if _, err := c.postJSON(ctx, "/sessions/get_or_create", req, class, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Heartbeat records activity of a session (POST /sessions/{id}/heartbeat).
// It only moves last_activity forward, so it is retried.
func (c *Client) Heartbeat(ctx context.Context, sessionID uuid.UUID) (*Heartbeat, error) {
	var out Heartbeat
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/sessions/" + sessionID.String() + "/heartbeat", class: retryIdempotent, out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// EndSession ends a session and answers its summary
// (POST /sessions/{id}/end). Ending an ended session answers it unchanged,
// so it is retried.
func (c *Client) EndSession(ctx context.Context, sessionID uuid.UUID) (*SessionEnded, error) {
	var out SessionEnded
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/sessions/" + sessionID.String() + "/end", class: retryIdempotent, out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// GetSession answers a session and its totals (GET /sessions/{id}); an
// unknown one is an *APIError with status 404 (see IsNotFound).
func (c *Client) GetSession(ctx context.Context, sessionID uuid.UUID) (*Session, error) {
	var out Session
	if err := c.get(ctx, "/sessions/"+sessionID.String(), nil, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ActiveSessions lists the open sessions active in the last 30 minutes
// (GET /sessions/active), of toolID only when it is not empty.
func (c *Client) ActiveSessions(ctx context.Context, toolID string) (*ActiveSessions, error) {
	v := url.Values{}
	if toolID != "" {
		v.Set("tool_id", toolID)
	}
	var out ActiveSessions
	if err := c.get(ctx, "/sessions/active", v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
