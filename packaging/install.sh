#!/usr/bin/env bash
# Installs Postern's binaries and system files where Debian expects them.
#   packaging/install.sh [DESTDIR]     (run from the workspace after `cargo build --release`)
# DESTDIR (default empty = /) allows staging for a package.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR="${1:-}"
BIN="${CARGO_TARGET_DIR:-target}/release"
install -D -m 0755 "$BIN/postern-helper" "$DESTDIR/usr/libexec/postern/postern-helper"
if [ -f "$BIN/postern" ]; then
  install -D -m 0755 "$BIN/postern" "$DESTDIR/usr/bin/postern"
fi
install -D -m 0644 packaging/org.postern.Helper1.conf "$DESTDIR/usr/share/dbus-1/system.d/org.postern.Helper1.conf"
install -D -m 0644 packaging/org.postern.Helper1.service "$DESTDIR/usr/share/dbus-1/system-services/org.postern.Helper1.service"
install -D -m 0644 packaging/org.postern.helper1.policy "$DESTDIR/usr/share/polkit-1/actions/org.postern.helper1.policy"
install -D -m 0644 packaging/postern-helper.service "$DESTDIR/usr/lib/systemd/system/postern-helper.service"
if [ -z "$DESTDIR" ]; then
  # Let a running bus pick up the new policy; harmless when there is none.
  busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 || true
fi
echo "installed under ${DESTDIR:-/}"
