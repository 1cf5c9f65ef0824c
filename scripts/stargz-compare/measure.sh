#!/usr/bin/env bash
# measure.sh [IMAGE_REF]
#
# Side by side, cold cache every run: containerd's stargz-store and imgfs
# mounting the same eStargz image from a plain-HTTP registry on loopback,
# through countproxy (requests and response bytes per kind). By hand only
# (`make stargz-compare STARGZ_STORE=...`): stargz-store is not packaged.
# See README.md beside this script for what it measures and how to read it.
#
# Without IMAGE_REF it starts a docker-registry on 127.0.0.1 (storage in the
# work dir) and pushes the test image test/esgz:1 built by mkestargz from
# host dirs (ESGZ_LAYERS), unless that registry storage already has it.
# With IMAGE_REF (HOST:PORT/REPO:TAG on a loopback registry, eStargz layers
# with TOC digest annotations) it measures that image.
#
# It builds countproxy, mkestargz and imgfs from this repository into the
# work dir first. Every mount, store, server, proxy and registry it starts
# is stopped on exit, also on failure or ^C.
#
# Env:
#   STARGZ_STORE   stargz-store binary (required)
#   STARGZ_COMPARE_WORK  work dir, kept afterwards (a registry storage there
#                  is reused); default a fresh mktemp dir, removed unless KEEP=1
#   KEEP=1         keep the mktemp work dir (logs, request log, JSON, lists)
#   IMGFS          an imgfs binary to use instead of building ./cmd/imgfs
#   GO             go command (default go)
#   ESGZ_LAYERS    the test image's layers, space-separated, each a
#                  comma-separated list of host dirs (default: the stdlib of
#                  /usr/bin/python3, /usr/lib/python3,
#                  /usr/share/perl,/usr/share/zoneinfo)
#   MOUNTERS="stargz imgfs"  RUNS="full-seq full-par py rand"
#   PY_N=500 PY_PKG= SMALL_N=300 SMALL_MAX=16384 SEED=42 QUIET=8 SETTLE_MAX=90
#   STORE_EXTRA_TOML  top-level stargz-store config lines, e.g.
#                  "no_background_fetch = true"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "stargz-compare: $*" >&2; exit 1; }
[[ $# -le 1 ]] || { echo "usage: $0 [HOST:PORT/REPO:TAG]" >&2; exit 2; }

GO=${GO:-go}
MOUNTERS=${MOUNTERS:-stargz imgfs}
RUNS=${RUNS:-full-seq full-par py rand}
PY_N=${PY_N:-500}
SMALL_N=${SMALL_N:-300}
SMALL_MAX=${SMALL_MAX:-16384}
SEED=${SEED:-42}
QUIET=${QUIET:-8}
SETTLE_MAX=${SETTLE_MAX:-90}
H=(python3 "$here/helper.py")

[[ -n ${STARGZ_STORE:-} ]] || die "set STARGZ_STORE to a stargz-store binary (README.md says how to build one)"
[[ -x $STARGZ_STORE ]] || die "STARGZ_STORE=$STARGZ_STORE is not an executable"
STARGZ_STORE=$(realpath "$STARGZ_STORE")
export STARGZ_STORE
missing=()
for tool in "$GO" python3 curl tar xargs fusermount base64 setsid; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -e /dev/fuse ]] || missing+=(/dev/fuse)
((${#missing[@]} == 0)) || die "missing: ${missing[*]} (fusermount: fuse3's fusermount3 under that name)"
[[ $(id -u) == 0 ]] || die "run as root (stargz-store mounts with allow_other)"
# QUIET must outlast stargz-store's 5 s wait before its background fetch.
((QUIET > 5)) || die "QUIET must be more than 5 (s)"

own_work=0
if [[ -n ${STARGZ_COMPARE_WORK:-} ]]; then
	mkdir -p "$STARGZ_COMPARE_WORK"
	W=$(cd "$STARGZ_COMPARE_WORK" && pwd -P)
else
	W=$(mktemp -d "${TMPDIR:-/tmp}/stargz-compare.XXXXXX")
	W=$(cd "$W" && pwd -P)
	own_work=1
fi
R=$W/run # this invocation's mounts, roots, logs and lists
if grep -qsF " $R/" /proc/mounts; then die "something is still mounted under $R"; fi
rm -rf "$R"
mkdir -p "$R" "$W/bin" "$W/tmp"

proxy_pid=
reg_pid=
cleanup() {
	local rc=$? envf m pid
	trap - EXIT INT TERM
	# stargz-stores first: SIGINT, their only clean exit (they unmount).
	for envf in "$R"/*.store.env; do
		[[ -e $envf ]] && { "$here/stop-store.sh" "${envf%.store.env}" >/dev/null 2>&1 || true; }
	done
	# Then any other mount under the work dir (imgfs: its server exits on
	# unmount), lazily if still busy.
	while read -r _ m _; do
		case $m in "$W"/*) umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true ;; esac
	done </proc/mounts
	if [[ -f $R/imgfs.pids ]]; then
		while read -r pid; do
			# only if the pid is still one of ours (not reused since)
			if grep -qsF "$W/" "/proc/$pid/cmdline"; then kill "$pid" 2>/dev/null || true; fi
		done <"$R/imgfs.pids"
	fi
	if [[ -n $proxy_pid ]]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
	if [[ -n $reg_pid ]] && grep -qsF "$W/" "/proc/$reg_pid/cmdline"; then
		kill "$reg_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$reg_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	if grep -qsF " $W/" /proc/mounts; then
		echo "stargz-compare: something is still mounted under $W; not removing it" >&2
	elif [[ $own_work == 1 && ${KEEP:-0} != 1 ]]; then
		rm -rf "$W"
	else
		echo "stargz-compare: kept $W" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1048576 }'; }
hwm() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

echo "== building countproxy, mkestargz${IMGFS:- and imgfs} into $W/bin" >&2
(cd "$repo" && "$GO" build -o "$W/bin/" ./integration/cmd/countproxy ./integration/cmd/mkestargz)
if [[ -z ${IMGFS:-} ]]; then
	(cd "$repo" && "$GO" build -o "$W/bin/imgfs" ./cmd/imgfs)
	IMGFS=$W/bin/imgfs
fi

if [[ $# == 1 ]]; then
	REF=$1
else
	read -r reg_pid reg < <("$here/start-registry.sh" "$W/registry")
	[[ -n ${reg:-} ]] || die "the registry did not start (log: $W/registry/registry.log)"
	REF=$reg/test/esgz:1
	if curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/test/esgz/manifests/1" 2>/dev/null; then
		echo "== $REF is already in $W/registry/storage" >&2
	else
		if [[ -z ${ESGZ_LAYERS:-} ]]; then
			# The system python's stdlib (Debian 12: /usr/lib/python3.11), not
			# a pyenv one on PATH, whose site-packages can be 10 times larger.
			py=/usr/bin/python3
			[[ -x $py ]] || py=python3
			stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
			ESGZ_LAYERS="$stdlib /usr/lib/python3 /usr/share/perl,/usr/share/zoneinfo"
		fi
		args=()
		for spec in $ESGZ_LAYERS; do
			IFS=, read -ra dirs <<<"$spec"
			for d in "${dirs[@]}"; do [[ -d $d ]] || die "layer dir $d does not exist (set ESGZ_LAYERS)"; done
			args+=(-layer "$spec")
		done
		echo "== building and pushing $REF (eStargz, gzip BestCompression: about a minute)" >&2
		"$W/bin/mkestargz" -tmp "$W/tmp" -summary "$W/image-summary.txt" "${args[@]}" "$REF" >&2
	fi
fi
reg=${REF%%/*}
rest=${REF#*/}
case $reg in 127.*:* | localhost:*) ;; *) die "registry $reg is not on loopback" ;; esac

# The layers (blob digest, TOC digest, size), read from the registry directly.
"${H[@]}" layers "$REF" >"$R/layers"
mapfile -t tocs < <(awk '{print $2}' "$R/layers")
((${#tocs[@]} > 0)) || die "$REF has no layers"
if grep -q ' - ' "$R/layers"; then die "a layer of $REF has no TOC digest annotation: not eStargz?"; fi
blobsum=$(awk '{s += $3} END {print s}' "$R/layers")

# The file lists, from an uncounted stargz-store mount straight on the
# registry: every entry of each layer (for tar), and the regular files (for
# the py and rand picks). Both mounters read the same lists in the same order.
echo "== listing the image's files" >&2
"$here/run-store.sh" "$R/mnt-list" "$reg" >/dev/null
b64=$(printf %s "$REF" | base64 -w0)
for i in "${!tocs[@]}"; do
	d=$R/mnt-list/$b64/${tocs[$i]}/diff
	find "$d" -type f -printf '%s %P\n' | awk -v t="${tocs[$i]}" '{print t " " $0}'
	find "$d" -mindepth 1 -printf '%P\n' | LC_ALL=C sort >"$R/entries.$i"
done >"$R/files"
"$here/stop-store.sh" "$R/mnt-list" --rm >/dev/null
"${H[@]}" lists "$R/files" "$R" "$PY_N" "$SMALL_N" "$SMALL_MAX" "$SEED" >&2
nfiles=$(wc -l <"$R/files")

"$W/bin/countproxy" -listen 127.0.0.1:0 -target "$reg" -addr-file "$R/proxy.addr" -log "$R/requests.log" 2>"$R/proxy.err" &
proxy_pid=$!
for _ in $(seq 100); do [[ -s $R/proxy.addr ]] && break; sleep 0.05; done
[[ -s $R/proxy.addr ]] || die "countproxy did not start: $(cat "$R/proxy.err")"
paddr=$(cat "$R/proxy.addr")
pref=$paddr/$rest # the image as seen through the proxy
pb64=$(printf %s "$pref" | base64 -w0)
echo "== $REF: ${#tocs[@]} layers, $blobsum compressed bytes, $nfiles regular files; through countproxy $paddr; work dir $W" >&2

snap() { curl -fsS "http://$paddr/-/stats.json" >"$1"; }
settle() { # until the proxy's byte count has not moved for QUIET s (at most SETTLE_MAX s)
	local last=-1 same=0 b i
	for ((i = 0; i < SETTLE_MAX; i++)); do
		b=$(curl -fsS "http://$paddr/-/stats.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["bytes"])')
		if [[ $b == "$last" ]]; then
			((++same >= QUIET)) && return 0
		else
			same=0
			last=$b
		fi
		sleep 1
	done
}

# layer_dir MOUNTER MNT I: where layer I's entries are, relative to which
# the entry lists hold. stargz-store shows each layer on its own; imgfs the
# merged rootfs, the same paths as the layers do not overlap.
layer_dir() {
	if [[ $1 == stargz ]]; then echo "$2/$pb64/${tocs[$3]}/diff"; else echo "$2"; fi
}

# full_read MOUNTER MNT seq|par: tar every entry of each layer, one layer
# after the other or all at once; writes "bytes sha256" per layer to OUT.
full_read() {
	local mounter=$1 mnt=$2 mode=$3 out=$4 i pids=()
	for i in "${!tocs[@]}"; do
		if [[ $mode == par ]]; then
			(tar -cf - -C "$(layer_dir "$mounter" "$mnt" "$i")" --no-recursion --verbatim-files-from -T "$R/entries.$i" |
				"${H[@]}" hashcount >"$out.$i") &
			pids+=($!)
		else
			tar -cf - -C "$(layer_dir "$mounter" "$mnt" "$i")" --no-recursion --verbatim-files-from -T "$R/entries.$i" |
				"${H[@]}" hashcount >"$out.$i"
		fi
	done
	for i in "${pids[@]}"; do wait "$i"; done
	for i in "${!tocs[@]}"; do cat "$out.$i"; done >"$out"
}

# list_read MOUNTER MNT LIST OUT: cat the files of LIST ("toc<TAB>path") in
# one process, in order; writes "bytes sha256" to OUT.
list_read() {
	local mounter=$1 mnt=$2 list=$3 out=$4
	if [[ $mounter == stargz ]]; then
		awk -F'\t' -v p="$mnt/$pb64/" '{print p $1 "/diff/" $2}' "$list"
	else
		awk -F'\t' -v p="$mnt/" '{print p $2}' "$list"
	fi | xargs -r -d '\n' cat | "${H[@]}" hashcount >"$out"
}

rows=()
for mounter in $MOUNTERS; do
	[[ $mounter == stargz || $mounter == imgfs ]] || die "unknown mounter $mounter"
	for run in $RUNS; do
		mnt=$R/mnt-$mounter-$run
		out=$R/content-$mounter-$run
		curl -fsS "http://$paddr/-/reset" >/dev/null
		t0=$(now)
		if [[ $mounter == stargz ]]; then
			pid=$(STORE_ROOT=$R/root-$mounter-$run STORE_LOG=$R/store-$run.log "$here/run-store.sh" "$mnt" "$paddr")
			# The first lookup of a layer resolves the whole image.
			for t in "${tocs[@]}"; do stat "$mnt/$pb64/$t/diff" >/dev/null; done
		else
			mkdir -p "$mnt"
			msg=$("$IMGFS" --plain-http --cache-dir "$R/cache-$mounter-$run" mount --background \
				--log-file "$R/imgfs-$run.log" "$pref" "$mnt")
			pid=$(sed -n 's/.*server pid \([0-9]*\).*/\1/p' <<<"$msg")
			[[ -n $pid ]] || die "imgfs mount: $msg"
			echo "$pid" >>"$R/imgfs.pids"
			stat "$mnt/." >/dev/null
		fi
		t1=$(now)
		case $run in
		full-seq) full_read "$mounter" "$mnt" seq "$out"; what="all files, layers in sequence" ;;
		full-par) full_read "$mounter" "$mnt" par "$out"; what="all files, layers in parallel" ;;
		py | rand) list_read "$mounter" "$mnt" "$R/$run.list" "$out"; what="$(wc -l <"$R/$run.list") files" ;;
		*) die "unknown run $run" ;;
		esac
		t2=$(now)
		snap "$R/stats-$mounter-$run-end.json"
		h1=$(hwm "$pid")
		settle
		t3=$(now)
		snap "$R/stats-$mounter-$run-settled.json"
		h2=$(hwm "$pid")
		if [[ $mounter == stargz ]]; then
			"$here/stop-store.sh" "$mnt" >/dev/null
		else
			"$IMGFS" unmount "$mnt" >/dev/null 2>&1 || umount -l "$mnt" || true
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
		nbytes=$(awk '{s += $1} END {print s}' "$out")
		read -r m1 f1 r1 o1 _ b1 _ < <("${H[@]}" stat "$R/stats-$mounter-$run-end.json")
		read -r m2 f2 r2 o2 _ b2 _ < <("${H[@]}" stat "$R/stats-$mounter-$run-settled.json")
		rows+=("$(printf '%-7s %-9s %-30s %9s %7s %7s %13s %8s %8s %13s %9s %5s %5s' \
			"$mounter" "$run" "$what" "$(mib "$nbytes")" "$(dt "$t0" "$t1")" "$(dt "$t1" "$t2")" \
			"$m1/$f1/$r1/$o1" "$(mib "$b1")" "$(dt "$t2" "$t3")" \
			"$m2/$f2/$r2/$o2" "$(mib "$b2")" "$h1" "$h2")")
		echo "${rows[-1]}" >&2
	done
done

# Content check: each run's bytes and sha256 (per layer for the tar runs,
# whose streams hold content and metadata) must be the same for every
# mounter.
checks=()
bad=0
for run in $RUNS; do
	first=
	for mounter in $MOUNTERS; do
		f=$R/content-$mounter-$run
		if [[ -z $first ]]; then
			first=$f
		elif ! cmp -s "$first" "$f"; then
			bad=1
			checks+=("$run: DIFFERENT: $(basename "$first"): $(tr '\n' ' ' <"$first"); $(basename "$f"): $(tr '\n' ' ' <"$f")")
			continue 2
		fi
	done
	checks+=("$run: same for $MOUNTERS: $(awk '{s += $1} END {print s}' "$first") bytes, sha256 $(awk '{printf "%s%s", (NR > 1 ? "," : ""), substr($2, 1, 12)}' "$first")")
done

echo
echo "image $REF: ${#tocs[@]} layers, $(mib "$blobsum") MiB compressed, $nfiles regular files; cold cache every run; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %-9s %-30s %9s %7s %7s %13s %8s %8s %13s %9s %5s %5s\n' \
	mounter run workload "read MiB" "setup s" "read s" "req@end" "MiB@end" "settle s" "req@settle" "MiB@settl" HWM HWM2
printf '%s\n' "${rows[@]}"
echo "req = manifest/blob-full/blob-range/other requests through the proxy; MiB = response body bytes; @end: when the reads finished;"
echo "@settle: once no traffic for $QUIET s; settle s includes those $QUIET s; HWM/HWM2 = server VmHWM MiB at end / after settle."
echo "content (bytes, sha256 of the tar stream per layer or of the cat output):"
printf '  %s\n' "${checks[@]}"
((bad == 0)) || die "the mounters did not read the same bytes"
