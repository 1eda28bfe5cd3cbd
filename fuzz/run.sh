#!/bin/sh
# Runs the fuzz targets for SECONDS in total (default 60), shared between them, on a
# stable toolchain (cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP enables them):
#
#   isakmp       the ISAKMP codec (decode -> encode -> decode)
#   initiator    the engine as client, scripts of raw/cookied/sealed datagrams after a real phase 1
#   responder    the engine as gateway, the same
#   transaction  XAuth / Mode Config, both sides, sealed TRANSACTION messages
#   esp          the userspace datapath's ESP decapsulation, and encap/decap round trips
#   profile      the profile TOML parser (parse -> export -> parse)
#   ikev2        the IKEv2 codec (decode -> encode -> decode) and both IKEv2 engines fed raw datagrams
#
# FUZZ_TARGETS="esp profile" picks some; FUZZ_LOG_DIR=DIR keeps each target's log there
# (the long run: `nice -n 19 fuzz/run.sh 3600` with FUZZ_PARALLEL=1 runs them side by side,
# each for the whole time). Corpora grow in fuzz/corpus/TARGET, crashes land in
# fuzz/artifacts/TARGET. Seeds: the strongSwan/libreswan captures of the unit tests
# (codec fixtures) and the profile fixtures.
set -eu
SECONDS_TO_RUN="${1:-60}"
TARGETS="${FUZZ_TARGETS:-isakmp initiator responder transaction esp profile eap ikev2}"
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "cargo-fuzz not installed: cargo install cargo-fuzz" >&2; exit 1; }
for t in $TARGETS; do mkdir -p "corpus/$t"; done
if command -v xxd >/dev/null 2>&1; then
    for f in ../helper/engine/src/codec/fixtures/*.hex; do
        for t in isakmp initiator responder transaction; do
            [ -d "corpus/$t" ] || continue
            name="corpus/$t/seed-$(basename "$f" .hex)"
            [ -e "$name" ] || grep -v '^#' "$f" | tr -d ' \n' | xxd -r -p > "$name"
        done
    done
fi
if [ -d corpus/profile ]; then
    for f in ../dbus/tests/fixtures/*.toml; do
        cp -n "$f" "corpus/profile/seed-$(basename "$f")" 2>/dev/null || true
    done
fi
export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo fuzz build
count=0
for t in $TARGETS; do count=$((count + 1)); done
if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
    each="$SECONDS_TO_RUN"
else
    each=$((SECONDS_TO_RUN / count))
    [ "$each" -ge 5 ] || each=5
fi
run_one() {
    # The engine targets take scripts: let them be long from the start.
    case "$1" in
        initiator|responder|transaction) extra="-max_len=4096 -len_control=0" ;;
        *) extra="-max_len=4096" ;;
    esac
    # shellcheck disable=SC2086
    cargo fuzz run "$1" -- -max_total_time="$each" $extra -print_final_stats=1
}
if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
    log="${FUZZ_LOG_DIR:-.}"
    mkdir -p "$log"
    pids=""
    for t in $TARGETS; do
        run_one "$t" > "$log/$t.log" 2>&1 &
        pids="$pids $!"
    done
    status=0
    for p in $pids; do wait "$p" || status=1; done
    exit "$status"
fi
for t in $TARGETS; do
    echo "== fuzz $t (${each}s)"
    if [ -n "${FUZZ_LOG_DIR:-}" ]; then
        mkdir -p "$FUZZ_LOG_DIR"
        run_one "$t" 2>&1 | tee "$FUZZ_LOG_DIR/$t.log"
    else
        run_one "$t"
    fi
done
