// Package bare is the reference the service's single-operation ingest is
// measured against: a plain net/http handler of POST /track/tool-operation
// that decodes the body into a struct and answers the service's reply
// shape, storing nothing.
package bare

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// Operation is the body of POST /track/tool-operation, decoded the plain
// way: the reference the service's own decoding and validation are measured
// against.
type Operation struct {
	SessionID       string          `json:"session_id"`
	ToolName        string          `json:"tool_name"`
	OperationMode   string          `json:"operation_mode"`
	Parameters      json.RawMessage `json:"parameters"`
	FilePath        *string         `json:"file_path"`
	TokensOriginal  int64           `json:"tokens_original"`
	TokensActual    int64           `json:"tokens_actual"`
	TokensPrevented *int64          `json:"tokens_prevented"`
	ResponseTimeMs  float64         `json:"response_time_ms"`
	ToolID          string          `json:"tool_id"`
	CreatedAt       *time.Time      `json:"created_at"`
}

// Handler decodes the operation into a struct and answers the service's
// reply shape, storing nothing: the fastest a net/http handler of this API
// can be on this machine.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /track/tool-operation", func(w http.ResponseWriter, r *http.Request) {
		var op Operation
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&op); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"detail":"invalid body"}`)
			return
		}
		b, _ := json.Marshal(map[string]string{"status": "success", "operation_id": uuid.NewString()})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"healthy"}`)
	})
	return mux
}
