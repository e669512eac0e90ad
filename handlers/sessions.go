package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ActiveWindow is how recent a session's activity must be for it to be listed
// as active.
const ActiveWindow = 30 * time.Minute

// sessionJSON is a session as the API answers it.
type sessionJSON struct {
	SessionID         string  `json:"session_id"`
	ToolID            string  `json:"tool_id"`
	ToolVersion       *string `json:"tool_version"`
	ProcessID         *int64  `json:"process_id"`
	InstanceID        *string `json:"instance_id"`
	ProjectID         *string `json:"project_id"`
	StartedAt         string  `json:"started_at"`
	EndedAt           *string `json:"ended_at"`
	LastActivity      string  `json:"last_activity"`
	TotalOperations   int64   `json:"total_operations"`
	TokensSaved       int64   `json:"tokens_saved"`
	TotalCompressions int64   `json:"total_compressions"`
	TotalEmbeddings   int64   `json:"total_embeddings"`
}

func toSessionJSON(s tsdb.SessionStats) sessionJSON {
	out := sessionJSON{
		SessionID:         s.SessionID.String(),
		ToolID:            s.ToolID,
		ToolVersion:       s.ToolVersion,
		ProcessID:         s.ProcessID,
		InstanceID:        s.InstanceID,
		ProjectID:         s.ProjectID,
		StartedAt:         exporter.FormatTime(s.StartedAt),
		LastActivity:      exporter.FormatTime(s.LastActivity),
		TotalOperations:   s.TotalOperations,
		TokensSaved:       s.TokensSaved,
		TotalCompressions: s.TotalCompressions,
		TotalEmbeddings:   s.TotalEmbeddings,
	}
	if s.EndedAt != nil {
		ended := exporter.FormatTime(*s.EndedAt)
		out.EndedAt = &ended
	}
	return out
}

// sessionRequest is the body of /sessions/start and /sessions/get_or_create.
type sessionRequest struct {
	toolID, toolVersion, projectID, workspacePath, instanceID *string
	processID                                                 *int64
}

func decodeSessionRequest(r *http.Request) (sessionRequest, error) {
	data, err := readBody(r)
	if err != nil {
		return sessionRequest{}, err
	}
	o, err := decodeObject(data)
	if err != nil {
		return sessionRequest{}, err
	}
	req := sessionRequest{
		toolID:        o.str("tool_id", true, true, maxToolIDLength),
		toolVersion:   o.str("tool_version", false, false, 0),
		processID:     o.integer("process_id", false, math64Min),
		projectID:     o.str("project_id", false, false, 0),
		workspacePath: o.str("workspace_path", false, false, 0),
		instanceID:    o.str("instance_id", false, false, 0),
	}
	return req, o.err()
}

func (a *api) newSession(req sessionRequest) tsdb.Session {
	now := a.now().UTC().Truncate(time.Microsecond)
	return tsdb.Session{
		SessionID:     uuid.New(),
		ToolID:        *req.toolID,
		ToolVersion:   req.toolVersion,
		ProcessID:     req.processID,
		InstanceID:    req.instanceID,
		ProjectID:     req.projectID,
		WorkspacePath: req.workspacePath,
		StartedAt:     now,
		LastActivity:  now,
	}
}

// startSession serves POST /sessions/start.
func (a *api) startSession(w http.ResponseWriter, r *http.Request) {
	req, err := decodeSessionRequest(r)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	req.instanceID = nil // start takes no instance id; get_or_create does
	s := a.newSession(req)
	if err := a.store.CreateSession(r.Context(), s); err != nil {
		writeError(w, a.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"session_id": s.SessionID.String(), "tool_id": s.ToolID, "tool_version": s.ToolVersion, "status": "started",
	})
}

// getOrCreateSession serves POST /sessions/get_or_create. Calls are
// serialised so that two concurrent calls for one instance share a session.
func (a *api) getOrCreateSession(w http.ResponseWriter, r *http.Request) {
	req, err := decodeSessionRequest(r)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	a.sessionMu.Lock()
	defer a.sessionMu.Unlock()
	found, err := a.store.FindOpenSession(r.Context(), tsdb.SessionMatch{
		ToolID: *req.toolID, InstanceID: req.instanceID, ProcessID: req.processID,
	})
	switch {
	case err == nil:
		now := a.now().UTC().Truncate(time.Microsecond)
		if _, err := a.store.TouchSession(r.Context(), found.SessionID, now); err != nil {
			writeError(w, a.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"session_id": found.SessionID.String(), "tool_id": found.ToolID, "status": "existing",
			"message": "Reusing existing session",
		})
		return
	case !errors.Is(err, tsdb.ErrNotFound):
		writeError(w, a.logger, err)
		return
	}
	s := a.newSession(req)
	if err := a.store.CreateSession(r.Context(), s); err != nil {
		writeError(w, a.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"session_id": s.SessionID.String(), "tool_id": s.ToolID, "status": "created",
		"message": "Created new session",
	})
}

// sessionID reads the {id} path variable: 400 when malformed.
func sessionID(r *http.Request) (uuid.UUID, error) {
	id, ok := parseUUID(mux.Vars(r)["id"])
	if !ok {
		return id, badRequest("Invalid session_id format: must be a valid UUID")
	}
	return id, nil
}

// notFound turns ErrNotFound into the contract's 404 for session id.
func notFound(err error, id uuid.UUID) error {
	if errors.Is(err, tsdb.ErrNotFound) {
		return &httpError{status: http.StatusNotFound, detail: fmt.Sprintf("Session %s not found", id)}
	}
	return err
}

// heartbeat serves POST /sessions/{id}/heartbeat.
func (a *api) heartbeat(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	s, err := a.store.TouchSession(r.Context(), id, a.now().UTC().Truncate(time.Microsecond))
	if err != nil {
		writeError(w, a.logger, notFound(err, id))
		return
	}
	status := "active"
	if s.EndedAt != nil {
		status = "ended"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"session_id": id.String(), "status": status, "last_activity": exporter.FormatTime(s.LastActivity),
	})
}

// endSession serves POST /sessions/{id}/end.
func (a *api) endSession(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	s, err := a.store.EndSession(r.Context(), id, a.now().UTC().Truncate(time.Microsecond))
	if err != nil {
		writeError(w, a.logger, notFound(err, id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"session_id": id.String(), "status": "ended", "summary": toSessionJSON(s),
	})
}

// getSession serves GET /sessions/{id}.
func (a *api) getSession(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	s, err := a.store.GetSession(r.Context(), id)
	if err != nil {
		writeError(w, a.logger, notFound(err, id))
		return
	}
	writeJSON(w, http.StatusOK, toSessionJSON(s))
}

// activeSessions serves GET /sessions/active.
func (a *api) activeSessions(w http.ResponseWriter, r *http.Request) {
	toolID := r.URL.Query().Get("tool_id")
	list, err := a.store.ActiveSessions(r.Context(), toolID, a.now().UTC().Add(-ActiveWindow))
	if err != nil {
		writeError(w, a.logger, err)
		return
	}
	out := make([]sessionJSON, len(list))
	for i, s := range list {
		out[i] = toSessionJSON(s)
	}
	var echo any
	if toolID != "" {
		echo = toolID
	}
	writeJSON(w, http.StatusOK, map[string]any{"active_sessions": out, "count": len(out), "tool_id": echo})
}
