#!/usr/bin/env bash
# Demo: start a throw-away docker-registry on 127.0.0.1, push a small sample
# image built by the integration fixture builder (with the host's static
# busybox inside), inspect it, mount it with imgfs and run a command in it.
# The mount, the registry and its storage are removed on exit, whatever happens.
#
#   make demo                      (builds bin/imgfs first)
#   IMGFS=bin/imgfs scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMGFS=${IMGFS:-bin/imgfs}
REGISTRY_BIN=${REGISTRY_BIN:-$(command -v docker-registry || true)}
[[ -x $IMGFS ]] || { echo "demo: $IMGFS not found; run 'make build' first" >&2; exit 1; }
[[ -n $REGISTRY_BIN ]] || { echo "demo: docker-registry not found (apt-get install docker-registry)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/imgfs-demo.XXXXXX")
# shellcheck source=registry.sh
. scripts/registry.sh
reg_pid=
mnt=
cleanup() {
	if [[ -n $mnt ]] && grep -qs " $mnt fuse" /proc/mounts; then
		"$IMGFS" unmount "$mnt" || "$IMGFS" unmount --lazy "$mnt" || true
	fi
	stop_registry
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_registry "$work" demo
echo "== docker-registry on 127.0.0.1:$port (pid $reg_pid)"

ref=$(go run ./integration/cmd/pushsample -registry "127.0.0.1:$port" -repo demo/sample -tag latest -format "${DEMO_FORMAT:-gzip}")
echo "== pushed $ref"
echo "== $IMGFS inspect --plain-http $ref"
"$IMGFS" inspect --plain-http "$ref"

export IMGFS_CACHE_DIR=$work/cache
mnt=$work/mnt
mkdir -p "$mnt"
echo "== $IMGFS mount --background --plain-http $ref $mnt"
"$IMGFS" mount --background --plain-http "$ref" "$mnt"
echo "== ls $mnt"
ls -l "$mnt"
if [[ $(id -u) == 0 ]] && [[ -x $mnt/bin/busybox ]]; then
	echo "== chroot $mnt /bin/sh -c '. /.singularity.d/env/10-docker2singularity.sh; ...'"
	chroot "$mnt" /bin/sh -c '. /.singularity.d/env/10-docker2singularity.sh; echo "SAMPLE=$SAMPLE"; busybox cat /etc/motd; busybox uname -m'
elif [[ -x $mnt/bin/busybox ]]; then
	echo "== $mnt/bin/busybox cat $mnt/etc/motd   (not root: no chroot)"
	"$mnt/bin/busybox" cat "$mnt/etc/motd"
else
	cat "$mnt/etc/motd"
fi
echo "== $IMGFS unmount $mnt"
"$IMGFS" unmount "$mnt"
