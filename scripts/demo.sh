#!/usr/bin/env bash
# The demo office (run as root): namespaces client/gw/lan, a strongSwan gateway, a
# Postern profile. Ctrl-C removes everything the demo added.
#
#   sudo scripts/demo.sh               # from a desktop session: the app (postern-gui)
#                                      # opens on your display, as you; otherwise the CLI
#   sudo scripts/demo.sh --cli         # `postern-helper up` in the foreground, line by line
#   sudo scripts/demo.sh --reference   # strongSwan's charon as the client (for comparison)
#
# With the app: the gateway also asks for an XAuth login and hands out an address; the
# helper serves a private system bus for the demo's length (nothing is installed on
# this machine's bus); a demo-office profile (no secrets) goes into your profile
# directory. You click Connect and answer the prompts; the demo pings the office host
# through the tunnel once it is up.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: needs root (network namespaces); try: sudo $0 $*" >&2
  exit 1
fi

# The app when run with sudo from a desktop session (a display for SUDO_USER), unless
# --cli or --reference is asked for.
mode=(--cli)
for a in "$@"; do
  case "$a" in
    --cli) mode=(--cli) ;;
    --reference) mode=(--reference) ;;
    *) echo "demo.sh: unknown argument $a (--cli, --reference)" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  uid=$(id -u "$SUDO_USER")
  if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ] || [ -S "/run/user/$uid/wayland-0" ]; then
    mode=(--gui)
  else
    echo "demo.sh: no display for $SUDO_USER: the command-line demo"
  fi
fi

echo "demo.sh: installing what the demo needs (scripts/install-deps.sh)"
scripts/install-deps.sh
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
bins=(-p postern-helper -p postern-lab --bin postern-helper --bin demo)
if [ "${mode[0]}" = --gui ]; then
  bins+=(-p postern-cli -p postern-gui --bin postern --bin postern-gui)
fi
echo "demo.sh: building (release; the first time takes several minutes)..."
cargo build --release -q "${bins[@]}"
export POSTERN_HELPER="$(realpath "${CARGO_TARGET_DIR:-target}")/release/postern-helper"

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
"${CARGO_TARGET_DIR:-target}/release/demo" "${mode[@]}" || status=$?
exit "$status"
