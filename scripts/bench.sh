#!/usr/bin/env bash
# bench.sh runs the whole benchmark of issue "Performance" on this machine and
# prints its Markdown table: single-operation and batch ingest, aggregate
# query latency at 2,000,000 operations and the service's peak memory, on the
# embedded store, on a real InfluxDB 1.8.3 and on a real PostgreSQL 15
# (durable settings: fsync, full-page writes, synchronous commit), each beside
# its same-run reference (a bare net/http handler; InfluxDB's own
# line-protocol writes; PostgreSQL's COPY into a plain table; plain SQL over
# the raw rows of the embedded store and of PostgreSQL), and the memory of
# influxd and of the PostgreSQL server for scale. It takes about 6 to 10
# minutes on a 2-core machine.
#
# Usage: scripts/bench.sh [omnimemory-load bench flags]
#   scripts/bench.sh --json bench.json          also write the results as JSON
#   scripts/bench.sh --ops 200000 --duration 5s a quicker run
#   scripts/bench.sh --stores sqlite            the embedded store only
#   BENCH_DOC= scripts/bench.sh --stores postgresql
#                                               PostgreSQL only, a trial run
#                                               that leaves the published
#                                               table alone
#
# The table goes to stdout, progress bars and logs to stderr. After a
# successful run the table also replaces the results in docs/benchmarks.md,
# between its "bench:begin" and "bench:end" markers; the text around them is
# kept. BENCH_DOC=path writes another file; BENCH_DOC= writes none (for quick
# runs whose figures should not replace the published ones).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

doc="${BENCH_DOC-docs/benchmarks.md}"

# influxd 1.8.3 for the InfluxDB rows (built once into .tools/bin), Debian's
# PostgreSQL 15 server for the PostgreSQL rows.
scripts/provision.sh >&2

out="$(mktemp)"
trap 'rm -f "$out" "$out.doc"' EXIT
go run ./cmd/omnimemory-load bench "$@" | tee "$out"

# Nothing to write after --help, or when no table came out.
if [[ -z "$doc" ]] || ! grep -q '^### omnimemory-metrics benchmark' "$out"; then
	exit 0
fi
if ! grep -q '^<!-- bench:begin' "$doc" || ! grep -q '^<!-- bench:end' "$doc"; then
	echo "bench.sh: $doc has no bench:begin/bench:end markers; not written" >&2
	exit 1
fi
{
	sed '/^<!-- bench:begin/q' "$doc"
	echo "<!-- Written by scripts/bench.sh on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$([[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo ' (uncommitted changes)'); do not edit by hand. -->"
	echo
	cat "$out"
	echo
	sed -n '/^<!-- bench:end/,$p' "$doc"
} >"$out.doc"
cat "$out.doc" >"$doc"
echo "bench.sh: wrote the results into $doc" >&2
