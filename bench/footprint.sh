#!/usr/bin/env bash
# Footprint of postern-helper as the D-Bus service (root): resident memory and wakeups
# per second, idle on a (private) system bus with polkitd, and with one tunnel up to a
# strongSwan gateway in the namespace lab. What exactly is measured:
# tests/src/bin/footprint.rs. Release builds.
#
#   bench/footprint.sh [--window SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "footprint.sh: needs root (network namespaces, a private system bus)" >&2
  exit 1
fi
scripts/install-deps.sh >/dev/null
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo build --release -q -p postern-helper -p postern-cli -p postern-lab --bin postern-helper --bin postern --bin footprint
target="${CARGO_TARGET_DIR:-target}"
export POSTERN_HELPER="${POSTERN_HELPER:-$PWD/$target/release/postern-helper}"
exec "$target/release/footprint" "$@"
