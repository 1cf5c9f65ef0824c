#!/usr/bin/env bash
# Benchmark imgfs against its performance targets (docs/PERFORMANCE.md) in
# one run: every figure is a
# ratio against a baseline measured on this machine in the same run
# (skopeo copy + umoci unpack, local disk, gzip -dc, Go compress/gzip).
#
# It starts a throw-away docker-registry on 127.0.0.1 (random port, storage
# in a temp dir), builds imgfs and integration/cmd/bench, and runs the
# latter, which generates and pushes the images, mounts, measures and writes
# a markdown report. Mounts, mount servers, the registry and every temp file
# are removed on exit, whatever happens. Needs root (chroot, umoci unpack),
# /dev/fuse, docker-registry, skopeo, umoci, busybox-static, gzip, find.
#
#   make bench                                  (micro-benchmarks, then this)
#   scripts/bench.sh
#   BENCH_SCALE=0.5 BENCH_REPEATS=1 BENCH_REPORT=/tmp/r.md scripts/bench.sh
#
# BENCH_SCALE scales the python-like image (default 0.8: ~24k files and
# ~340 MiB; 1: ~30k files, ~420 MiB), BENCH_BIG_MIB the P4/P5 files (default
# 200), BENCH_REPEATS the repeats of each imgfs timing (default 3, median
# reported), BENCH_REPORT the report path (default bin/bench-report.md),
# BENCH_ONLY a comma-separated list of measurements to run (default all;
# e.g. BENCH_ONLY=overlay for P6o alone; see `bench -h` for the names).
# 6-8 minutes on 2 idle cores; umoci unpack and file creation dominate.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
REPORT=${BENCH_REPORT:-bin/bench-report.md}
REGISTRY_BIN=${REGISTRY_BIN:-$(command -v docker-registry || true)}

missing=()
for tool in skopeo umoci gzip find chroot; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -n $REGISTRY_BIN ]] || missing+=(docker-registry)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
[[ -e /dev/fuse ]] || missing+=(/dev/fuse)
if ((${#missing[@]})); then
	echo "bench: missing ${missing[*]} (apt-get install docker-registry skopeo umoci busybox-static fuse3)" >&2
	exit 1
fi
if [[ $(id -u) != 0 ]]; then
	echo "bench: run as root: exec timings chroot into the mount and into umoci bundles" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/imgfs-bench.XXXXXX")
# shellcheck source=registry.sh
. scripts/registry.sh
reg_pid=
cleanup() {
	# Mounts first (lazily if still busy), then the servers this run
	# started (listed by the bench in $work/pids), then the registry.
	local m
	while read -r _ m _; do
		case $m in "$work"/*) umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true ;; esac
	done </proc/mounts
	if [[ -f $work/pids ]]; then
		while read -r pid; do
			# only if the pid is still one of ours (not reused since)
			if grep -qsF "$work/imgfs" "/proc/$pid/cmdline"; then kill "$pid" 2>/dev/null || true; fi
		done <"$work/pids"
	fi
	stop_registry
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_registry "$work" bench
echo "== docker-registry on 127.0.0.1:$port; scratch $work"

"$GO" build -o "$work/imgfs" ./cmd/imgfs
"$GO" build -o "$work/bench" ./integration/cmd/bench
mkdir -p "$(dirname "$REPORT")"
# A hung mount must not hang `make bench` forever: stop after 30 minutes.
timeout --foreground --kill-after=30s 30m "$work/bench" -registry "127.0.0.1:$port" -registry-pid "$reg_pid" -imgfs "$work/imgfs" -work "$work" -report "$REPORT" \
	-scale "${BENCH_SCALE:-0.8}" -big-mib "${BENCH_BIG_MIB:-200}" -repeats "${BENCH_REPEATS:-3}" ${BENCH_ONLY:+-only "$BENCH_ONLY"}
echo
cat "$REPORT"
echo
echo "== report written to $REPORT"
