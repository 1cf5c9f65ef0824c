#!/usr/bin/env bash
# start-registry.sh DIR
#
# Start Debian's docker-registry on 127.0.0.1 at a free port, config, log
# and storage under DIR (DIR/storage; an image pushed there is still there
# after a restart on another port). Prints "PID 127.0.0.1:PORT" once it
# answers, and writes DIR/registry.pid and DIR/registry.addr.
# Stop it with: kill "$(cat DIR/registry.pid)"
#
# Env: REGISTRY_BIN (default: docker-registry on PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# == 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
REGISTRY_BIN=${REGISTRY_BIN:-$(command -v docker-registry || true)}
[[ -n $REGISTRY_BIN ]] || { echo "start-registry: docker-registry not found (apt-get install docker-registry)" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
# shellcheck source=../registry.sh
. "$here/../registry.sh"
reg_pid=
port=
start_registry "$dir" stargz-compare # sets reg_pid and port, exits on failure
echo "$reg_pid" >"$dir/registry.pid"
echo "127.0.0.1:$port" >"$dir/registry.addr"
echo "$reg_pid 127.0.0.1:$port"
