#!/usr/bin/env bash
# stop-store.sh MOUNTPOINT [--rm]
#
# Stop the stargz-store that run-store.sh started at MOUNTPOINT: SIGINT, its
# only clean exit (it unmounts; SIGTERM would leave a dead mount behind);
# after 10 s an unmount (lazy if busy) and SIGKILL. --rm also removes its
# root dir (caches) if run-store.sh made it, and the empty MOUNTPOINT.
set -uo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 MOUNTPOINT [--rm]" >&2; exit 2; }
mnt=$(realpath -m "$1")
envf=$mnt.store.env
[[ -f $envf ]] || { echo "stop-store: no store recorded for $mnt ($envf)" >&2; exit 1; }
pid=
root=
own_root=0
# shellcheck disable=SC1090
. "$envf"
# Only signal the pid if it is still that store (pids get reused).
ours() { [[ -n $pid ]] && grep -qsF stargz-store "/proc/$pid/cmdline" && grep -qsF "$mnt" "/proc/$pid/cmdline"; }
if ours; then
	kill -INT "$pid"
	for _ in $(seq 100); do ours || break; sleep 0.1; done
fi
if grep -qs " $mnt fuse" /proc/mounts; then
	fusermount -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
fi
if ours; then
	kill -KILL "$pid"
	for _ in $(seq 20); do ours || break; sleep 0.1; done
fi
if [[ ${2:-} == --rm ]]; then
	[[ $own_root == 1 && -n $root ]] && rm -rf "$root"
	rmdir "$mnt" 2>/dev/null || true
fi
rm -f "$envf"
echo "stopped $pid ($mnt)"
