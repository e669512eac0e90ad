package handlers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// batchBody answers a POST /track/tool-operations body of n operations
// shaped like a tool's: every field set, parameters a small object.
func batchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"operations":[`)
	modes := []string{"full", "overview", "symbol", "references"}
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"session_id":"3f1c2a9e-5b7d-4e21-9a4f-%012d","tool_name":"read","operation_mode":%q,`+
			`"parameters":{"file_path":"/src/pkg/file%d.go","symbol":"Handler"},"file_path":"/src/pkg/file%d.go",`+
			`"tokens_original":%d,"tokens_actual":%d,"tokens_prevented":%d,"response_time_ms":%d.25,`+
			`"tool_id":"claude-code","created_at":"2026-11-25T10:%02d:%02d.123456Z"}`,
			i, modes[i%len(modes)], i%100, i%100, 5000+i, 700+i%50, 4300+i-i%50, 10+i%90, i/60%60, i%60)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkDecodeBatch measures validating a 5,000-operation batch body;
// ops/s is the figure to read.
func BenchmarkDecodeBatch(b *testing.B) {
	body := batchBody(api.MaxBatchOperations)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeBatch(body, now, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*api.MaxBatchOperations)/b.Elapsed().Seconds(), "ops/s")
}
