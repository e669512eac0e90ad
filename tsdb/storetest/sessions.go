package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func fmtTimePtr(p *time.Time) string {
	if p == nil {
		return "nil"
	}
	return p.UTC().Format(time.RFC3339Nano)
}

func eqPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// sameSession compares every field of two sessions.
func sameSession(got, want tsdb.Session) error {
	var d []string
	if got.SessionID != want.SessionID {
		d = append(d, fmt.Sprintf("SessionID %s, want %s", got.SessionID, want.SessionID))
	}
	if got.ToolID != want.ToolID {
		d = append(d, fmt.Sprintf("ToolID %q, want %q", got.ToolID, want.ToolID))
	}
	for _, f := range []struct {
		name      string
		got, want *string
	}{
		{"ToolVersion", got.ToolVersion, want.ToolVersion},
		{"InstanceID", got.InstanceID, want.InstanceID},
		{"ProjectID", got.ProjectID, want.ProjectID},
		{"WorkspacePath", got.WorkspacePath, want.WorkspacePath},
	} {
		if !eqPtr(f.got, f.want) {
			d = append(d, fmt.Sprintf("%s %s, want %s", f.name, fmtPtr(f.got), fmtPtr(f.want)))
		}
	}
	if !eqPtr(got.ProcessID, want.ProcessID) {
		d = append(d, fmt.Sprintf("ProcessID %s, want %s", fmtPtr(got.ProcessID), fmtPtr(want.ProcessID)))
	}
	if !got.StartedAt.Equal(want.StartedAt) {
		d = append(d, fmt.Sprintf("StartedAt %s, want %s", fmtTimePtr(&got.StartedAt), fmtTimePtr(&want.StartedAt)))
	}
	if (got.EndedAt == nil) != (want.EndedAt == nil) || (got.EndedAt != nil && !got.EndedAt.Equal(*want.EndedAt)) {
		d = append(d, fmt.Sprintf("EndedAt %s, want %s", fmtTimePtr(got.EndedAt), fmtTimePtr(want.EndedAt)))
	}
	if !got.LastActivity.Equal(want.LastActivity) {
		d = append(d, fmt.Sprintf("LastActivity %s, want %s", fmtTimePtr(&got.LastActivity), fmtTimePtr(&want.LastActivity)))
	}
	if len(d) == 0 {
		return nil
	}
	return errors.New(strings.Join(d, "; "))
}

type stats struct{ ops, saved, compressions, embeddings int64 }

func checkStats(t *testing.T, what string, got tsdb.SessionStats, want tsdb.Session, w stats) {
	t.Helper()
	if err := sameSession(got.Session, want); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	g := stats{got.TotalOperations, got.TokensSaved, got.TotalCompressions, got.TotalEmbeddings}
	if g != w {
		t.Errorf("%s: totals (operations, saved, compressions, embeddings) = %+v, want %+v", what, g, w)
	}
}

func getSession(t *testing.T, s tsdb.Store, id uuid.UUID) tsdb.SessionStats {
	t.Helper()
	st, err := s.GetSession(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSession(%s): %v", id, err)
	}
	return st
}

func createSession(t *testing.T, s tsdb.Store, sess tsdb.Session) {
	t.Helper()
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession(%s): %v", sess.SessionID, err)
	}
}

func testSessionCreateGet(t *testing.T, s tsdb.Store) {
	g := newIDs(20)
	full := tsdb.Session{
		SessionID: g.next(), ToolID: "claude-code", ToolVersion: ptr("1.2.3"), ProcessID: ptr(int64(48213)),
		InstanceID: ptr("inst-7f3a"), ProjectID: ptr("omnimemory"), WorkspacePath: ptr("/home/dev/omnimemory"),
		StartedAt: at(9, 0, 0, 123456), LastActivity: at(9, 5, 0, 654321),
	}
	bare := tsdb.Session{SessionID: g.next(), ToolID: "cursor", StartedAt: at(10, 0, 0, 1), LastActivity: at(10, 0, 0, 1)}
	ended := tsdb.Session{SessionID: g.next(), ToolID: "cursor", ProcessID: ptr(int64(0)), StartedAt: at(8, 0, 0, 0),
		LastActivity: at(8, 30, 0, 0), EndedAt: ptr(at(8, 31, 0, 999999))}
	for _, sess := range []tsdb.Session{full, bare, ended} {
		createSession(t, s, sess)
	}
	for _, sess := range []tsdb.Session{full, bare, ended} {
		checkStats(t, "GetSession "+sess.SessionID.String(), getSession(t, s, sess.SessionID), sess, stats{})
	}
}

func testSessionGetUnknown(t *testing.T, s tsdb.Store) {
	id := newIDs(21).next()
	if _, err := s.GetSession(t.Context(), id); !errors.Is(err, tsdb.ErrNotFound) {
		t.Errorf("GetSession(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.TouchSession(t.Context(), id, at(1, 0, 0, 0)); !errors.Is(err, tsdb.ErrNotFound) {
		t.Errorf("TouchSession(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.EndSession(t.Context(), id, at(1, 0, 0, 0)); !errors.Is(err, tsdb.ErrNotFound) {
		t.Errorf("EndSession(unknown) error = %v, want ErrNotFound", err)
	}
	// Nothing was created by those calls.
	if _, err := s.GetSession(t.Context(), id); !errors.Is(err, tsdb.ErrNotFound) {
		t.Errorf("GetSession after failed calls: error = %v, want ErrNotFound", err)
	}
}

func testSessionImplicit(t *testing.T, s tsdb.Store) {
	g := newIDs(22)
	id := g.next()
	t0 := at(9, 0, 0, 5)
	write(t, s, g.mk(opSpec{session: id, toolID: "cursor", tool: api.ToolSearch, at: t0, orig: 100, act: 40}))
	want := tsdb.Session{SessionID: id, ToolID: "cursor", StartedAt: t0, LastActivity: t0}
	checkStats(t, "after the first operation", getSession(t, s, id), want, stats{1, 60, 0, 1})

	write(t, s, g.mk(opSpec{session: id, toolID: "cursor", at: t0.Add(time.Hour), orig: 10, act: 20}))
	want.LastActivity = t0.Add(time.Hour)
	checkStats(t, "after a later operation", getSession(t, s, id), want, stats{2, 50, 1, 1})

	write(t, s, g.mk(opSpec{session: id, toolID: "cursor", at: t0.Add(30 * time.Minute), orig: 5, act: 0}))
	checkStats(t, "after an older operation (last_activity never goes back)", getSession(t, s, id), want, stats{3, 55, 2, 1})

	// A new session whose first batch holds several operations, oldest not first.
	id2 := g.next()
	write(t, s,
		g.mk(opSpec{session: id2, toolID: "windsurf", at: at(12, 0, 0, 0), orig: 1}),
		g.mk(opSpec{session: id2, toolID: "windsurf", at: at(11, 0, 0, 0), orig: 2}),
		g.mk(opSpec{session: id2, toolID: "windsurf", at: at(13, 0, 0, 0), orig: 3}),
	)
	checkStats(t, "session created by one batch", getSession(t, s, id2),
		tsdb.Session{SessionID: id2, ToolID: "windsurf", StartedAt: at(11, 0, 0, 0), LastActivity: at(13, 0, 0, 0)},
		stats{3, 6, 3, 0})
}

func testSessionTotals(t *testing.T, s tsdb.Store) {
	g := newIDs(23)
	sess := tsdb.Session{SessionID: g.next(), ToolID: "claude-code", ProcessID: ptr(int64(7)),
		StartedAt: at(8, 0, 0, 0), LastActivity: at(8, 0, 0, 0)}
	createSession(t, s, sess)
	other := g.next()
	id := sess.SessionID
	write(t, s,
		g.mk(opSpec{session: id, tool: api.ToolRead, at: at(8, 1, 0, 0), orig: 1000, act: 200}),
		g.mk(opSpec{session: id, tool: api.ToolRead, at: at(8, 2, 0, 0), orig: 100, act: 300}),
		g.mk(opSpec{session: other, tool: api.ToolRead, at: at(8, 2, 0, 0), orig: 100000, act: 0}),
		g.mk(opSpec{session: id, tool: api.ToolSearch, mode: "semantic", at: at(8, 3, 0, 0), orig: 50, act: 10}),
	)
	write(t, s,
		g.mk(opSpec{session: id, tool: api.ToolSearch, mode: "tri_index", at: at(8, 4, 0, 0), orig: 0, act: 0}),
		g.mk(opSpec{session: id, tool: api.ToolRead, mode: "overview", at: at(8, 5, 0, 0), orig: 10, act: 10}),
		g.mk(opSpec{session: id, tool: api.ToolRead, mode: "symbol", at: at(8, 6, 0, 0), orig: 10, act: 30, prev: ptr(int64(0))}),
	)
	want := sess
	want.LastActivity = at(8, 6, 0, 0)
	checkStats(t, "GetSession", getSession(t, s, id), want, stats{6, 640, 4, 2})
}

func testSessionTouch(t *testing.T, s tsdb.Store) {
	g := newIDs(24)
	sess := tsdb.Session{SessionID: g.next(), ToolID: "claude-code", InstanceID: ptr("i"),
		StartedAt: at(8, 0, 0, 0), LastActivity: at(8, 0, 0, 0)}
	createSession(t, s, sess)
	touch := func(ts time.Time, want tsdb.Session) {
		t.Helper()
		got, err := s.TouchSession(t.Context(), sess.SessionID, ts)
		if err != nil {
			t.Fatalf("TouchSession(%s): %v", ts, err)
		}
		if err := sameSession(got, want); err != nil {
			t.Errorf("TouchSession(%s) answer: %v", ts.Format(time.RFC3339Nano), err)
		}
		if err := sameSession(getSession(t, s, sess.SessionID).Session, want); err != nil {
			t.Errorf("GetSession after TouchSession(%s): %v", ts.Format(time.RFC3339Nano), err)
		}
	}
	want := sess
	want.LastActivity = at(8, 10, 0, 1)
	touch(at(8, 10, 0, 1), want)
	touch(at(8, 5, 0, 0), want) // never backwards

	ended, err := s.EndSession(t.Context(), sess.SessionID, at(8, 20, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.TouchSession(t.Context(), sess.SessionID, at(8, 30, 0, 0))
	if err != nil {
		t.Fatalf("TouchSession on an ended session: %v", err)
	}
	if got.EndedAt == nil || !got.EndedAt.Equal(*ended.EndedAt) {
		t.Errorf("TouchSession reopened or changed an ended session: EndedAt %s, want %s", fmtTimePtr(got.EndedAt), fmtTimePtr(ended.EndedAt))
	}
	if st := getSession(t, s, sess.SessionID); st.EndedAt == nil || !st.EndedAt.Equal(at(8, 20, 0, 0)) {
		t.Errorf("after TouchSession: EndedAt %s, want %s", fmtTimePtr(st.EndedAt), fmtTimePtr(ptr(at(8, 20, 0, 0))))
	}
}

func testSessionEnd(t *testing.T, s tsdb.Store) {
	g := newIDs(25)
	sess := tsdb.Session{SessionID: g.next(), ToolID: "claude-code", ToolVersion: ptr("0.9"), ProcessID: ptr(int64(1)),
		StartedAt: at(8, 0, 0, 0), LastActivity: at(8, 0, 0, 0)}
	createSession(t, s, sess)
	write(t, s,
		g.mk(opSpec{session: sess.SessionID, tool: api.ToolRead, at: at(8, 1, 0, 0), orig: 500, act: 100}),
		g.mk(opSpec{session: sess.SessionID, tool: api.ToolSearch, at: at(8, 2, 0, 0), orig: 100, act: 150}),
	)
	end := at(9, 0, 0, 424242)
	want := sess
	want.LastActivity = at(8, 2, 0, 0)
	want.EndedAt = &end
	first, err := s.EndSession(t.Context(), sess.SessionID, end)
	if err != nil {
		t.Fatalf("EndSession: %v", err)
	}
	checkStats(t, "EndSession answer", first, want, stats{2, 350, 1, 1})
	checkStats(t, "GetSession after EndSession", getSession(t, s, sess.SessionID), want, stats{2, 350, 1, 1})

	again, err := s.EndSession(t.Context(), sess.SessionID, end.Add(time.Hour))
	if err != nil {
		t.Fatalf("EndSession again: %v", err)
	}
	checkStats(t, "EndSession of an ended session", again, want, stats{2, 350, 1, 1})
}

func testSessionNoReopen(t *testing.T, s tsdb.Store) {
	g := newIDs(26)
	sess := tsdb.Session{SessionID: g.next(), ToolID: "claude-code", ProcessID: ptr(int64(99)), InstanceID: ptr("x"),
		StartedAt: at(8, 0, 0, 0), LastActivity: at(8, 0, 0, 0)}
	createSession(t, s, sess)
	end := at(8, 30, 0, 0)
	if _, err := s.EndSession(t.Context(), sess.SessionID, end); err != nil {
		t.Fatal(err)
	}
	write(t, s, g.mk(opSpec{session: sess.SessionID, at: at(9, 0, 0, 0), orig: 10, act: 4}))
	st := getSession(t, s, sess.SessionID)
	if st.EndedAt == nil || !st.EndedAt.Equal(end) {
		t.Errorf("an operation changed an ended session's EndedAt to %s, want %s", fmtTimePtr(st.EndedAt), fmtTimePtr(&end))
	}
	if st.TotalOperations != 1 || st.TokensSaved != 6 {
		t.Errorf("ended session totals: %d operations, %d saved; want 1, 6", st.TotalOperations, st.TokensSaved)
	}
	if _, err := s.FindOpenSession(t.Context(), tsdb.SessionMatch{ToolID: "claude-code", InstanceID: ptr("x"), ProcessID: ptr(int64(99))}); !errors.Is(err, tsdb.ErrNotFound) {
		t.Errorf("FindOpenSession found an ended session (err %v)", err)
	}
	active, err := s.ActiveSessions(t.Context(), "", at(0, 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 0 {
		t.Errorf("ActiveSessions lists %d sessions, want none (the only one ended)", len(active))
	}
}

func testFindOpen(t *testing.T, s tsdb.Store) {
	g := newIDs(27)
	mk := func(tool string, inst *string, pid *int64, h int) tsdb.Session {
		// Later sessions both start and act later, so "newest" is unambiguous.
		return tsdb.Session{SessionID: g.next(), ToolID: tool, InstanceID: inst, ProcessID: pid,
			StartedAt: at(h, 0, 0, 0), LastActivity: at(h, 10, 0, 0)}
	}
	sA := mk("claude-code", ptr("inst-1"), ptr(int64(100)), 1)
	sB := mk("claude-code", nil, ptr(int64(100)), 2)
	sC := mk("claude-code", ptr("inst-1"), ptr(int64(200)), 3)
	sD := mk("claude-code", ptr("inst-2"), ptr(int64(300)), 4)
	sE := mk("cursor", nil, ptr(int64(100)), 5)
	for _, sess := range []tsdb.Session{sC, sA, sE, sD, sB} {
		createSession(t, s, sess)
	}
	if _, err := s.EndSession(t.Context(), sD.SessionID, at(4, 30, 0, 0)); err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name string
		m    tsdb.SessionMatch
		want *tsdb.Session // nil: ErrNotFound
	}
	check := func(cases []tc) {
		t.Helper()
		for _, c := range cases {
			got, err := s.FindOpenSession(t.Context(), c.m)
			if c.want == nil {
				if !errors.Is(err, tsdb.ErrNotFound) {
					t.Errorf("%s: got session %s, err %v; want ErrNotFound", c.name, got.SessionID, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if err := sameSession(got, *c.want); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
	inst := func(s string) *string { return &s }
	pid := func(p int64) *int64 { return &p }
	check([]tc{
		{"newest with the instance id", tsdb.SessionMatch{ToolID: "claude-code", InstanceID: inst("inst-1")}, &sC},
		{"instance id preferred over process id", tsdb.SessionMatch{ToolID: "claude-code", InstanceID: inst("inst-1"), ProcessID: pid(100)}, &sC},
		{"unknown instance id falls back to tool and process", tsdb.SessionMatch{ToolID: "claude-code", InstanceID: inst("inst-9"), ProcessID: pid(100)}, &sB},
		{"unknown instance id without process id", tsdb.SessionMatch{ToolID: "claude-code", InstanceID: inst("inst-9")}, nil},
		{"neither instance nor process id", tsdb.SessionMatch{ToolID: "claude-code"}, nil},
		{"newest with tool and process", tsdb.SessionMatch{ToolID: "claude-code", ProcessID: pid(100)}, &sB},
		{"other tool, same process id", tsdb.SessionMatch{ToolID: "cursor", ProcessID: pid(100)}, &sE},
		{"unknown process id", tsdb.SessionMatch{ToolID: "claude-code", ProcessID: pid(999)}, nil},
		{"ended sessions never match", tsdb.SessionMatch{ToolID: "claude-code", InstanceID: inst("inst-2"), ProcessID: pid(300)}, nil},
	})
	for _, id := range []uuid.UUID{sC.SessionID, sB.SessionID} {
		if _, err := s.EndSession(t.Context(), id, at(6, 0, 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	check([]tc{
		{"after the newest instance match ended", tsdb.SessionMatch{ToolID: "claude-code", InstanceID: inst("inst-1")}, &sA},
		{"after the newest process match ended", tsdb.SessionMatch{ToolID: "claude-code", ProcessID: pid(100)}, &sA},
	})
}

func testActiveSessions(t *testing.T, s tsdb.Store) {
	g := newIDs(28)
	mk := func(tool string, last time.Time) tsdb.Session {
		return tsdb.Session{SessionID: g.next(), ToolID: tool, StartedAt: at(0, 30, 0, 0), LastActivity: last}
	}
	since := at(1, 0, 0, 0)
	s1 := mk("A", since)                        // exactly at since: included
	s2 := mk("A", at(2, 30, 0, 0))              // advanced to 3:00 by an operation below
	s3 := mk("B", at(2, 0, 0, 0))               //
	s4 := mk("A", since.Add(-time.Microsecond)) // too old
	s5 := mk("A", at(4, 0, 0, 0))               // ended
	for _, sess := range []tsdb.Session{s1, s2, s3, s4, s5} {
		createSession(t, s, sess)
	}
	if _, err := s.EndSession(t.Context(), s5.SessionID, at(4, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	write(t, s, g.mk(opSpec{session: s2.SessionID, toolID: "A", tool: api.ToolSearch, at: at(3, 0, 0, 0), orig: 9, act: 2}))
	s2.LastActivity = at(3, 0, 0, 0)

	for _, tc := range []struct {
		tool string
		want []tsdb.Session
	}{
		{"", []tsdb.Session{s2, s3, s1}},
		{"A", []tsdb.Session{s2, s1}},
		{"B", []tsdb.Session{s3}},
		{"C", nil},
	} {
		got, err := s.ActiveSessions(t.Context(), tc.tool, since)
		if err != nil {
			t.Fatalf("ActiveSessions(%q): %v", tc.tool, err)
		}
		gotIDs := make([]uuid.UUID, len(got))
		for i, st := range got {
			gotIDs[i] = st.SessionID
		}
		wantIDs := make([]uuid.UUID, len(tc.want))
		for i, sess := range tc.want {
			wantIDs[i] = sess.SessionID
		}
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("ActiveSessions(%q) = %v, want %v", tc.tool, gotIDs, wantIDs)
			continue
		}
		for i, st := range got {
			w := stats{}
			if st.SessionID == s2.SessionID {
				w = stats{1, 7, 0, 1}
			}
			checkStats(t, fmt.Sprintf("ActiveSessions(%q)[%d]", tc.tool, i), st, tc.want[i], w)
		}
	}
}
