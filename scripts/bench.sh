#!/usr/bin/env bash
# bench.sh runs the whole benchmark of issue "Performance" on this machine and
# prints its Markdown table: single-operation and batch ingest, aggregate
# query latency at 2,000,000 operations and the service's peak memory, on the
# embedded store and on a real InfluxDB 1.8.3, each beside its reference (a
# bare net/http handler, InfluxDB's own line-protocol writes, plain SQL over
# the raw rows). It takes about 5 to 8 minutes on a 2-core machine.
#
# Usage: scripts/bench.sh [omnimemory-load bench flags]
#   scripts/bench.sh --json bench.json          also write the results as JSON
#   scripts/bench.sh --ops 200000 --duration 5s a quicker run
#   scripts/bench.sh --stores sqlite            the embedded store only
#
# The table goes to stdout, progress bars and logs to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# influxd 1.8.3 for the InfluxDB rows (built once into .tools/bin).
scripts/provision.sh >&2

exec go run ./cmd/omnimemory-load bench "$@"
