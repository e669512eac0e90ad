package main

import (
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

func TestParseMemoryTakesGOMEMLIMITsSyntax(t *testing.T) {
	for v, want := range map[string]int64{
		"0": 0, "0B": 0, "1048576": 1 << 20, "512B": 512, "64KiB": 64 << 10, "112MiB": 112 << 20,
		"1GiB": 1 << 30, "2TiB": 2 << 40, " 96MiB ": 96 << 20,
	} {
		got, err := parseMemory(v)
		if err != nil || got != want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"", "-1", "1.5GiB", "112MB", "112mib", "MiB", "1 GiB x", "9999999TiB", "off"} {
		if got, err := parseMemory(v); err == nil {
			t.Errorf("parseMemory(%q) = %d, want an error", v, got)
		}
	}
}

func TestGCSettingsLeaveRoomForTheStoreAndYieldToGoEnvironment(t *testing.T) {
	const limit = 112 << 20
	caches := sqlite.PageCacheBytes()
	for _, tc := range []struct {
		name string
		cfg  config
		env  map[string]string
		want gcSetting
	}{
		{"embedded store: its page caches are outside Go's heap", config{DBType: dbTypeSQLite, MemoryLimit: limit}, nil,
			gcSetting{Percent: gcPercent, Limit: limit - caches}},
		{"PostgreSQL", config{DBType: dbTypePostgres, MemoryLimit: limit}, nil, gcSetting{Percent: gcPercent, Limit: limit}},
		{"InfluxDB", config{DBType: dbTypeInflux, MemoryLimit: limit}, nil, gcSetting{Percent: gcPercent, Limit: limit}},
		{"a limit below the caches leaves Go its least", config{DBType: dbTypeSQLite, MemoryLimit: caches}, nil,
			gcSetting{Percent: gcPercent, Limit: minGoMemory}},
		{"0: Go's defaults", config{DBType: dbTypePostgres}, nil, gcSetting{}},
		{"GOGC set", config{DBType: dbTypePostgres, MemoryLimit: limit}, map[string]string{"GOGC": "150"}, gcSetting{}},
		{"GOMEMLIMIT set", config{DBType: dbTypePostgres, MemoryLimit: limit}, map[string]string{"GOMEMLIMIT": "1GiB"}, gcSetting{}},
	} {
		if got := gcSettings(tc.cfg, env(tc.env)); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestMemoryLimitDefaultAndBadValue(t *testing.T) {
	c, err := loadConfig(nil, env(nil), io.Discard)
	if err != nil || c.MemoryLimit != 112<<20 {
		t.Errorf("default memory limit %d, %v; want 112 MiB", c.MemoryLimit, err)
	}
	_, err = loadConfig([]string{"--memory-limit", "112MB"}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--memory-limit") || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("bad memory limit: %v", err)
	}
}

// goGC reads the garbage collector's settings from a service's /metrics
// (the Go collector's go_gc_gogc_percent and go_gc_gomemlimit_bytes).
func goGC(t *testing.T, base string) (percent, limit float64) {
	t.Helper()
	samples := scrape(t, base)
	percent, ok1 := samples["go_gc_gogc_percent{}"]
	limit, ok2 := samples["go_gc_gomemlimit_bytes{}"]
	if !ok1 || !ok2 {
		t.Fatalf("/metrics lacks go_gc_gogc_percent or go_gc_gomemlimit_bytes")
	}
	return percent, limit
}

func TestServiceSetsTheGarbageCollectorUnlessGoEnvironmentDoes(t *testing.T) {
	dir := t.TempDir()
	// GOMAXPROCS=2: four readers, whose caches the limit leaves out.
	c := startChild(t, "SQLITE_DB_PATH="+filepath.Join(dir, "a.db"), "GOMAXPROCS=2", "GOGC=", "GOMEMLIMIT=", "OMNIMEMORY_MEMORY_LIMIT=")
	percent, limit := goGC(t, c.base)
	if want := float64(112<<20 - (16+4*8+1)<<20); percent != gcPercent || limit != want {
		t.Errorf("default: GOGC %v, memory limit %v; want %d, %v\n%s", percent, limit, gcPercent, want, c.log.String())
	}
	if !strings.Contains(c.log.String(), "gc.gogc=400 gc.memory_limit_bytes=66060288") {
		t.Errorf("the start-up line does not say what was set: %s", c.log.String())
	}
	c = startChild(t, "SQLITE_DB_PATH="+filepath.Join(dir, "b.db"), "GOMAXPROCS=2", "GOGC=150", "GOMEMLIMIT=", "OMNIMEMORY_MEMORY_LIMIT=")
	if percent, limit := goGC(t, c.base); percent != 150 || limit != math.MaxInt64 {
		t.Errorf("GOGC=150: GOGC %v, memory limit %v; want Go's: 150, no limit", percent, limit)
	}
	c = startChild(t, "SQLITE_DB_PATH="+filepath.Join(dir, "c.db"), "GOGC=", "GOMEMLIMIT=", "OMNIMEMORY_MEMORY_LIMIT=0")
	if percent, limit := goGC(t, c.base); percent != 100 || limit != math.MaxInt64 {
		t.Errorf("OMNIMEMORY_MEMORY_LIMIT=0: GOGC %v, memory limit %v; want Go's defaults", percent, limit)
	}
}
