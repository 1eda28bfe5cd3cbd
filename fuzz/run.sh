#!/bin/sh
# Runs the ISAKMP codec fuzz target for SECONDS (default 60) on a stable
# toolchain (cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP enables them).
# Seeds the corpus with the strongSwan captures used by the unit tests.
set -eu
SECONDS_TO_RUN="${1:-60}"
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "cargo-fuzz not installed: cargo install cargo-fuzz" >&2; exit 1; }
mkdir -p corpus/isakmp
if command -v xxd >/dev/null 2>&1; then
    for f in ../helper/engine/src/codec/fixtures/*.hex; do
        name="corpus/isakmp/seed-$(basename "$f" .hex)"
        [ -e "$name" ] || grep -v '^#' "$f" | tr -d ' \n' | xxd -r -p > "$name"
    done
fi
export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
exec cargo fuzz run isakmp -- -max_total_time="$SECONDS_TO_RUN" -max_len=4096
