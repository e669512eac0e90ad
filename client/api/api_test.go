package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 14, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"1":                             time.Second,
		" 120 ":                         2 * time.Minute,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Tue, 14 Jan 2025 10:00:30 GMT": 30 * time.Second,
		"Tue, 14 Jan 2025 09:00:00 GMT": 0,
		"99999999999":                   24 * time.Hour,
	} {
		if got := api.ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestOperationRequestJSON: the optional fields are left out when zero, and
// a created_at in another zone is sent in UTC.
func TestOperationRequestJSON(t *testing.T) {
	sid := uuid.MustParse("123e4567-e89b-12d3-a456-426614174000")
	b, err := json.Marshal(api.OperationRequest{SessionID: sid, ToolName: api.ToolRead, OperationMode: api.ModeFull, ToolID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"read","operation_mode":"full","tokens_original":0,"tokens_actual":0,"response_time_ms":0,"tool_id":"t"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	zone := time.FixedZone("CET", 3600)
	prevented, miss := int64(-3), false
	b, err = json.Marshal(api.OperationRequest{OperationID: sid, SessionID: sid, TokensPrevented: &prevented,
		CreatedAt: time.Date(2025, 1, 14, 11, 30, 0, 0, zone), Parameters: map[string]any{"a": 1}, FilePath: "x.go",
		CacheHit: &miss})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{`"operation_id":"123e4567-`, `"created_at":"2025-01-14T10:30:00Z"`, `"tokens_prevented":-3`,
		`"parameters":{"a":1}`, `"file_path":"x.go"`, `"cache_hit":false`} {
		if !strings.Contains(string(b), part) {
			t.Errorf("%s lacks %s", b, part)
		}
	}
}

func TestParseUUID(t *testing.T) {
	const upper = "123E4567-E89B-12D3-A456-426614174000"
	want := uuid.MustParse(upper)
	for _, parse := range []func(string) (uuid.UUID, bool){api.ParseUUID, func(s string) (uuid.UUID, bool) { return api.ParseUUIDBytes([]byte(s)) }} {
		if u, ok := parse(upper); !ok || u != want {
			t.Errorf("upper case: %v, %v", u, ok)
		}
		for _, s := range []string{"123e4567e89b12d3a456426614174000", "{123e4567-e89b-12d3-a456-426614174000}",
			"urn:uuid:123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456_426614174000", "123e4567-e89b-12d3-a456-42661417400g", ""} {
			if _, ok := parse(s); ok {
				t.Errorf("%q accepted", s)
			}
		}
	}
}

func TestSessionPath(t *testing.T) {
	if got := api.SessionPath(api.PathSessionEnd, "abc"); got != "/sessions/abc/end" {
		t.Errorf("SessionPath = %q", got)
	}
}

func TestFieldError(t *testing.T) {
	f := api.FieldError{Loc: []any{"body", "operations", 3, "tool_name"}, Msg: "bad"}
	if f.String() != "body.operations.3.tool_name: bad" {
		t.Errorf("String() = %q", f.String())
	}
}
