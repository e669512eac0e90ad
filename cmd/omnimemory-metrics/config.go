package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is every setting of the service, read once and validated before
// any connection opens.
type config struct {
	Listen         string
	DBType         string
	SQLitePath     string
	DatabaseURL    string
	InfluxURL      string
	InfluxToken    string
	InfluxOrg      string
	InfluxBucket   string
	OutboxDir      string
	OutboxMaxBytes int64
	WriteTimeout   time.Duration
	QueryTimeout   time.Duration
	CacheTTL       time.Duration
	CostPer1K      float64
	CORSOrigins    []string
	LogLevel       slog.Level
	QueueSize      int
	// StreamMaxSubscribers bounds the live stream's subscribers.
	StreamMaxSubscribers int
	APIToken             string
	MetricsPublic        bool
	MaxToolIDs           int
	Retention            time.Duration
	// MemoryLimit is the memory the service aims to stay within, in
	// bytes (0: Go's garbage collector as Go sets it): see gcSettings.
	MemoryLimit int64
}

// The stores OMNIMEMORY_DB_TYPE names.
const (
	dbTypeSQLite   = "sqlite"
	dbTypePostgres = "postgresql"
	dbTypeInflux   = "influxdb"
)

var dbTypes = []string{dbTypeSQLite, dbTypePostgres, dbTypeInflux}

// setting is one configuration value: an environment variable, the flag of
// the same meaning, its default, and how to check and store it.
type setting struct {
	env, flag, def, usage string
	secret                bool
	apply                 func(c *config, v string) error
}

// atLeastOne applies a setting that is a whole number of at least 1.
func atLeastOne(set func(c *config, n int)) func(c *config, v string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errors.New("must be a whole number of at least 1")
		}
		set(c, n)
		return nil
	}
}

func settings() []setting {
	return []setting{
		{env: "OMNIMEMORY_LISTEN", flag: "listen", def: ":8003", usage: "address to serve on", apply: func(c *config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("must be host:port or :port")
			}
			c.Listen = v
			return nil
		}},
		{env: "OMNIMEMORY_DB_TYPE", flag: "db-type", def: "sqlite", usage: "store: sqlite (embedded), postgresql or influxdb", apply: func(c *config, v string) error {
			if !slices.Contains(dbTypes, v) {
				return errors.New("must be one of " + strings.Join(dbTypes, ", "))
			}
			c.DBType = v
			return nil
		}},
		{env: "SQLITE_DB_PATH", flag: "sqlite-db-path", def: "~/.omnimemory/metrics.db", usage: "the embedded store's file (folder created if missing)", apply: func(c *config, v string) error {
			p, err := expandHome(v)
			if err != nil {
				return err
			}
			c.SQLitePath = p
			return nil
		}},
		{env: "DATABASE_URL", flag: "database-url", usage: "PostgreSQL connection URL, postgresql://user:password@host:5432/omnimemory (postgres:// too); required with OMNIMEMORY_DB_TYPE=postgresql", secret: true, apply: func(c *config, v string) error {
			if v == "" {
				if c.DBType == dbTypePostgres {
					return errors.New("must be set when OMNIMEMORY_DB_TYPE=postgresql")
				}
				return nil
			}
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "postgresql" && u.Scheme != "postgres") {
				return errors.New("must be a postgresql:// or postgres:// URL")
			}
			c.DatabaseURL = v
			return nil
		}},
		{env: "INFLUXDB_URL", flag: "influxdb-url", def: "http://localhost:8086", usage: "InfluxDB 2.x, Cloud, or 1.8+ URL", apply: func(c *config, v string) error {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("must be an http:// or https:// URL")
			}
			c.InfluxURL = strings.TrimRight(v, "/")
			return nil
		}},
		{env: "INFLUXDB_TOKEN", flag: "influxdb-token", usage: "InfluxDB API token (1.8: user:password, or empty)", secret: true, apply: func(c *config, v string) error {
			c.InfluxToken = v
			return nil
		}},
		{env: "INFLUXDB_ORG", flag: "influxdb-org", usage: "InfluxDB organisation (1.8: empty)", apply: func(c *config, v string) error {
			c.InfluxOrg = v
			return nil
		}},
		{env: "INFLUXDB_BUCKET", flag: "influxdb-bucket", def: "omnimemory", usage: "InfluxDB bucket (1.8: database/retention-policy)", apply: func(c *config, v string) error {
			if strings.TrimSpace(v) == "" {
				return errors.New("must not be empty")
			}
			c.InfluxBucket = v
			return nil
		}},
		{env: "OMNIMEMORY_OUTBOX_DIR", flag: "outbox-dir", def: "~/.omnimemory/outbox", usage: "folder of the durable outbox of writes InfluxDB has not yet taken", apply: func(c *config, v string) error {
			p, err := expandHome(v)
			if err != nil {
				return err
			}
			c.OutboxDir = p
			return nil
		}},
		{env: "OMNIMEMORY_OUTBOX_MAX_BYTES", flag: "outbox-max-bytes", def: "1073741824", usage: "bound of the outbox on disk; past it POSTs answer 503", apply: func(c *config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1<<20 {
				return errors.New("must be a whole number of bytes, at least 1048576")
			}
			c.OutboxMaxBytes = n
			return nil
		}},
		{env: "OMNIMEMORY_WRITE_TIMEOUT", flag: "write-timeout", def: "5s", usage: "longest a POST waits for the store before its write is kept in the outbox (InfluxDB) or answered 503 (PostgreSQL)", apply: func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("must be a positive duration such as 5s")
			}
			c.WriteTimeout = d
			return nil
		}},
		{env: "OMNIMEMORY_QUERY_TIMEOUT", flag: "query-timeout", def: "30s", usage: "longest one InfluxDB or PostgreSQL query may take before the request answers 503", apply: func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("must be a positive duration such as 30s")
			}
			c.QueryTimeout = d
			return nil
		}},
		{env: "OMNIMEMORY_INFLUX_CACHE_TTL", flag: "influx-cache-ttl", def: "5m", usage: "how long cached InfluxDB aggregates (hourly totals, the points of edge minutes, the totals per file and per session of closed days, hours and minutes) are trusted before they are re-read (those in use are renewed in the background from half of it; a closed hour, day or minute due is read again only when InfluxDB's count of its points changed; writes through this replica refresh them at once; 0: never re-read, for a single replica)", apply: func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errors.New("must be a duration such as 5m, or 0")
			}
			c.CacheTTL = d
			return nil
		}},
		{env: "OMNIMEMORY_RETENTION", flag: "retention", def: "0", usage: "how long raw operations and spend points are kept, a duration such as 720h or a number of days such as 90d (0: for good); their hourly and daily rollups are kept for good, so every aggregate still answers", apply: func(c *config, v string) error {
			d, err := parseRetention(v)
			if err != nil {
				return err
			}
			if d > 0 && c.DBType == dbTypeInflux {
				return errors.New("is not applied on InfluxDB, whose bucket expires points by its own retention: set that instead (see docs/influxdb.md) and leave this unset")
			}
			c.Retention = d
			return nil
		}},
		{env: "OMNIMEMORY_COST_PER_1K_TOKENS", flag: "cost-per-1k-tokens", def: "0.015", usage: "USD per 1,000 tokens for every cost figure", apply: func(c *config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return errors.New("must be a non-negative number")
			}
			c.CostPer1K = f
			return nil
		}},
		{env: "OMNIMEMORY_CORS_ORIGINS", flag: "cors-origins", def: "*", usage: "comma-separated origins allowed to call from a browser (* for any)", apply: func(c *config, v string) error {
			c.CORSOrigins = nil
			for _, o := range strings.Split(v, ",") {
				o = strings.TrimSpace(o)
				if o == "" {
					continue
				}
				if o != "*" {
					if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" {
						return fmt.Errorf("origin %q must be * or scheme://host[:port]", o)
					}
				}
				c.CORSOrigins = append(c.CORSOrigins, o)
			}
			return nil
		}},
		{env: "OMNIMEMORY_QUEUE_SIZE", flag: "queue-size", def: "4096", usage: "requests that may wait for the writer; past it POSTs answer 503", apply: atLeastOne(func(c *config, n int) { c.QueueSize = n })},
		{env: "OMNIMEMORY_STREAM_MAX_SUBSCRIBERS", flag: "stream-max-subscribers", def: "1000", usage: "subscribers of the live stream of operations (/stream/operations, /ws/operations) at once; past it they answer 503", apply: atLeastOne(func(c *config, n int) { c.StreamMaxSubscribers = n })},
		{env: "OMNIMEMORY_API_TOKEN", flag: "api-token", usage: "when set, required as Authorization: Bearer <token> on every endpoint but /health, /ready, /openapi.json and the page at / (and /ui/); the live stream's endpoints take it as ?access_token= too", secret: true, apply: func(c *config, v string) error {
			if strings.ContainsAny(v, " \t\r\n") {
				return errors.New("must not contain white space")
			}
			c.APIToken = v
			return nil
		}},
		{env: "OMNIMEMORY_METRICS_PUBLIC", flag: "metrics-public", def: "false", usage: "serve /metrics without the API token", apply: func(c *config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("must be true or false")
			}
			c.MetricsPublic = b
			return nil
		}},
		{env: "OMNIMEMORY_MEMORY_LIMIT", flag: "memory-limit", def: "112MiB", usage: "memory the service aims to stay within, as GOMEMLIMIT is written (112MiB, 1GiB, or bytes): Go's soft memory limit is set to it less the embedded store's page caches (49 MiB on up to four cores, 8 MiB more per core past four), at least 32 MiB, and under that limit the garbage collector runs once the heap has grown fourfold (GOGC=400) rather than doubled, which costs ingest less CPU; the program's code, some 20 MB, comes on top; GOGC or GOMEMLIMIT in the environment, when set, leave the collector to them; 0: Go's defaults", apply: func(c *config, v string) error {
			n, err := parseMemory(v)
			c.MemoryLimit = n
			return err
		}},
		{env: "OMNIMEMORY_MAX_TOOL_ID_LABELS", flag: "max-tool-id-labels", def: "100", usage: "distinct tool_id values that become Prometheus labels; the rest count as tool_id=\"other\"", apply: atLeastOne(func(c *config, n int) { c.MaxToolIDs = n })},
		{env: "OMNIMEMORY_LOG_LEVEL", flag: "log-level", def: "info", usage: "debug, info, warn or error", apply: func(c *config, v string) error {
			return c.LogLevel.UnmarshalText([]byte(v))
		}},
	}
}

// loadConfig reads args (without the program name) and the environment
// (getenv): a flag wins over its variable, which wins over the default. The
// error names the setting and never echoes a secret.
func loadConfig(args []string, getenv func(string) string, usageOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("omnimemory-metrics", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	resolve := settingFlags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return resolve()
}

// settingFlags defines on fs the flag of each setting named in only (of
// every setting when only is empty), and answers the function that reads
// those settings once fs is parsed; settings not named keep their zero
// value. Subcommands use it to take the settings they share with serving.
func settingFlags(fs *flag.FlagSet, getenv func(string) string, only ...string) func() (config, error) {
	var all []setting
	for _, s := range settings() {
		if len(only) == 0 || slices.Contains(only, s.flag) {
			all = append(all, s)
		}
	}
	values := make([]*string, len(all))
	for i, s := range all {
		values[i] = fs.String(s.flag, "", fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def))
	}
	return func() (config, error) {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		var c config
		for i, s := range all {
			v, source := s.def, ""
			if e, ok := lookup(getenv, s.env); ok {
				v, source = e, s.env
			}
			if set[s.flag] {
				v, source = *values[i], "--"+s.flag
			}
			if err := s.apply(&c, v); err != nil {
				if source == "" {
					source = s.env
				}
				if s.secret {
					return config{}, fmt.Errorf("invalid %s: %v", source, err)
				}
				return config{}, fmt.Errorf("invalid %s=%q: %v", source, v, err)
			}
		}
		return c, nil
	}
}

// lookup treats an empty variable as unset: the default applies (for the
// InfluxDB token and org the default is empty anyway).
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	if v == "" {
		return "", false
	}
	return v, true
}

// memoryUnits are the suffixes of a memory size, as GOMEMLIMIT takes them.
var memoryUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// parseMemory reads a memory size as GOMEMLIMIT is written: a whole number
// of bytes, or of KiB, MiB, GiB or TiB with that suffix.
func parseMemory(v string) (int64, error) {
	bad := errors.New("must be a size such as 112MiB or 1GiB (KiB, MiB, GiB, TiB, B, or bytes without a unit), or 0")
	num, shift := strings.TrimSpace(v), uint(0)
	for _, u := range memoryUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, bad
	}
	return n << shift, nil
}

// minRetention is the shortest retention: raw rows expire by whole hours.
const minRetention = time.Hour

// parseRetention reads a retention: a Go duration ("720h") or whole days
// ("90d"); 0 keeps everything.
func parseRetention(v string) (time.Duration, error) {
	bad := errors.New("must be a duration such as 720h or a number of days such as 90d, at least 1h, or 0 to keep everything")
	v = strings.TrimSpace(v)
	var d time.Duration
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > int64(math.MaxInt64/(24*time.Hour)) {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, bad
		}
	}
	if d < 0 || (d > 0 && d < minRetention) {
		return 0, bad
	}
	return d, nil
}

// expandHome replaces a leading ~ with the user's home folder.
func expandHome(p string) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", errors.New("must not be empty")
	}
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the home folder for %q: %v", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}
