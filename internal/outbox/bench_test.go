package outbox

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures Append of 10 KiB records, one or 64 per call,
// each call written and fsynced before it returns.
func BenchmarkAppend(b *testing.B) {
	const recordSize = 10 << 10
	for _, group := range []int{1, 64} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			o := mustOpen(b, Options{Dir: b.TempDir(), MaxBytes: 1 << 30})
			records := make([][]byte, group)
			for i := range records {
				records[i] = rec(i, recordSize)
			}
			var seq uint64
			b.SetBytes(int64(group * recordSize))
			b.ResetTimer()
			for range b.N {
				if err := o.Append(records...); err != nil {
					b.Fatal(err)
				}
				seq += uint64(group)
				if o.Bytes() > 64<<20 { // deliver, so segments are deleted
					b.StopTimer()
					mustAck(b, o, seq)
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*group)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkAppendParallel measures single-record Appends from many
// goroutines, which the flusher groups into shared fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	const recordSize = 10 << 10
	o := mustOpen(b, Options{Dir: b.TempDir(), MaxBytes: 1 << 30})
	record := rec(0, recordSize)
	var n atomic.Int64
	b.SetBytes(recordSize)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := o.Append(record); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "records/s")
}
