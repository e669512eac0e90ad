package influx

import (
	"errors"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures Open. Zero durations and sizes take the defaults below.
type Config struct {
	// URL is InfluxDB's base URL, e.g. http://localhost:8086. Required.
	URL string
	// Token is the API token; for InfluxDB 1.8 "user:password", or empty
	// without authentication. Never logged.
	Token string
	// Org is the organisation; empty for InfluxDB 1.8.
	Org string
	// Bucket is the bucket; for InfluxDB 1.8 "database/retention-policy".
	// Required.
	Bucket string

	// OutboxDir is the folder of the local durable outbox that holds what
	// InfluxDB has not yet taken. Required; one Store per folder.
	OutboxDir string
	// OutboxMaxBytes bounds the outbox; at the bound WriteOperations fails
	// with ErrBacklogFull. Default 1 GiB.
	OutboxMaxBytes int64
	// DeadLetterPath receives batches InfluxDB rejected as invalid (400,
	// 422), as line protocol preceded by a comment line. Default: the
	// outbox folder's path + ".rejected.lp".
	DeadLetterPath string

	// WriteTimeout bounds how long a write call waits for InfluxDB once its
	// batch is durable in the outbox; past it the call returns nil and the
	// drainer delivers later. Default 5 s.
	WriteTimeout time.Duration
	// RequestTimeout bounds one write request of the drainer. Default 10 s.
	RequestTimeout time.Duration
	// QueryTimeout bounds every query. Default 30 s.
	QueryTimeout time.Duration
	// DialTimeout bounds connecting to InfluxDB. Default 5 s.
	DialTimeout time.Duration

	// MaxBatchBytes bounds the body of one write request; larger outbox
	// records are split into several. Default 4 MiB.
	MaxBatchBytes int
	// RetryMin and RetryMax bound the drainer's exponential backoff
	// (Retry-After, when InfluxDB sends it, is honoured up to RetryMax).
	// Defaults 100 ms and 30 s.
	RetryMin, RetryMax time.Duration
	// SlotKeys bounds the table of recently used (series, microsecond)
	// keys that keeps point keys unique, about 45 bytes per key. Default
	// 65536.
	SlotKeys int

	// CacheTTL is how long the hourly rollup caches (internal/rollup, one
	// of operations and one of spend points) trust a closed hour they read,
	// the points of an edge minute (the current one included) and the first
	// point's time, before reading them again: writes of
	// other replicas sharing the database, or of any other writer, appear
	// in answers within it (this store's own writes appear at once).
	// Default 5 minutes; CacheNoExpiry (any negative value) trusts them
	// until this store's own writes drop them.
	CacheTTL time.Duration
	// CacheMaxRows bounds each of the two hourly rollup caches, not their
	// sum: the cache of operations holds at most this many rows of (hour,
	// tool_id, tool_name, operation_mode) totals, about 100 bytes each, and
	// the cache of spend points as many of (hour, tool_id, model) totals,
	// about 110 bytes each; an hour without points counts one row. Default
	// 262144 (a year of hours at 30 keys: about 25 MB for operations, 30
	// MB for spend at most); past it the least recently used hours are
	// dropped. Each cache also holds the points of the minutes at windows'
	// edges, at most a quarter of this many (150-200 bytes each: 10-13 MB
	// by default). A negative value turns both caches off: every
	// aggregate, of operations and of spend, reads raw points.
	CacheMaxRows int

	// ExportPageSize bounds the operations one query of ExportOperations
	// reads, and so the memory an export holds. Default
	// 5000.
	ExportPageSize int

	// Registerer receives the store's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// CacheNoExpiry, as Config.CacheTTL, keeps cached hours until this store's
// own writes drop them.
const CacheNoExpiry time.Duration = -1

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("influx: URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("influx: URL must be an http(s) URL with a host")
	}
	if c.Bucket == "" {
		return errors.New("influx: Bucket is required")
	}
	if c.OutboxDir == "" {
		return errors.New("influx: OutboxDir is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.WriteTimeout, 5*time.Second)
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.QueryTimeout, 30*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	def(&c.RetryMin, 100*time.Millisecond)
	def(&c.RetryMax, 30*time.Second)
	if c.OutboxMaxBytes <= 0 {
		c.OutboxMaxBytes = 1 << 30
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.SlotKeys <= 0 {
		c.SlotKeys = 1 << 16
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Minute
	}
	if c.CacheMaxRows == 0 {
		c.CacheMaxRows = 1 << 18
	}
	if c.ExportPageSize <= 0 {
		c.ExportPageSize = 5000
	}
	if c.DeadLetterPath == "" {
		c.DeadLetterPath = c.OutboxDir + ".rejected.lp"
	}
	return nil
}
