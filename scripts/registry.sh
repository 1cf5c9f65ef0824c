# Sourced by demo.sh and bench.sh: start a throw-away docker-registry on
# 127.0.0.1 at a free port, storage under a given directory.
#
#   start_registry DIR NAME   sets reg_pid and port; exits the script on failure
#
# The caller's cleanup kills $reg_pid.

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_registry() {
	local dir=$1 name=$2 candidate
	port=
	for _ in $(seq 20); do
		candidate=$((20000 + RANDOM % 30000))
		if ! port_in_use "$candidate"; then port=$candidate; break; fi
	done
	[[ -n $port ]] || { echo "$name: no free port found" >&2; exit 1; }

	cat >"$dir/registry.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: imgfs-$name
YAML
	"$REGISTRY_BIN" serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
	reg_pid=$!
	for _ in $(seq 100); do
		port_in_use "$port" && break
		kill -0 "$reg_pid" 2>/dev/null || { echo "$name: docker-registry exited:" >&2; cat "$dir/registry.log" >&2; exit 1; }
		sleep 0.1
	done
	port_in_use "$port" || { echo "$name: docker-registry did not start" >&2; cat "$dir/registry.log" >&2; exit 1; }
}

# stop_registry kills the registry start_registry started, if any.
stop_registry() {
	if [[ -n ${reg_pid:-} ]]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
}
