#!/usr/bin/env bash
# provision.sh installs the pinned test tools (influxd, prometheus, promtool)
# into <repo>/.tools/bin, only when missing or of another version. Each tool has
# a stamp file (.tools/stamps/<tool>) holding the version it was built from,
# since `go install` leaves no usable version string in these binaries.
#
# Builds go to a temporary GOBIN and are moved into place only when complete,
# so an interrupted run never leaves a half binary behind.
#
# Usage: scripts/provision.sh            (from any directory)
# Env:   INFLUXD_VERSION, PROMETHEUS_VERSION override the pins.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
STAMPS="$TOOLS/stamps"

INFLUXD_VERSION="${INFLUXD_VERSION:-v1.8.3}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"

mkdir -p "$BIN" "$STAMPS"

# Temporary build folders live under $TOOLS (same filesystem as $BIN, so the
# final move is a rename) and are removed on any exit, interrupted or not.
CLEANUP=()
cleanup() { if ((${#CLEANUP[@]})); then rm -rf "${CLEANUP[@]}"; fi; }
trap cleanup EXIT

# installed NAME VERSION: true when $BIN/NAME exists and its stamp says VERSION.
installed() {
	[[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}

# install VERSION PKG NAME...: go install PKG@VERSION into a temporary GOBIN,
# then move every NAME into $BIN and stamp it.
install() {
	local version="$1" pkg="$2"
	shift 2
	local tmp
	tmp="$(mktemp -d "$TOOLS/.install.XXXXXX")"
	CLEANUP+=("$tmp")
	(cd "$tmp" && GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install "$pkg@$version")
	local name
	for name in "$@"; do
		[[ -x "$tmp/$name" ]] || { echo "provision: $pkg@$version built no $name" >&2; return 1; }
		rm -f "$STAMPS/$name"
		mv -f "$tmp/$name" "$BIN/$name" # same filesystem: an atomic rename
		printf '%s\n' "$version" >"$STAMPS/$name.tmp"
		mv -f "$STAMPS/$name.tmp" "$STAMPS/$name"
	done
	rm -rf "$tmp"
}

# tool NAME VERSION PKG: install NAME unless present at VERSION; one line out.
tool() {
	local name="$1" version="$2" pkg="$3"
	if installed "$name" "$version"; then
		echo "$name $version: present ($BIN/$name)"
		return
	fi
	local start=$SECONDS
	install "$version" "$pkg" "$name"
	echo "$name $version: installed in $((SECONDS - start))s ($BIN/$name)"
}

command -v go >/dev/null || { echo "provision: go is not on PATH" >&2; exit 1; }

tool influxd "$INFLUXD_VERSION" github.com/influxdata/influxdb/cmd/influxd
tool promtool "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool
tool prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/prometheus
