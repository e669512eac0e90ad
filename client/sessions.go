package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// StartSession opens a new session (POST /sessions/start). Each call that
// reaches the service opens one, so it is retried only when the service
// provably did not act: no connection could be made, or it answered 429 or
// 503. After a timeout or a lost answer the error is returned; prefer
// GetOrCreateSession with an InstanceID, which is safe to retry.
func (c *Client) StartSession(ctx context.Context, req SessionRequest) (*SessionStarted, error) {
	var out SessionStarted
	if _, err := c.postJSON(ctx, api.PathSessionStart, req, retryUnsent, "", &out); err != nil {
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
	if _, err := c.postJSON(ctx, api.PathSessionGetOrCreate, req, class, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Heartbeat records activity of a session (POST /sessions/{id}/heartbeat).
// It only moves last_activity forward, so it is retried.
func (c *Client) Heartbeat(ctx context.Context, sessionID uuid.UUID) (*Heartbeat, error) {
	var out Heartbeat
	_, err := c.do(ctx, call{method: http.MethodPost, path: api.SessionPath(api.PathSessionHeartbeat, sessionID.String()), class: retryIdempotent, out: &out})
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
	_, err := c.do(ctx, call{method: http.MethodPost, path: api.SessionPath(api.PathSessionEnd, sessionID.String()), class: retryIdempotent, out: &out})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// GetSession answers a session and its totals (GET /sessions/{id}); an
// unknown one is an *APIError with status 404 (see IsNotFound).
func (c *Client) GetSession(ctx context.Context, sessionID uuid.UUID) (*Session, error) {
	var out Session
	if err := c.get(ctx, api.SessionPath(api.PathSession, sessionID.String()), nil, retryIdempotent, &out); err != nil {
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
	if err := c.get(ctx, api.PathSessionsActive, v, retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
