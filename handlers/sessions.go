package handlers

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// sessionRoutes serve /sessions/...
type sessionRoutes struct{ svc SessionKeeper }

// toAPISession answers s as the API answers it.
func toAPISession(s tsdb.SessionStats) api.Session {
	out := api.Session{
		SessionID:         s.SessionID,
		ToolID:            s.ToolID,
		ToolVersion:       s.ToolVersion,
		ProcessID:         s.ProcessID,
		InstanceID:        s.InstanceID,
		ProjectID:         s.ProjectID,
		StartedAt:         s.StartedAt.UTC(),
		LastActivity:      s.LastActivity.UTC(),
		TotalOperations:   s.TotalOperations,
		TokensSaved:       s.TokensSaved,
		TotalCompressions: s.TotalCompressions,
		TotalEmbeddings:   s.TotalEmbeddings,
	}
	if s.EndedAt != nil {
		ended := s.EndedAt.UTC()
		out.EndedAt = &ended
	}
	return out
}

// decodeSessionRequest reads the body of /sessions/start and
// /sessions/get_or_create.
func decodeSessionRequest(r *http.Request) (exporter.SessionRequest, error) {
	data, err := readBody(r)
	if err != nil {
		return exporter.SessionRequest{}, err
	}
	o, err := decodeObject(data)
	if err != nil {
		return exporter.SessionRequest{}, err
	}
	toolID, _ := o.text(fToolID, true, true, api.MaxToolIDLength)
	req := exporter.SessionRequest{
		ToolID:        toolID,
		ToolVersion:   o.str(fToolVersion, 0),
		ProjectID:     o.str(fProjectID, 0),
		WorkspacePath: o.str(fWorkspacePath, 0),
		InstanceID:    o.str(fInstanceID, 0),
	}
	if pid, ok := o.integer(fProcessID, false, math64Min); ok {
		req.ProcessID = &pid
	}
	return req, o.err()
}

// start serves POST /sessions/start.
func (h sessionRoutes) start(_ http.ResponseWriter, r *http.Request) (any, error) {
	req, err := decodeSessionRequest(r)
	if err != nil {
		return nil, err
	}
	s, err := h.svc.StartSession(r.Context(), req)
	if err != nil {
		return nil, err
	}
	return api.SessionStarted{SessionID: s.SessionID, ToolID: s.ToolID, ToolVersion: s.ToolVersion, Status: api.StatusStarted}, nil
}

// getOrCreate serves POST /sessions/get_or_create.
func (h sessionRoutes) getOrCreate(_ http.ResponseWriter, r *http.Request) (any, error) {
	req, err := decodeSessionRequest(r)
	if err != nil {
		return nil, err
	}
	s, created, err := h.svc.GetOrCreateSession(r.Context(), req)
	if err != nil {
		return nil, err
	}
	if created {
		return api.SessionGetOrCreate{SessionID: s.SessionID, ToolID: s.ToolID, Status: api.StatusCreated, Message: "Created new session"}, nil
	}
	return api.SessionGetOrCreate{SessionID: s.SessionID, ToolID: s.ToolID, Status: api.StatusExisting, Message: "Reusing existing session"}, nil
}

// sessionID reads the {id} path variable: 400 when malformed.
func sessionID(r *http.Request) (uuid.UUID, error) {
	id, ok := api.ParseUUID(mux.Vars(r)["id"])
	if !ok {
		return id, badRequest(invalidSessionID)
	}
	return id, nil
}

// heartbeat serves POST /sessions/{id}/heartbeat.
func (h sessionRoutes) heartbeat(_ http.ResponseWriter, r *http.Request) (any, error) {
	id, err := sessionID(r)
	if err != nil {
		return nil, err
	}
	s, err := h.svc.Heartbeat(r.Context(), id)
	if err != nil {
		return nil, sessionNotFound(err, id)
	}
	status := api.StatusActive
	if s.EndedAt != nil {
		status = api.StatusEnded
	}
	return api.Heartbeat{SessionID: id, Status: status, LastActivity: s.LastActivity.UTC()}, nil
}

// end serves POST /sessions/{id}/end.
func (h sessionRoutes) end(_ http.ResponseWriter, r *http.Request) (any, error) {
	id, err := sessionID(r)
	if err != nil {
		return nil, err
	}
	s, err := h.svc.EndSession(r.Context(), id)
	if err != nil {
		return nil, sessionNotFound(err, id)
	}
	return api.SessionEnded{SessionID: id, Status: api.StatusEnded, Summary: toAPISession(s)}, nil
}

// get serves GET /sessions/{id}.
func (h sessionRoutes) get(_ http.ResponseWriter, r *http.Request) (any, error) {
	id, err := sessionID(r)
	if err != nil {
		return nil, err
	}
	s, err := h.svc.GetSession(r.Context(), id)
	if err != nil {
		return nil, sessionNotFound(err, id)
	}
	return toAPISession(s), nil
}

// active serves GET /sessions/active.
func (h sessionRoutes) active(_ http.ResponseWriter, r *http.Request) (any, error) {
	toolID := r.URL.Query().Get("tool_id")
	list, err := h.svc.ActiveSessions(r.Context(), toolID)
	if err != nil {
		return nil, err
	}
	out := api.ActiveSessions{Sessions: make([]api.Session, len(list)), Count: len(list)}
	for i, s := range list {
		out.Sessions[i] = toAPISession(s)
	}
	if toolID != "" {
		out.ToolID = &toolID
	}
	return out, nil
}
