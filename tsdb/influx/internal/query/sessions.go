package query

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// Sessions. A session is not a row to update but the merge of events that
// are only ever added (measurement tool_session, tags event, session_id,
// tool_id, one point per event):
//
//   - start (CreateSession): its time is started_at, its fields the
//     session's attributes (tool_version, process_id, instance_id,
//     project_id, workspace_path; absent when nil) and v=1;
//   - heartbeat (TouchSession): its time is an activity;
//   - end (EndSession): its time is ended_at (the earliest end wins).
//
// and of the session's operations: last_activity is the latest of the
// start, the heartbeats and the operations' created_at, so it only moves
// forward, and an operation never reopens an ended session. A session that
// has operations but no start event was created implicitly by its first
// operation: started at the earliest operation's created_at, with that
// operation's tool_id and no process id. So WriteOperations writes no
// session point at all, and needs no read before writing; a session is
// exactly as visible as its operations. Totals are computed from the
// operations (TotalCompressions: read operations, TotalEmbeddings: search
// operations).

// sessAgg gathers a session's events and operation aggregates.
type sessAgg struct {
	id uuid.UUID

	hasStart bool
	start    time.Time
	toolID   string
	attrs    tsdb.Session // the optional attributes of the start event

	activity time.Time // latest heartbeat
	ended    *time.Time

	hasOps      bool
	hasFirst    bool
	opFirst     time.Time
	opFirstTool string
	opLast      time.Time
	stats       tsdb.SessionStats // the totals only
}

func (a *sessAgg) exists() bool { return a.hasStart || a.hasOps }

func (a *sessAgg) result() tsdb.SessionStats {
	st := a.stats
	st.SessionID = a.id
	if a.hasStart {
		st.ToolID = a.toolID
		st.StartedAt = a.start
		st.ToolVersion = a.attrs.ToolVersion
		st.ProcessID = a.attrs.ProcessID
		st.InstanceID = a.attrs.InstanceID
		st.ProjectID = a.attrs.ProjectID
		st.WorkspacePath = a.attrs.WorkspacePath
	} else {
		st.ToolID = a.opFirstTool
		st.StartedAt = a.opFirst
	}
	st.LastActivity = st.StartedAt
	for _, t := range []time.Time{a.activity, a.opLast} {
		if t.After(st.LastActivity) {
			st.LastActivity = t
		}
	}
	st.EndedAt = a.ended
	return st
}

// loadSessions answers the sessions whose id matches idPred (a Flux
// predicate on r.session_id), keyed by id; missing ones are absent.
func (s *Reader) loadSessions(ctx context.Context, idPred string) (map[uuid.UUID]*sessAgg, error) {
	q := `from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(minTime, maxTime) + `
  |> filter(fn: (r) => r._measurement == "` + schema.Session + `" and ` + idPred + `)
  |> yield(name: "events")

ops = from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(minTime, maxTime) + `
  |> filter(fn: (r) => r._measurement == "` + schema.Operation + `" and ` + idPred + ` and r._field == "tokens_prevented")
ops |> first() |> yield(name: "first")
ops |> last() |> yield(name: "last")
ops |> count() |> yield(name: "count")
ops |> sum() |> yield(name: "sum")`
	out := map[uuid.UUID]*sessAgg{}
	err := s.query(ctx, "load sessions", q, func(r row) error {
		id, err := uuid.Parse(r.str("session_id"))
		if err != nil {
			return fmt.Errorf("influx: session id %q: %w", r.str("session_id"), err)
		}
		a := out[id]
		if a == nil {
			a = &sessAgg{id: id}
			out[id] = a
		}
		t := r.time("_time").Truncate(time.Microsecond)
		switch r.result {
		case "events":
			a.addEvent(r, t)
		case "first":
			if !a.hasFirst || t.Before(a.opFirst) {
				a.opFirst, a.opFirstTool = t, schema.Decode(r.str("tool_id"))
			}
			a.hasOps, a.hasFirst = true, true
		case "last":
			if t.After(a.opLast) {
				a.opLast = t
			}
			a.hasOps = true
		case "count":
			n := r.int("_value")
			a.stats.TotalOperations += n
			switch r.str("tool_name") {
			case api.ToolRead:
				a.stats.TotalCompressions += n
			case api.ToolSearch:
				a.stats.TotalEmbeddings += n
			}
		case "sum":
			a.stats.TokensSaved += r.int("_value")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for id, a := range out {
		if !a.exists() {
			delete(out, id)
		}
	}
	return out, nil
}

func (a *sessAgg) addEvent(r row, t time.Time) {
	switch r.str("event") {
	case schema.EventStart:
		if a.hasStart && t.After(a.start) {
			return // another start (never written by this store): the first wins
		}
		if !a.hasStart || t.Before(a.start) {
			a.attrs = tsdb.Session{}
		}
		a.hasStart, a.start, a.toolID = true, t, schema.Decode(r.str("tool_id"))
		// The CSV answer gives "" as null: the row's presence says the
		// field is set.
		sv := func() *string { v := schema.Decode(r.str("_value")); return &v }
		switch r.str("_field") {
		case "tool_version":
			a.attrs.ToolVersion = sv()
		case "instance_id":
			a.attrs.InstanceID = sv()
		case "project_id":
			a.attrs.ProjectID = sv()
		case "workspace_path":
			a.attrs.WorkspacePath = sv()
		case "process_id":
			v := r.int("_value")
			a.attrs.ProcessID = &v
		}
	case schema.EventHeartbeat:
		if t.After(a.activity) {
			a.activity = t
		}
	case schema.EventEnd:
		if a.ended == nil || t.Before(*a.ended) {
			a.ended = &t
		}
	}
}

func sessionNotFound(id uuid.UUID) error {
	return fmt.Errorf("session %s: %w", id, tsdb.ErrNotFound)
}

// GetSession answers the session and its totals, or tsdb.ErrNotFound.
func (s *Reader) GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error) {
	m, err := s.loadSessions(ctx, eq("session_id", id.String()))
	if err != nil {
		return tsdb.SessionStats{}, err
	}
	a := m[id]
	if a == nil {
		return tsdb.SessionStats{}, sessionNotFound(id)
	}
	return a.result(), nil
}

// idsPred answers a predicate matching any of ids (UUIDs: no regexp
// metacharacters but "-", which is literal outside brackets).
func idsPred(ids []uuid.UUID) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id.String()
	}
	return `r.session_id =~ /^(?:` + strings.Join(parts, "|") + `)$/`
}

// loadMany loads the sessions of ids, in chunks that keep the query short.
func (s *Reader) loadMany(ctx context.Context, ids []uuid.UUID) ([]tsdb.SessionStats, error) {
	var out []tsdb.SessionStats
	const chunk = 200
	for i := 0; i < len(ids); i += chunk {
		m, err := s.loadSessions(ctx, idsPred(ids[i:min(i+chunk, len(ids))]))
		if err != nil {
			return nil, err
		}
		for _, a := range m {
			out = append(out, a.result())
		}
	}
	return out, nil
}

// FindOpenSession answers the newest open session with m.InstanceID, else
// the newest open one with m.ToolID and m.ProcessID (newest: latest
// started_at, then latest activity, then largest id).
func (s *Reader) FindOpenSession(ctx context.Context, m tsdb.SessionMatch) (tsdb.Session, error) {
	if m.InstanceID == nil && m.ProcessID == nil {
		return tsdb.Session{}, fmt.Errorf("open session for tool %q: %w", m.ToolID, tsdb.ErrNotFound)
	}
	src := `from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(minTime, maxTime) + `
  |> filter(fn: (r) => r._measurement == "` + schema.Session + `" and r.event == "` + schema.EventStart + `" and `
	var q string
	if m.InstanceID != nil {
		q += src + `r._field == "instance_id" and r._value == ` + fluxString(schema.FieldString(*m.InstanceID)) + `)
  |> keep(columns: ["session_id"])
  |> yield(name: "instance")
`
	}
	if m.ProcessID != nil {
		q += src + eq("tool_id", schema.TagValue(m.ToolID)) + ` and r._field == "process_id" and r._value == ` +
			strconv.FormatInt(*m.ProcessID, 10) + `)
  |> keep(columns: ["session_id"])
  |> yield(name: "process")
`
	}
	cands := map[string][]uuid.UUID{}
	err := s.query(ctx, "find open session", q, func(r row) error {
		id, err := uuid.Parse(r.str("session_id"))
		if err != nil {
			return fmt.Errorf("influx: session id %q: %w", r.str("session_id"), err)
		}
		cands[r.result] = append(cands[r.result], id)
		return nil
	})
	if err != nil {
		return tsdb.Session{}, err
	}
	for _, kind := range []string{"instance", "process"} {
		if len(cands[kind]) == 0 {
			continue
		}
		list, err := s.loadMany(ctx, cands[kind])
		if err != nil {
			return tsdb.Session{}, err
		}
		var best *tsdb.SessionStats
		for i := range list {
			c := &list[i]
			if c.EndedAt != nil {
				continue
			}
			if best == nil || newer(c, best) {
				best = c
			}
		}
		if best != nil {
			return best.Session, nil
		}
	}
	return tsdb.Session{}, fmt.Errorf("open session for tool %q: %w", m.ToolID, tsdb.ErrNotFound)
}

func newer(a, b *tsdb.SessionStats) bool {
	if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
		return c > 0
	}
	if c := a.LastActivity.Compare(b.LastActivity); c != 0 {
		return c > 0
	}
	return a.SessionID.String() > b.SessionID.String()
}

// ActiveSessions answers the open sessions (of toolID when given) whose
// last activity is at or after since, newest activity first. A session's
// last activity is the time of one of its events or operations, so the
// candidates are the sessions with any point at or after since; their full
// state is then loaded and checked.
func (s *Reader) ActiveSessions(ctx context.Context, toolID string, since time.Time) ([]tsdb.SessionStats, error) {
	lo := ceilMicro(since)
	out := []tsdb.SessionStats{}
	if !lo.Before(maxTime) {
		return out, nil
	}
	if lo.Before(minTime) {
		lo = minTime
	}
	opsQ := `from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(lo, maxTime) + `
  |> filter(fn: (r) => r._measurement == "` + schema.Operation + `" and r._field == "id")
  |> last()
  |> keep(columns: ["session_id"])
  |> yield(name: "ops")`
	eventsQ := `from(bucket: ` + s.bucket + `)
  |> ` + fluxRange(lo, maxTime) + `
  |> filter(fn: (r) => r._measurement == "` + schema.Session + `" and r._field == "v")
  |> last()
  |> keep(columns: ["session_id"])
  |> yield(name: "events")`
	seen := map[uuid.UUID]bool{}
	var ids []uuid.UUID
	err := s.queryEach(ctx, "active sessions", func(r row) error {
		id, err := uuid.Parse(r.str("session_id"))
		if err != nil {
			return fmt.Errorf("influx: session id %q: %w", r.str("session_id"), err)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		return nil
	}, opsQ, eventsQ)
	if err != nil {
		return nil, err
	}
	list, err := s.loadMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, st := range list {
		if st.EndedAt == nil && !st.LastActivity.Before(since) && (toolID == "" || st.ToolID == toolID) {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b tsdb.SessionStats) int {
		if c := b.LastActivity.Compare(a.LastActivity); c != 0 {
			return c
		}
		return strings.Compare(b.SessionID.String(), a.SessionID.String())
	})
	return out, nil
}
