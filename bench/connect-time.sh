#!/usr/bin/env bash
# Connect time of `postern-helper up` vs strongSwan's charon as the client, against the
# same strongSwan gateway in the namespace lab (root). Prints per-run times, medians and
# the ratio postern/charon. What exactly is timed: see tests/src/bin/connect_time.rs.
#
#   bench/connect-time.sh [--runs N] [--only charon|postern|both] [--ike 1|2]
# Release builds of postern-helper and the benchmark are used.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "connect-time.sh: needs root (network namespaces)" >&2
  exit 1
fi
scripts/install-deps.sh >/dev/null
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo build --release -q -p postern-helper -p postern-lab --bin postern-helper --bin connect-time
target="${CARGO_TARGET_DIR:-target}"
export POSTERN_HELPER="${POSTERN_HELPER:-$PWD/$target/release/postern-helper}"
exec "$target/release/connect-time" "$@"
