#!/usr/bin/env bash
# Fuzz smoke test: runs each native Go fuzz target for FUZZTIME executions
# (default 20000x). A count, not a duration: go1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" failure when a duration runs
# out mid-execution on a busy machine (golang/go#75804, fixed in go1.27).
#
#   .ci/fuzz.sh                          every `func FuzzXxx` found in *_test.go
#   .ci/fuzz.sh FuzzParse index:FuzzOpen only these (NAME or PKGDIR:NAME);
#                                        names that do not exist are reported and skipped
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-20000x}
# Minimizing each new interesting input may otherwise take up to 60 s.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1000x}
GO=${GO:-go}

# "pkgdir name" for every fuzz target in the module.
discover() {
	grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' . 2>/dev/null |
		grep -v '^./\.git/' |
		sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#\1 \2#; s#^\./[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#. \1#' |
		sort -u
}

mapfile -t all < <(discover)
selected=()
if (($# == 0)); then
	selected=("${all[@]}")
else
	for want in "$@"; do
		found=
		for t in "${all[@]}"; do
			dir=${t% *} name=${t#* }
			if [[ $want == "$name" || $want == "$dir:$name" ]]; then selected+=("$t"); found=1; fi
		done
		[[ -n $found ]] || echo "fuzz: no target $want, skipped" >&2
	done
fi

if ((${#selected[@]} == 0)); then
	echo "fuzz: no fuzz targets"
	exit 0
fi
for t in "${selected[@]}"; do
	dir=${t% *} name=${t#* }
	echo "fuzz: $dir $name ($FUZZTIME)"
	"$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$FUZZMINIMIZETIME" "./$dir"
done
