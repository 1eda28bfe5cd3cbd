#!/usr/bin/env bash
# Connect/disconnect cycles over D-Bus (issue 15): N cycles of two tunnels at a time
# (the `postern` CLI as a test user on the lab's private system bus, polkit, the helper
# daemon, one strongSwan with two gateway addresses). Prints the daemon's fd count and
# RSS, first vs last 50 cycles, and fails when anything of Postern's is left (address,
# route, rule, XFRM, link, nftables, resolv.conf) or the gateway holds an SA.
#
#   bench/cycles.sh [N]      (default 200; root)
# Debug builds (as the lab tests use); POSTERN_HELPER overrides the helper.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "cycles.sh: needs root (network namespaces, test users)" >&2
  exit 1
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build -q -p postern-helper -p postern-cli -p postern-lab --bin postern-helper --bin postern --bin cycles
target="${CARGO_TARGET_DIR:-target}"
exec "$target/debug/cycles" "${1:-200}"
