package rollup

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// TestDocsQuoteTheFileRow: docs/influxdb.md quotes the size of a row of
// the cache of files per day as it is.
func TestDocsQuoteTheFileRow(t *testing.T) {
	b, err := os.ReadFile("../../../../docs/influxdb.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(b)), " ")
	if want := fmt.Sprintf("rows (twice an hourly cache), %d bytes each", unsafe.Sizeof(fileRow{})); !strings.Contains(doc, want) {
		t.Errorf("docs/influxdb.md does not say %q", want)
	}
}

// TestFileDaysDropsAReadDeliveredInto: a span whose read a delivery falls
// in while it runs is answered but not stored, so the next answer reads it
// again and sees the delivered point. InfluxDB cannot time a delivery
// inside a read, so the read here is a function that delivers while it
// runs.
func TestFileDaysDropsAReadDeliveredInto(t *testing.T) {
	day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	reads, deliver := 0, true
	var c *FileDays
	c = &FileDays{
		ttl: time.Hour, max: 100, now: func() time.Time { return day.Add(48 * time.Hour) },
		spans: map[fileSpan]*fileEntry{}, paths: map[string]string{}, reading: map[fileSpan]*fileRead{},
		span: func(context.Context, time.Time, time.Time) (time.Time, time.Time, bool, error) {
			return day, day.Add(time.Hour), true, nil
		},
		sum: func(_ context.Context, q tsdb.AggregateQuery, sums *tsdb.GroupSums) error {
			reads++
			if deliver {
				deliver = false
				c.Delivered([][]byte{fmt.Appendf(nil, "%s,tool_id=x f=1i %d\n", schema.Operation, day.Add(time.Minute).UnixNano())})
			}
			return nil
		},
	}
	end := day.Add(24*time.Hour - time.Microsecond)
	q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{tsdb.DimFilePath}, Filter: tsdb.OperationFilter{Start: &day, End: &end}, Limit: 10}
	for range 2 {
		if _, err := c.Aggregate(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 2 || c.Rows() != 1 {
		t.Errorf("%d reads of the day, %d rows cached; want 2 (the first dropped by the delivery), 1", reads, c.Rows())
	}
}
