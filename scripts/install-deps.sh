#!/usr/bin/env bash
# Installs, from Debian's packages, the system tools imgfs's demo and tests
# use. Run as root on Debian 12 or later; Go (1.21 or later, for the
# toolchain go.mod asks for) must already be installed. Idempotent: packages
# already installed are not fetched again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(fuse3 docker-registry umoci skopeo busybox-static apache2-utils libcap2-bin ca-certificates git make)

missing_packages() {
	local p
	for p in "${PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || echo "$p"
	done
}

# policy-rc.d exiting 101 stops package scripts from starting services, so
# docker-registry's own service does not take port 5000 (on all interfaces)
# during the install. The tests start their own registry on 127.0.0.1.
policy=/usr/sbin/policy-rc.d
policy_backup=
restore_policy() {
	if [[ -n $policy_backup ]]; then
		mv -f "$policy_backup" "$policy"
	else
		rm -f "$policy"
	fi
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} == 0)); then
	echo "install-deps: all packages present"
	exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [[ -e $policy ]]; then
	policy_backup=$(mktemp "$policy.imgfs.XXXXXX")
	cp -p "$policy" "$policy_backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 0755 "$policy"
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
