package main

//go:generate go test -run ^TestConfigurationDoc$ -update .

import (
	"fmt"
	"slices"
	"strings"
)

// configDocPath is where configurationDoc's output is committed, relative to
// the module root. TestConfigurationDoc fails when the file differs from
// what configurationDoc writes; `go test ./cmd/omnimemory-metrics -run
// TestConfigurationDoc -update` rewrites it.
const configDocPath = "docs/configuration.md"

// settingNotes add to a setting's usage line what a table cell cannot hold.
// They are keyed by environment variable; a key that names no setting fails
// TestConfigurationDoc, so that a note cannot outlive its setting.
var settingNotes = map[string]string{
	"OMNIMEMORY_DB_TYPE": "`sqlite` needs nothing else: the store is one file. " +
		"`influxdb` takes the `INFLUXDB_*` settings and the outbox settings below; see [InfluxDB](influxdb.md).",
	"SQLITE_DB_PATH": "A leading `~` is the user's home folder. `report` never creates the file: a missing file is an error there.",
	"INFLUXDB_URL":   "InfluxDB 2.x, Cloud, or 1.8+ through its v2 compatibility API (`[http] flux-enabled = true`).",
	"DATABASE_URL": "PostgreSQL only, as the specification writes it: `postgresql://user:pass@localhost:5432/omnimemory`. " +
		"The schema is created and migrated at start-up under an advisory lock, so replicas may start together. " +
		"A secret: never printed, not even in the error naming it; the log names host, port, database and user only.",
	"INFLUXDB_TOKEN": "An API token with read and write access to the bucket; on 1.8 `user:password`, or empty without authentication. " +
		"A secret: never printed, not even in the error naming it.",
	"INFLUXDB_BUCKET": "On 1.8 `database/retention-policy`, for example `omnimemory/autogen` (create the database first).",
	"OMNIMEMORY_OUTBOX_DIR": "InfluxDB only. Every batch is appended here (fsynced, checksummed segments) before it is sent; " +
		"the idempotency ledger lives in it, and points InfluxDB refuses as invalid go to a dead-letter file beside it. " +
		"Give each replica its own folder on local disk.",
	"OMNIMEMORY_OUTBOX_MAX_BYTES": "InfluxDB only. Past the bound, POSTs answer 503 with `Retry-After` and store nothing.",
	"OMNIMEMORY_WRITE_TIMEOUT": "On InfluxDB, when the deadline passes the POST answers 200 as soon as its batch is in the outbox, " +
		"and the outbox delivers it once InfluxDB answers. On PostgreSQL a POST waits this long at most, queueing " +
		"included, then answers 503 with `Retry-After` (a stopped or stalled server). On the embedded store and " +
		"InfluxDB a POST waits twice this, at least 30 s, before it fails.",
	"OMNIMEMORY_QUERY_TIMEOUT": "InfluxDB and PostgreSQL (on PostgreSQL each page of an export, and each session lookup or update, too). The embedded store's reads are local and unbounded.",
	"OMNIMEMORY_INFLUX_CACHE_TTL": "InfluxDB only. A single replica may use `0`; with several replicas it bounds how late one sees " +
		"another's writes in aggregates.",
	"OMNIMEMORY_RETENTION": "The embedded store and PostgreSQL delete raw rows older than this in the background, in small batches, " +
		"and keep the hourly and daily rollups, so breakdowns, trends and savings over any range still answer; " +
		"the list and the export (a session's too) show only the operations that remain, while a session's totals still count its expired ones. " +
		"On InfluxDB it is refused: set the bucket's retention instead. See [Operations](operations.md#retention).",
	"OMNIMEMORY_COST_PER_1K_TOKENS": "Also exported as the gauge `omnimemory_cost_per_1k_tokens_usd`, which the recording rules and dashboards price with.",
	"OMNIMEMORY_QUEUE_SIZE":         "Past the bound, POSTs answer 503 with `Retry-After` (`omnimemory_ingest_shed_operations_total{reason=\"queue_full\"}`).",
	"OMNIMEMORY_API_TOKEN": "Compared in constant time; a missing or wrong token gets 401 and changes nothing. " +
		"CORS preflight, `/health`, `/ready`, `/openapi.json`, the page at `/` and its assets under `/ui/` stay public " +
		"(they hold no data); `/metrics` too with `OMNIMEMORY_METRICS_PUBLIC=true`. A secret: never printed.",
	"OMNIMEMORY_MAX_TOOL_ID_LABELS": "Stored operations keep their real `tool_id`; only the Prometheus label is folded into `other`.",
	"OMNIMEMORY_LOG_LEVEL":          "Logs go to standard error as `log/slog` text.",
}

// configurationDoc writes docs/configuration.md from settings(): the rules
// every setting follows, a table of them, the notes above and the
// variables read outside the table (tracing).
func configurationDoc() []byte {
	var b strings.Builder
	b.WriteString(`<!-- Generated from settings() in cmd/omnimemory-metrics/config.go: do not edit.
     Regenerate: go test ./cmd/omnimemory-metrics -run TestConfigurationDoc -update -->

# Configuration

Every setting of ` + "`omnimemory-metrics`" + ` is an environment variable and a
command-line flag of the same meaning.

- **Precedence**: a flag wins over its variable, which wins over the default.
  An empty variable counts as unset: the default applies.
- **Checked before anything starts**: every setting is read once and checked
  before any connection opens. A bad one stops start-up with one line naming
  it (` + "`omnimemory-metrics: invalid OMNIMEMORY_QUEUE_SIZE=\"0\": must be a whole number of at least 1`" + `)
  and exit code 2.
- **Secrets are never printed**: the error for a bad secret names the
  setting, never its value, and ` + "`--help`" + ` shows no value from the environment.
- **Subcommands** take the settings they need with the same variables and
  flags: ` + "`import`" + ` the store settings, ` + "`report`" + ` the store settings it reads with
  and the price (the column *used by* below).

` + "`omnimemory-metrics --help`" + ` lists the flags of serving;
` + "`omnimemory-metrics help import`" + ` and ` + "`omnimemory-metrics help report`" + ` the flags of each
subcommand.

## Settings

| variable | flag | default | used by | meaning |
|---|---|---|---|---|
`)
	for _, s := range settings() {
		def := "empty"
		if s.def != "" {
			def = "`" + s.def + "`"
		}
		usage := s.usage
		if s.secret {
			usage += " (secret)"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | %s | %s | %s |\n", s.env, s.flag, def, usedBy(s.flag), cell(usage))
	}
	b.WriteString("\n## Notes\n\n")
	for _, s := range settings() {
		if n, ok := settingNotes[s.env]; ok {
			fmt.Fprintf(&b, "- `%s`: %s\n", s.env, n)
		}
	}
	b.WriteString(`
## Tracing

Tracing is configured by OpenTelemetry's standard variables, not by the table
above. When ` + "`OTEL_EXPORTER_OTLP_ENDPOINT`" + ` (or
` + "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`" + `) is set, the spans of every request
and store call are exported by OTLP over HTTP (protobuf; collectors take it on
port 4318), and the other ` + "`OTEL_EXPORTER_OTLP_*`" + ` variables apply. Unset,
spans are recorded nowhere and cost nothing. See
[Operations](operations.md#tracing).
`)
	return []byte(b.String())
}

// usedBy names the commands that take the setting of flag name.
func usedBy(name string) string {
	used := []string{"serve"}
	if slices.Contains(storeSettings, name) {
		used = append(used, "`import`")
	}
	if slices.Contains(reportSettings, name) {
		used = append(used, "`report`")
	}
	return strings.Join(used, ", ")
}

// cell makes plain text safe in a Markdown table cell: no column breaks,
// HTML tags or emphasis.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`).Replace(s)
}
