#!/usr/bin/env bash
# The demo office (run as root): namespaces client/gw/lan, a strongSwan gateway (main mode
# PSK), a Postern profile, and `postern-helper up` in the client namespace in the
# foreground so you see each phase. Ctrl-C disconnects and removes everything.
#
#   scripts/demo.sh               # Postern as the client
#   scripts/demo.sh --reference   # strongSwan's charon as the client (for comparison)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: needs root (network namespaces); try: sudo $0 $*" >&2
  exit 1
fi

scripts/install-deps.sh
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
echo "demo.sh: building (release)..."
cargo build --release -q -p postern-helper -p postern-lab --bin postern-helper --bin demo

# The demo binary handles Ctrl-C itself (passes it on to postern-helper, tears down, then
# exits). The INT/TERM trap keeps this shell alive meanwhile (bash runs it only after the
# foreground demo has finished); the EXIT trap removes the demo's namespaces should the
# demo have died hard.
cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep '^pl-demo-' || true); do
    pid=$(echo "$ns" | awk -F- '{print $(NF-2)}')
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo.sh: removing leftover namespace $ns"
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns delete "$ns" 2>/dev/null || true
    fi
  done
}
trap 'true' INT TERM
trap cleanup EXIT

status=0
"${CARGO_TARGET_DIR:-target}/release/demo" "$@" || status=$?
exit "$status"
