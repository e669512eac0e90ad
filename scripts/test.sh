#!/usr/bin/env bash
# test.sh runs every test of omnimemory-metrics against the real parts:
# it provisions the pinned test tools (InfluxDB 1.8.3, Prometheus, promtool)
# into the git-ignored .tools/ folder (built from the Go module proxy, no
# root, cached after the first run), then vets and tests every package.
#
# Usage: scripts/test.sh [extra go test flags]
# Env:   OMNIMEMORY_TEST_RACE=0 skips the race detector (on by default).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

start=$SECONDS

# The repository holds two modules: the service (.) and the Go client
# (client/, a module of its own so that tool authors import nothing of the
# service's).
modules=(. client)
# The race detector instruments every package but modernc.org's C library
# and SQLite, machine-translated from C (SQLite's own mutexes order their
# threads, and none of this repository's code is in them): instrumented,
# they made the embedded store's tests up to 5 times as slow. The race
# detector still sees every access of this repository's code.
race=(-race -gcflags=modernc.org/sqlite/lib=-race=false -gcflags=modernc.org/libc/...=-race=false)
[[ "${OMNIMEMORY_TEST_RACE:-1}" == "0" ]] && race=()

# While the tools download and build, the modules' own dependencies download
# and every package and test compiles into the build cache (-exec true runs
# nothing), so that a first run spends the provisioning's network waits on
# compiling; the vet and test steps below then find it all built.
(for m in "${modules[@]}"; do
	(cd "$m" && go vet ./... && go test "${race[@]}" -count=1 -run '^$' -exec true ./... >/dev/null)
done) >/dev/null 2>&1 &
prebuild=$!

echo "== provisioning test tools (the packages compile meanwhile)"
scripts/provision.sh
# A failure here is reported again, in full, by the steps below.
wait "$prebuild" || true
echo "== provisioned and compiled in $((SECONDS - start))s"

export OMNIMEMORY_INFLUXD="$ROOT/.tools/bin/influxd"
export OMNIMEMORY_PROMTOOL="$ROOT/.tools/bin/promtool"
export OMNIMEMORY_PROMETHEUS="$ROOT/.tools/bin/prometheus"

echo "== gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))"
if [[ -n "$unformatted" ]]; then
	echo "gofmt would rewrite:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
for m in "${modules[@]}"; do (cd "$m" && go vet ./...); done

echo "== go test ${race[*]:0:1}"
# go test starts the packages in the order given, -p (the cores) at a time:
# the longest go first, so that the last ones to end are short ones.
slow=(./tsdb/influx ./cmd/omnimemory-metrics ./tsdb/sqlite ./handlers)
(go test "${race[@]}" -count=1 -timeout 30m "${slow[@]}" ./... "$@")
for m in "${modules[@]:1}"; do (cd "$m" && go test "${race[@]}" -count=1 -timeout 30m ./... "$@"); done

# Fuzz targets: each runs a bounded number of inputs on top of its committed
# seed corpus (handlers/testdata/fuzz); a crasher fails the run and is written
# there as a new seed. The bound is a count, not a duration: before Go 1.27 a
# duration can end a clean run with "context deadline exceeded"
# (go.dev/issue/75804), a race of the fuzzing coordinator, not of a target.
fuzztime="${OMNIMEMORY_FUZZTIME:-20000x}"
for target in FuzzDecodeOperation FuzzDecodeBatch FuzzDecodeBatchSameAsOneByOne FuzzScanAsEncodingJSON FuzzOperationFilter FuzzAggregateQuery FuzzHandlers FuzzOTLPMetrics; do
	echo "== fuzz $target for $fuzztime"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" ./handlers/
done

echo "== all tests passed in $((SECONDS - start))s"
