#!/usr/bin/env bash
# Footprint of the desktop app, postern-gui (release build), in the desktop lab: exec to
# window mapped and painted, idle RSS, idle wakeups per second with the window open and
# with the app hidden in the tray, binary size (as built and stripped). Prints figures
# beside issue 12's goals; asserts nothing. What exactly is measured:
# tests/src/bin/gui_bench.rs. Root (a private system bus with the helper, a test user).
#
#   bench/gui.sh [--runs N] [--window SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "gui.sh: needs root (the lab's system bus and helper, a test user)" >&2
  exit 1
fi
scripts/install-deps.sh >/dev/null
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# On a shared machine, POSTERN_CARGO_LOCK=/path/to/lock serialises the build.
lock=()
if [ -n "${POSTERN_CARGO_LOCK:-}" ]; then lock=(flock "$POSTERN_CARGO_LOCK"); fi
"${lock[@]}" cargo build --release -q -p postern-helper -p postern-cli -p postern-gui -p postern-lab \
  --bin postern-helper --bin postern --bin postern-gui --bin notification-recorder --bin gui-bench
target="${CARGO_TARGET_DIR:-target}"
export POSTERN_HELPER="${POSTERN_HELPER:-$PWD/$target/release/postern-helper}"
exec "$target/release/gui-bench" "$@"
