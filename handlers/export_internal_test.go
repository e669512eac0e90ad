package handlers

import (
	"context"
	"encoding/json"
	"math"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// ExportOperations hands out nothing: the recording store keeps no
// operations.
func (s *recordingStore) ExportOperations(context.Context, tsdb.OperationFilter, func(*tsdb.Operation) error) error {
	return nil
}

// TestCSVNumbersReadAsTheJSONOnes: response_time_ms in a CSV export is the
// text encoding/json gives the same number in the query endpoint's answer.
func TestCSVNumbersReadAsTheJSONOnes(t *testing.T) {
	for _, f := range []float64{0, 1, 0.5, 123.45, 12.375, 1e-7, 1.5e-9, 1e-6, 999999.999, 1e20, 1e21, 1.2345e22,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 1234.5678, 0.1 + 0.2, 3e-300} {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONFloat(nil, f); string(got) != string(want) {
			t.Errorf("%v: CSV %s, JSON %s", f, got, want)
		}
	}
}
