#!/usr/bin/env bash
# Installs Postern's binaries and system files where Debian expects them.
#   packaging/install.sh [DESTDIR]     (run from the workspace after `cargo build --release`)
# DESTDIR (default empty = /) allows staging, as packaging/build-deb.sh does.
# POSTERN_BIN_DIR: where the binaries are (default $CARGO_TARGET_DIR/release).
# Man pages, completions, hicolor PNG icons and the doc files are the package's
# (build-deb.sh); this installs what the helper and the app need to run.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR="${1:-}"
BIN="${POSTERN_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
install -D -m 0755 "$BIN/postern-helper" "$DESTDIR/usr/libexec/postern/postern-helper"
for b in postern postern-gui; do
  if [ -f "$BIN/$b" ]; then
    install -D -m 0755 "$BIN/$b" "$DESTDIR/usr/bin/$b"
  fi
done
install -D -m 0644 packaging/org.postern.Helper1.conf "$DESTDIR/usr/share/dbus-1/system.d/org.postern.Helper1.conf"
install -D -m 0644 packaging/org.postern.Helper1.service "$DESTDIR/usr/share/dbus-1/system-services/org.postern.Helper1.service"
install -D -m 0644 packaging/org.postern.helper1.policy "$DESTDIR/usr/share/polkit-1/actions/org.postern.helper1.policy"
install -D -m 0644 packaging/postern-helper.service "$DESTDIR/usr/lib/systemd/system/postern-helper.service"
# System profiles with autoconnect = "boot" (docs/fleet.md): enabled by the package.
install -D -m 0644 packaging/postern-autoconnect.service "$DESTDIR/usr/lib/systemd/system/postern-autoconnect.service"
# The desktop app: menu entry, AppStream metadata, app icon, tray icons.
install -D -m 0644 packaging/org.postern.Postern.desktop "$DESTDIR/usr/share/applications/org.postern.Postern.desktop"
sed "s|@URL@|${POSTERN_URL:-https://postern.example.org}|g" packaging/org.postern.Postern.metainfo.xml |
  install -D -m 0644 /dev/stdin "$DESTDIR/usr/share/metainfo/org.postern.Postern.metainfo.xml"
install -D -m 0644 assets/org.postern.Postern.svg "$DESTDIR/usr/share/icons/hicolor/scalable/apps/org.postern.Postern.svg"
for f in assets/tray/postern-*.svg; do
  install -D -m 0644 "$f" "$DESTDIR/usr/share/postern/icons/$(basename "$f")"
done
if [ -z "$DESTDIR" ]; then
  # Let a running bus pick up the new policy; harmless when there is none.
  busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 || true
fi
echo "installed under ${DESTDIR:-/}"
