package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// bareOperation is the body of POST /track/tool-operation, decoded the plain
// way: the reference the service's own decoding and validation are measured
// against.
type bareOperation struct {
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

// bareHandler decodes the operation into a struct and answers the service's
// reply shape, storing nothing: the fastest a net/http handler of this API
// can be on this machine.
func bareHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /track/tool-operation", func(w http.ResponseWriter, r *http.Request) {
		var op bareOperation
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

// bareServerCommand serves bareHandler until ctx ends (the bench starts it
// as a separate process, as the service is one).
func bareServerCommand(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bare-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8013", "loopback address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return usagef("--listen must be a loopback host:port such as 127.0.0.1:8013")
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           bareHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
