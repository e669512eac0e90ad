package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// Go's garbage collector by default runs when the heap has doubled since
// the last collection left it (GOGC=100), however much memory the machine
// has: under ingest, whose requests allocate some 14 KB an operation, that
// is a collection every few tens of milliseconds, and the collector and the
// allocations were a third of the service's instructions per single
// operation (docs/benchmarks.md). The service instead sets a soft memory limit
// (OMNIMEMORY_MEMORY_LIMIT) and lets the heap grow fourfold under it
// (GOGC=400): fewer collections while the heap is small, as many as the
// limit needs when it is not.

// gcPercent is GOGC under the service's memory limit.
const gcPercent = 400

// minGoMemory is the least memory limit the service sets for Go, whatever
// the store's own caches leave of OMNIMEMORY_MEMORY_LIMIT.
const minGoMemory = 32 << 20

// offHeapBytes is the memory the store of dbType holds outside Go's heap
// at most: the embedded store's page caches, which SQLite allocates itself.
func offHeapBytes(dbType string) int64 {
	if dbType == dbTypeSQLite {
		return sqlite.PageCacheBytes()
	}
	return 0
}

// gcSetting is what the service sets of Go's garbage collector: nothing
// when both are 0.
type gcSetting struct {
	Percent int   // GOGC
	Limit   int64 // GOMEMLIMIT, bytes
}

// gcSettings answers what cfg sets of the garbage collector: its memory
// limit less the store's off-heap caches (at least minGoMemory), and
// gcPercent under it; nothing when the limit is 0 or the environment
// (getenv) sets GOGC or GOMEMLIMIT, which Go has applied already.
func gcSettings(cfg config, getenv func(string) string) gcSetting {
	if cfg.MemoryLimit == 0 || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return gcSetting{}
	}
	return gcSetting{Percent: gcPercent, Limit: max(cfg.MemoryLimit-offHeapBytes(cfg.DBType), minGoMemory)}
}

// tuneGC applies gcSettings to this process and answers them, for the
// start-up log.
func tuneGC(cfg config, getenv func(string) string, logger *slog.Logger) gcSetting {
	s := gcSettings(cfg, getenv)
	if s == (gcSetting{}) {
		return s
	}
	if caches := offHeapBytes(cfg.DBType); s.Limit+caches > cfg.MemoryLimit {
		logger.Warn("OMNIMEMORY_MEMORY_LIMIT leaves Go less than its least beside the store's page caches; it gets that least",
			"memory_limit_bytes", cfg.MemoryLimit, "store_caches_bytes", caches, "go_memory_limit_bytes", s.Limit)
	}
	debug.SetMemoryLimit(s.Limit)
	debug.SetGCPercent(s.Percent)
	return s
}

// logValue is how the start-up log shows s: what Go's collector was set to,
// or that it was left to Go.
func (s gcSetting) logValue() slog.Value {
	if s == (gcSetting{}) {
		return slog.StringValue("left to Go")
	}
	return slog.GroupValue(slog.Int("gogc", s.Percent), slog.Int64("memory_limit_bytes", s.Limit))
}
