#!/usr/bin/env bash
# TCP throughput (iperf3) through Postern's userspace ESP datapath vs strongSwan's charon
# as the client (kernel-libipsec) vs the bare veth link, in the namespace lab (root);
# Postern at both ends with both encapsulations (the default, ESP in UDP on this NAT-free
# path, and raw ESP with NAT-T off). Prints Mbit/s, shares of bare veth and the ratios. What exactly is measured: tests/src/bin/throughput.rs.
#
#   bench/throughput.sh [--secs N] [--esp PROPOSAL] [--runs N] [--pair-only]
# Release builds of postern-helper and the benchmark are used.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "throughput.sh: needs root (network namespaces)" >&2
  exit 1
fi
scripts/install-deps.sh >/dev/null
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo build --release -q -p postern-helper -p postern-lab --bin postern-helper --bin throughput
target="${CARGO_TARGET_DIR:-target}"
export POSTERN_HELPER="${POSTERN_HELPER:-$PWD/$target/release/postern-helper}"
exec "$target/release/throughput" "$@"
