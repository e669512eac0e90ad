package storetest

import (
	"context"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// testKeyedRetry: a keyed operation written again (a client's retry, even
// with another created_at, as a retry without one gets) is stored once and
// marked Duplicate, in a later batch and within one batch; its totals,
// trend and session count once.
func testKeyedRetry(t *testing.T, s tsdb.Store) {
	ctx := context.Background()
	g := newIDs(41)
	sess := g.next()
	first := g.mk(opSpec{session: sess, at: at(10, 0, 0, 0), orig: 100, act: 10})
	first.Keyed = true
	other := g.mk(opSpec{session: sess, at: at(10, 5, 0, 0), orig: 50, act: 5})
	batch := []tsdb.Operation{first, other}
	if err := s.WriteOperations(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if batch[0].Duplicate || batch[1].Duplicate {
		t.Fatalf("first writes marked Duplicate: %v %v", batch[0].Duplicate, batch[1].Duplicate)
	}

	retry := first
	retry.CreatedAt = at(10, 1, 0, 0) // the retry's server-side time differs
	again := retry
	fresh := g.mk(opSpec{session: sess, at: at(10, 2, 0, 0), orig: 7, act: 7})
	fresh.Keyed = true
	batch = []tsdb.Operation{retry, fresh, again}
	if err := s.WriteOperations(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if !batch[0].Duplicate || batch[1].Duplicate || !batch[2].Duplicate {
		t.Errorf("Duplicate marks %v %v %v, want true false true", batch[0].Duplicate, batch[1].Duplicate, batch[2].Duplicate)
	}

	page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 3 || len(page.Operations) != 3 {
		t.Fatalf("%d operations stored (%d listed), want 3", page.Total, len(page.Operations))
	}
	for _, op := range page.Operations {
		if op.ID == first.ID && !op.CreatedAt.Equal(first.CreatedAt) {
			t.Errorf("the retry replaced the original: created_at %v, want %v", op.CreatedAt, first.CreatedAt)
		}
	}
	end := at(12, 0, 0, 0)
	rows, err := s.Breakdown(ctx, tsdb.Window{End: end})
	if err != nil {
		t.Fatal(err)
	}
	var sum tsdb.Totals
	for _, r := range rows {
		sum.Add(r.Totals)
	}
	if sum.Count != 3 || sum.TokensOriginal != 157 {
		t.Errorf("breakdown counts %d operations / %d original, want 3 / 157", sum.Count, sum.TokensOriginal)
	}
	buckets, err := s.Trend(ctx, tsdb.Window{End: end}, tsdb.Hourly)
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != 1 || buckets[0].Count != 3 {
		t.Errorf("trend %+v, want one bucket of 3", buckets)
	}
	if got := getSession(t, s, sess); got.TotalOperations != 3 {
		t.Errorf("session counts %d operations, want 3", got.TotalOperations)
	}
}

// testImplicitStartsAtEarliest: a session created by its operations starts
// at the earliest of them, with its tool_id, whatever order they arrive in.
func testImplicitStartsAtEarliest(t *testing.T, s tsdb.Store) {
	g := newIDs(42)
	id := g.next()
	write(t, s, g.mk(opSpec{session: id, toolID: "cursor", at: at(10, 0, 0, 0), orig: 1}))
	write(t, s, g.mk(opSpec{session: id, toolID: "zed", at: at(9, 0, 0, 0), orig: 1}))
	write(t, s, g.mk(opSpec{session: id, toolID: "vim", at: at(9, 30, 0, 0), orig: 1}))
	got := getSession(t, s, id)
	if !got.StartedAt.Equal(at(9, 0, 0, 0)) || got.ToolID != "zed" || !got.LastActivity.Equal(at(10, 0, 0, 0)) {
		t.Errorf("implicit session started %v with tool %q, last active %v; want 09:00, zed, 10:00",
			got.StartedAt, got.ToolID, got.LastActivity)
	}
}
