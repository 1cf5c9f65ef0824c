#!/usr/bin/env bash
# run-store.sh MOUNTPOINT REGISTRY_HOST:PORT
#
# Start stargz-store ($STARGZ_STORE) in the background, mounted at
# MOUNTPOINT, with a config that names REGISTRY_HOST:PORT (loopback only)
# as a plain-HTTP registry and nothing else: every cache, prefetch and
# background-fetch setting is stargz-store's default. Prints the store's
# pid on stdout once the FUSE mount is up. Stop it with stop-store.sh.
#
# An image then appears (nothing is listable: look names up) at
#   MOUNTPOINT/$(printf %s HOST:PORT/REPO:TAG | base64 -w0)/<TOC digest>/diff
# where <TOC digest> is the layer's containerd.io/snapshot/stargz/toc.digest
# annotation, not its blob digest.
#
# Env:
#   STARGZ_STORE      the stargz-store binary (required)
#   STORE_ROOT        its root dir (caches, store.sock, config); default a
#                     fresh MOUNTPOINT.root.XXXXXX beside MOUNTPOINT (cold)
#   STORE_LOG         its log (default STORE_ROOT/store.log)
#   STORE_LOG_LEVEL   default info
#   STORE_EXTRA_TOML  top-level TOML lines, e.g. "no_background_fetch = true"
#
# State for stop-store.sh goes to MOUNTPOINT.store.env.
set -euo pipefail
[[ $# == 2 ]] || { echo "usage: $0 MOUNTPOINT REGISTRY_HOST:PORT" >&2; exit 2; }
mnt=$(realpath -m "$1")
reg=$2
case $reg in 127.*:* | localhost:* | \[::1\]:*) ;; *) echo "run-store: $reg is not a loopback host:port" >&2; exit 2 ;; esac
[[ -n ${STARGZ_STORE:-} && -x ${STARGZ_STORE:-} ]] || { echo "run-store: set STARGZ_STORE to the stargz-store binary" >&2; exit 2; }
command -v fusermount >/dev/null || { echo "run-store: stargz-store (go-fuse) needs fusermount on PATH (fuse3 has fusermount3: link it)" >&2; exit 1; }
envf=$mnt.store.env
[[ ! -e $envf ]] || { echo "run-store: $envf exists: a store is already recorded for $mnt (stop-store.sh $mnt)" >&2; exit 1; }
mkdir -p "$mnt"
if grep -qs " $mnt fuse" /proc/mounts; then echo "run-store: $mnt is already mounted" >&2; exit 1; fi
own_root=0
if [[ -n ${STORE_ROOT:-} ]]; then
	root=$(realpath -m "$STORE_ROOT")
	mkdir -p "$root"
else
	root=$(mktemp -d "$mnt.root.XXXXXX")
	own_root=1
fi
log=${STORE_LOG:-$root/store.log}
cfg=$root/config.toml
cat >"$cfg" <<TOML
# stargz-store config written by run-store.sh.
# The only registry named: $reg, plain HTTP ("insecure" = http scheme).
# A host matching localhost/127.0.0.1 would get http anyway (containerd's
# docker.MatchLocalhost); the mirror entry makes it explicit.
# Top-level keys (STORE_EXTRA_TOML) must come before any [table], or they
# would silently belong to it.
${STORE_EXTRA_TOML:-}

[[resolver.host."$reg".mirrors]]
host = "$reg"
insecure = true
TOML
# -addr: its default is /var/lib/stargz-store/store.sock whatever -root is.
# setsid: only SIGINT stops it cleanly (it unmounts), so it must not get a
# terminal's signals meant for us; stop-store.sh sends the SIGINT.
setsid "$STARGZ_STORE" -config "$cfg" -root "$root" -addr "$root/store.sock" \
	-log-level "${STORE_LOG_LEVEL:-info}" "$mnt" >>"$log" 2>&1 </dev/null &
pid=$!
printf 'pid=%s\nroot=%s\nown_root=%s\nlog=%s\n' "$pid" "$root" "$own_root" "$log" >"$envf"
for _ in $(seq 200); do
	if grep -qs " $mnt fuse" /proc/mounts; then echo "$pid"; exit 0; fi
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
echo "run-store: stargz-store did not mount $mnt; the end of $log:" >&2
tail -20 "$log" >&2
"$(dirname "$0")/stop-store.sh" "$mnt" >/dev/null 2>&1 || true
exit 1
