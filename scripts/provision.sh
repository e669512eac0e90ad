#!/usr/bin/env bash
# provision.sh installs the pinned test tools (influxd, prometheus, promtool)
# into <repo>/.tools/bin, only when missing or of another version, and
# Debian's chromium (/usr/bin/chromium, for the browser test of the built-in
# page) and PostgreSQL 15 server (for the PostgreSQL store's tests) when they
# are missing. Each tool has
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

# install VERSION FLAGS PKGS NAME...: go install every package of PKGS
# (space-separated) at VERSION in one command (built with FLAGS, e.g.
# -ldflags=... or -tags=...) into a temporary GOBIN, then move every NAME
# into $BIN and stamp it with VERSION and FLAGS.
install() {
	local version="$1" ldflags="$2" pkgs="$3"
	shift 3
	local tmp
	tmp="$(mktemp -d "$TOOLS/.install.XXXXXX")"
	CLEANUP+=("$tmp")
	local flags=() args=() pkg
	[[ -n "$ldflags" ]] && flags=("$ldflags")
	for pkg in $pkgs; do args+=("$pkg@$version"); done
	(cd "$tmp" && GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install "${flags[@]}" "${args[@]}")
	local name
	for name in "$@"; do
		[[ -x "$tmp/$name" ]] || { echo "provision: $pkgs@$version built no $name" >&2; return 1; }
		rm -f "$STAMPS/$name"
		mv -f "$tmp/$name" "$BIN/$name" # same filesystem: an atomic rename
		printf '%s\n' "$(stamp "$version" "$ldflags")" >"$STAMPS/$name.tmp"
		mv -f "$STAMPS/$name.tmp" "$STAMPS/$name"
	done
	rm -rf "$tmp"
}

# stamp VERSION LDFLAGS: what a stamp file holds.
stamp() { if [[ -n "$2" ]]; then printf '%s %s' "$1" "$2"; else printf '%s' "$1"; fi; }

# tool NAMES VERSION PKGS [LDFLAGS]: install the commands NAMES built from
# the packages PKGS (both space-separated; one go install, so that the
# dependencies they share compile once) unless every one is present at
# VERSION (and LDFLAGS); one line out per command.
tool() {
	local names="$1" version="$2" pkgs="$3" ldflags="${4:-}"
	local name missing=0
	for name in $names; do
		installed "$name" "$(stamp "$version" "$ldflags")" || missing=1
	done
	if ((missing == 0)); then
		for name in $names; do echo "$name $version: present ($BIN/$name)"; done
		return
	fi
	local start=$SECONDS
	# shellcheck disable=SC2086 # NAMES is a list
	install "$version" "$ldflags" "$pkgs" $names
	for name in $names; do echo "$name $version: installed in $((SECONDS - start))s ($BIN/$name)"; done
}

command -v go >/dev/null || { echo "provision: go is not on PATH" >&2; exit 1; }

# influxd with its version set, as release builds have it: its answers carry
# X-Influxdb-Version, from which the store picks InfluxQL (1.x) or Flux (2.x)
# for its aggregates.
#
# Prometheus and promtool are built with the remove_all_sd tag (Prometheus
# 3.10 and later): the tests scrape static targets only, and leaving out the
# cloud service-discovery plugins (Kubernetes, AWS, Azure, GCE, ...) more
# than halves a cold build. They are built by one go install: two go
# commands side by side would each compile the many packages they share
# (the build cache only spares what is finished). influxd builds beside
# them.
pids=()
(trap cleanup EXIT; tool influxd "$INFLUXD_VERSION" github.com/influxdata/influxdb/cmd/influxd "-ldflags=-X main.version=${INFLUXD_VERSION#v}") &
pids+=($!)
(trap cleanup EXIT; tool "promtool prometheus" "$PROMETHEUS_VERSION" "github.com/prometheus/prometheus/cmd/promtool github.com/prometheus/prometheus/cmd/prometheus" "-tags=remove_all_sd") &
pids+=($!)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
((failed == 0)) || { echo "provision: a tool failed to build (see above)" >&2; exit 1; }

# apt_install NAME PACKAGE PATH ALTERNATIVE: installs Debian's PACKAGE with
# apt-get, as root or through passwordless sudo, and checks that PATH then
# exists; NAME names it in messages. Without root, or without apt-get, one
# line says how (ALTERNATIVE: the variable that names another copy), and
# the tests that need it skip (fail under CI=true).
apt_install() {
	local name="$1" pkg="$2" path="$3" alternative="$4"
	local sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			echo "provision: $name is missing and installing it needs root: run 'apt-get install -y --no-install-recommends $pkg' as root (or set $alternative); until then its tests skip (fail under CI=true)" >&2
			return
		fi
	fi
	command -v apt-get >/dev/null || {
		echo "provision: $name is missing and there is no apt-get: install it and set $alternative" >&2
		return
	}
	local start=$SECONDS
	local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0)
	# The package lists may be missing or old on a new machine: update them
	# only when the install fails without.
	if ! "${apt[@]}" install -y --no-install-recommends "$pkg" >/dev/null 2>&1; then
		"${apt[@]}" update
		"${apt[@]}" install -y --no-install-recommends "$pkg" >/dev/null
	fi
	[[ -x "$path" ]] || { echo "provision: apt-get installed $pkg but there is no $path" >&2; return 1; }
	echo "$name: installed in $((SECONDS - start))s ($path)"
}

# provision_chromium: Debian's chromium (/usr/bin/chromium, for the browser
# test of the built-in page) when missing. $OMNIMEMORY_CHROMIUM names
# another browser and is only checked.
provision_chromium() {
	if [[ -n "${OMNIMEMORY_CHROMIUM:-}" ]]; then
		if [[ -x "$OMNIMEMORY_CHROMIUM" ]]; then
			echo "chromium: present (\$OMNIMEMORY_CHROMIUM=$OMNIMEMORY_CHROMIUM)"
		else
			echo "provision: \$OMNIMEMORY_CHROMIUM=$OMNIMEMORY_CHROMIUM is not an executable; the browser test will not run" >&2
		fi
		return
	fi
	local path=/usr/bin/chromium
	if [[ -x "$path" ]]; then
		echo "chromium: present ($path)"
		return
	fi
	apt_install chromium chromium "$path" "OMNIMEMORY_CHROMIUM to a Chromium binary"
}

# provision_postgres: Debian's PostgreSQL 15 server (initdb and postgres in
# /usr/lib/postgresql/15/bin, for the PostgreSQL store's tests, which run a
# throwaway server as an unprivileged user) when missing.
# $OMNIMEMORY_POSTGRES_BIN names another folder holding initdb and postgres
# and is only checked.
provision_postgres() {
	local bin="${OMNIMEMORY_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
	if [[ -x "$bin/postgres" && -x "$bin/initdb" ]]; then
		echo "postgresql: present ($bin)"
		return
	fi
	if [[ -n "${OMNIMEMORY_POSTGRES_BIN:-}" ]]; then
		echo "provision: \$OMNIMEMORY_POSTGRES_BIN=$OMNIMEMORY_POSTGRES_BIN holds no initdb and postgres; the PostgreSQL tests will not run" >&2
		return
	fi
	apt_install postgresql postgresql-15 "$bin/postgres" "OMNIMEMORY_POSTGRES_BIN to a folder with initdb and postgres"
}

provision_chromium
provision_postgres
