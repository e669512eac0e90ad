package query_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/delivery"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
)

// TestParsePoint: the points the store writes read back from their line
// protocol with their values, their series (escaped tag values included)
// and their time, as the rollup cache adds delivered points to its edge
// minutes.
func TestParsePoint(t *testing.T) {
	at := time.Date(2025, 3, 4, 10, 59, 59, 123456000, time.UTC)
	hit := true
	fp := `C:\dir with space\a,b="c".go`
	op := tsdb.Operation{
		ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: "full",
		Parameters: json.RawMessage(`{"q":"a \"quoted\", spaced=value"}`), FilePath: &fp,
		TokensOriginal: 5000, TokensActual: 1200, TokensPrevented: -3, ResponseTimeMs: 12.375,
		ToolID: `tool, with=odd\chars`, CreatedAt: at, CacheHit: &hit,
	}
	var e delivery.Encoder
	e.Operation(&op, 7, 2)
	line := bytes.TrimSuffix(e.Bytes(), []byte("\n"))
	p, ok := query.ParsePoint(line)
	if !ok {
		t.Fatalf("ParsePoint(%s) failed", line)
	}
	r := p.Row
	if p.NS != at.UnixNano()+7 || r.Hour != at.Truncate(time.Hour).UnixMicro() ||
		r.Totals != (tsdb.Totals{Count: 1, TokensOriginal: 5000, TokensActual: 1200, TokensPrevented: -3, ResponseTimeSumMs: 12.375}) ||
		r.Cache != (tsdb.CacheCounts{Lookups: 1, Hits: 1}) || r.Key.ToolName != "read" || r.Key.Mode != "full" {
		t.Fatalf("ParsePoint: %+v %+v", p, *r.Key)
	}
	want := "dup=2\x00operation_mode=full\x00session_id=" + op.SessionID.String() + "\x00tool_id=" + r.Key.ToolID + "\x00tool_name=read\x00"
	if p.Series != want {
		t.Fatalf("series %q, want %q", p.Series, want)
	}
	if _, ok := query.ParseSpendPoint(line); ok {
		t.Fatal("an operation parsed as a spend point")
	}

	sp := tsdb.SpendPoint{ID: uuid.New(), ToolID: "cursor", Model: "", Time: at, CostUSD: 0.125,
		Tokens: tsdb.Tokens{Input: 1, Output: 2, CacheRead: 3, CacheCreation: 4}}
	e = delivery.Encoder{}
	e.Spend(&sp, 0, 0)
	s, ok := query.ParseSpendPoint(bytes.TrimSpace(e.Bytes()))
	if !ok || s.NS != at.UnixNano() || s.Row.Points != 1 || s.Row.CostUSD != 0.125 ||
		s.Row.Tokens != (tsdb.Tokens{Input: 1, Output: 2, CacheRead: 3, CacheCreation: 4}) || s.Row.ToolID != "cursor" {
		t.Fatalf("ParseSpendPoint: %+v", s)
	}
}
